"""Feature vectors of many hosts at once, with numpy, from their raw window state.

`HostTable.vector` builds one host's row of FEATURE_NAMES as Python floats, about 200 of them;
the model scores every host a record changed, thousands per batch, and building rows that way
cost more than scoring them. `HostTable.raw` instead appends a host's scalars and running sums to
two byte buffers, and `vectors` turns a whole batch of them into its rows with array operations:
the same values as `vector`, bit for bit (tests/features/test_batch.py compares them), the
model's view of the windows included (failed connections that show capture loss left out).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from sensor.features.schema import (
    ADDITIVE,
    DISTINCT,
    FEATURE_NAMES,
    HOST_SCALARS,
    SUM_INDEX,
    SUMS,
    WINDOW_FIELDS,
)

_NS: Final = len(SUMS)
_ND: Final = len(DISTINCT)
_NA: Final = len(ADDITIVE)
_NH: Final = len(HOST_SCALARS)
_NW: Final = len(WINDOW_FIELDS)
_S = SUM_INDEX


def row_floats(n_windows: int) -> int:
    """float64 values `HostTable.raw` appends to the float buffer per host."""
    return _NH + _NS * (1 + n_windows)


def row_ints(n_windows: int) -> int:
    """int64 values `HostTable.raw` appends to the integer buffer per host."""
    return _ND * (1 + n_windows)


def _ratio(num: Any, den: Any) -> Any:
    """num / den where den > 0, else 0 (sensor.features.window._ratio, elementwise)."""
    out = np.zeros(num.shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _cv(n: Any, total: Any, sumsq: Any) -> Any:
    """Coefficient of variation from running sums (sensor.features.window._cv, elementwise):
    0 below 2 values or a mean of 0, else rounded to 6 places with Python's round, which
    rounds the exact binary value (numpy's round scales first and can differ in the last
    place)."""
    out = np.zeros(n.shape)
    ok = (n >= 2) & (total > 0)
    if ok.any():
        nn, tt, ss = n[ok], total[ok], sumsq[ok]
        mean = tt / nn
        raw = np.sqrt(np.maximum(0.0, ss / nn - mean * mean)) / mean
        out[ok] = [round(v, 6) for v in raw.tolist()]
    return out


def _loss_view(s: Any) -> None:
    """sensor.features.window.loss_view of (hosts, windows, sums) at once, in place."""
    refused, unanswered = s[:, :, _S["loss_refused_conns"]], s[:, :, _S["loss_unanswered_conns"]]
    reset, ext = s[:, :, _S["loss_reset_conns"]], s[:, :, _S["loss_ext_failed_conns"]]
    if refused.any() or unanswered.any() or reset.any() or ext.any():
        s[:, :, _S["refused_conns"]] -= refused
        s[:, :, _S["unanswered_conns"]] -= unanswered
        s[:, :, _S["reset_conns"]] -= reset
        s[:, :, _S["failed_conns"]] -= refused + unanswered + reset
        s[:, :, _S["ext_failed_conns"]] -= ext


def vectors(floats: bytes | bytearray, ints: bytes | bytearray, n: int,
            n_windows: int = 3, extra: int = 0) -> Any:
    """The (n, len(FEATURE_NAMES) + extra) float64 rows of n hosts appended by
    `HostTable.raw`, the `extra` columns after the features zero (the model's role columns).
    Every window is computed at once, as a (hosts, windows) array per feature."""
    nf, ni = row_floats(n_windows), row_ints(n_windows)
    if len(floats) != 8 * nf * n or len(ints) != 8 * ni * n:
        raise ValueError(f"expected {n} rows of raw host state, got {len(floats)} and "
                         f"{len(ints)} bytes")
    fl = np.frombuffer(floats, dtype=np.float64).reshape(n, nf)
    it = np.frombuffer(ints, dtype=np.int64).reshape(n, ni)
    out = np.zeros((n, len(FEATURE_NAMES) + extra))
    out[:, :_NH] = fl[:, :_NH]
    total = fl[:, _NH:_NH + _NS]
    gone = fl[:, _NH + _NS:].reshape(n, n_windows, _NS)
    s = total[:, None, :] - gone  # (hosts, windows, sums)
    _loss_view(s)
    win = out[:, _NH:_NH + n_windows * _NW].reshape(n, n_windows, _NW)  # a view of out
    win[:, :, :_NA] = s[:, :, :_NA]
    entered = it[:, :_ND]
    win[:, :, _NA:_NA + _ND] = entered[:, None, :] - it[:, _ND:].reshape(n, n_windows, _ND)

    def col(name: str) -> Any:
        return s[:, :, _S[name]]

    rcpts, msgs = col("rcpts"), col("msgs")
    derived = (
        _ratio(col("failed_conns"), col("conns")),
        _ratio(col("rcpt_4xx") + col("rcpt_5xx"), rcpts),
        _ratio(col("rcpt_unknown"), rcpts),
        _ratio(col("tls_sessions"), col("sessions")),
        _ratio(col("rcpt_foreign"), rcpts),
        _ratio(col("msg_bytes"), msgs),
        _cv(col("ia_n"), col("ia_sum"), col("ia_sumsq")),
        _ratio(col("helo_bad"), col("helo_sessions")),
        _ratio(col("data_rejects"), msgs),
        _ratio(col("msg_rcpts"), msgs),
        _cv(msgs, col("msg_bytes"), col("msg_size_sumsq")),
        _ratio(col("offhours_sessions"), col("sessions")),
    )
    at = _NA + _ND
    for i, values in enumerate(derived):
        win[:, :, at + i] = values
    return out
