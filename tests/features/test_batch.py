"""The batch path of the model's rows (numpy over raw host state) equals HostTable.vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from featfactory import auth, conn, rcpt, session, site_config, tx

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.features import HostTable
from sensor.features.batch import vectors
from sensor.features.hosts import HostState
from sensor.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]


def _batch(states: list[HostState]) -> np.ndarray:
    floats, ints = bytearray(), bytearray()
    for st in states:
        HostTable.raw(st, floats, ints)
    return vectors(floats, ints, len(states))


def _same(states: list[HostState]) -> None:
    want = np.array([HostTable.vector(st) for st in states], dtype=np.float64)
    got = _batch(states)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bit for bit, -0.0 and rounding included


def test_rows_of_a_real_capture_equal_the_per_host_vectors_as_hosts_change() -> None:
    cfg = load_config(str(ROOT / "pcaps" / "demo.toml"))
    table = HostTable(cfg)
    checked = 0

    def check(changed: list[tuple[HostState, int]]) -> None:
        nonlocal checked
        states = [st for st, _ in changed]
        if states:
            _same(states)
            checked += len(states)

    pipe = Pipeline(on_conn=lambda r: check(table.on_conn(r)),
                    on_session=lambda s: check(table.on_session(s)))
    pipe.run(open_files([str(ROOT / "pcaps" / "demo.pcap")], "tcp", pipe.capture_stats,
                        lambda path, why: None))
    pipe.finish()
    assert checked > 300


def test_hosts_with_expired_events_and_cv_features_match() -> None:
    t = HostTable(site_config())
    rcpts = [rcpt("x@far.example"), rcpt("y@campus.example", 550, "5.7.1", "denied")]
    bot, mx = "10.20.4.10", "198.18.0.7"
    states: list[HostState] = []
    for i in range(40):  # sizes and gaps vary, so the coefficients of variation are not round
        ts = 37.3 * i + (i % 7) * 1.9
        states += [st for st, _ in t.on_conn(conn(bot, f"198.18.0.{i % 9}", ts))]
        states += [st for st, _ in t.on_session(
            session(bot, mx, ts + 1, (tx(ts + 1.1, rcpts, size=1000 + 137 * i * i),),
                    auth=(auth(ts + 1.05, "failure" if i % 3 else "success"),)))]
    _same(states[-5:])  # events have left the short and medium windows by then


def test_an_empty_batch_and_a_wrong_size_are_handled() -> None:
    assert vectors(b"", b"", 0).shape == (0, 202)
    try:
        vectors(b"\0" * 8, b"", 1)
    except ValueError as exc:
        assert "rows of raw host state" in str(exc)
    else:
        raise AssertionError("a buffer of the wrong size was accepted")
