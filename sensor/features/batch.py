"""Feature vectors of many hosts at once, with numpy, from their raw window state.

`HostTable.vector` builds one host's row of FEATURE_NAMES as Python floats, about 200 of them;
the model scores every host a record changed, thousands per batch, and building rows that way
cost more than scoring them. `HostTable.raw` instead appends a host's scalars and running sums to
two byte buffers, and `vectors` turns a whole batch of them into its rows with array operations:
the same values as `vector`, bit for bit (tests/features/test_batch.py compares them).
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
    out = np.zeros(len(num))
    np.divide(num, den, out=out, where=den > 0)
    return out


def _cv(n: Any, total: Any, sumsq: Any) -> Any:
    """Coefficient of variation from running sums (sensor.features.window._cv, elementwise):
    0 below 2 values or a mean of 0, else rounded to 6 places with Python's round, which
    rounds the exact binary value (numpy's round scales first and can differ in the last
    place)."""
    out = np.zeros(len(n))
    ok = (n >= 2) & (total > 0)
    if ok.any():
        nn, tt, ss = n[ok], total[ok], sumsq[ok]
        mean = tt / nn
        raw = np.sqrt(np.maximum(0.0, ss / nn - mean * mean)) / mean
        out[ok] = [round(v, 6) for v in raw.tolist()]
    return out


def vectors(floats: bytes | bytearray, ints: bytes | bytearray, n: int,
            n_windows: int = 3, extra: int = 0) -> Any:
    """The (n, len(FEATURE_NAMES) + extra) float64 rows of n hosts appended by
    `HostTable.raw`, the `extra` columns after the features zero (the model's role columns)."""
    nf, ni = row_floats(n_windows), row_ints(n_windows)
    if len(floats) != 8 * nf * n or len(ints) != 8 * ni * n:
        raise ValueError(f"expected {n} rows of raw host state, got {len(floats)} and "
                         f"{len(ints)} bytes")
    fl = np.frombuffer(floats, dtype=np.float64).reshape(n, nf)
    it = np.frombuffer(ints, dtype=np.int64).reshape(n, ni)
    out = np.empty((n, len(FEATURE_NAMES) + extra))
    out[:, len(FEATURE_NAMES):] = 0.0
    out[:, :_NH] = fl[:, :_NH]
    total = fl[:, _NH:_NH + _NS]
    entered = it[:, :_ND]
    for w in range(n_windows):
        g0 = _NH + _NS * (1 + w)
        s = total - fl[:, g0:g0 + _NS]
        d0 = _ND * (1 + w)
        col = _NH + w * _NW
        out[:, col:col + _NA] = s[:, :_NA]
        out[:, col + _NA:col + _NA + _ND] = entered - it[:, d0:d0 + _ND]
        rcpts, msgs = s[:, _S["rcpts"]], s[:, _S["msgs"]]
        derived = (
            _ratio(s[:, _S["failed_conns"]], s[:, _S["conns"]]),
            _ratio(s[:, _S["rcpt_4xx"]] + s[:, _S["rcpt_5xx"]], rcpts),
            _ratio(s[:, _S["rcpt_unknown"]], rcpts),
            _ratio(s[:, _S["tls_sessions"]], s[:, _S["sessions"]]),
            _ratio(s[:, _S["rcpt_foreign"]], rcpts),
            _ratio(s[:, _S["msg_bytes"]], msgs),
            _cv(s[:, _S["ia_n"]], s[:, _S["ia_sum"]], s[:, _S["ia_sumsq"]]),
            _ratio(s[:, _S["helo_bad"]], s[:, _S["helo_sessions"]]),
            _ratio(s[:, _S["data_rejects"]], msgs),
            _ratio(s[:, _S["msg_rcpts"]], msgs),
            _cv(msgs, s[:, _S["msg_bytes"]], s[:, _S["msg_size_sumsq"]]),
            _ratio(s[:, _S["offhours_sessions"]], s[:, _S["sessions"]]),
        )
        at = col + _NA + _ND
        for i, values in enumerate(derived):
            out[:, at + i] = values
    return out
