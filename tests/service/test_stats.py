"""The live status snapshot and the periodic stats lines, on a real pipeline fed a capture."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.detect.detector import Detector
from sensor.pipeline import Pipeline
from sensor.records import CaptureStats
from sensor.service.stats import (
    MIN_INTERVAL_ACKS,
    WARN_EVERY_S,
    LiveStatus,
    StatsReporter,
    deltas,
    rss_bytes,
)

DEMO = Path(__file__).resolve().parents[2] / "pcaps" / "demo.pcap"


def frames() -> list:
    return list(open_files([str(DEMO)], "", CaptureStats(), lambda p, r: None))


class Clock:
    """A hand-moved monotonic clock for the reporter's intervals and its warning rate limit."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def status() -> LiveStatus:
    st = LiveStatus()
    st.detector = Detector(load_config(None), lambda a: None)
    st.pipeline = Pipeline(ports=(25, 587), on_conn=st.detector.on_conn,
                           on_session=st.detector.on_session)  # fmt: skip
    return st


def test_snapshot_has_the_stats_shape_and_live_parts(status: LiveStatus) -> None:
    pipe = status.pipeline
    pipe.run(frames())
    snap = status.snapshot()
    assert {"capture", "tcp", "totals", "detect", "interfaces", "workers", "process",
            "state"} <= set(snap)  # fmt: skip
    assert snap["capture"]["tcp_segments"] == 7040
    assert snap["tcp"]["acks"] > 0 and snap["tcp"]["acks_unseen"] == 0
    assert snap["state"]["connections_open"] == pipe.open_connections() > 0
    assert snap["process"]["rss_bytes"] == pytest.approx(rss_bytes(), rel=0.5)
    assert snap["workers"] == {"running": 1, "restarts": 0, "lost_packets": 0}
    json.dumps(snap)  # JSON-ready


def test_snapshot_before_the_capture_starts_is_all_zero() -> None:
    snap = LiveStatus().snapshot()
    assert snap["capture"]["packets"] == 0 and snap["state"]["connections_open"] == 0


def test_deltas_leave_gauges_out() -> None:
    before = {"tcp": {"acks": 3, "active_peak": 9}, "process": {"rss_bytes": 5}, "x": "a"}
    now = {"tcp": {"acks": 10, "active_peak": 12}, "process": {"rss_bytes": 7}, "x": "b"}
    assert deltas(now, before) == {"tcp": {"acks": 7}}


def test_lines_carry_totals_deltas_and_the_interval_loss(status: LiveStatus) -> None:
    pipe = status.pipeline
    every = frames()
    out = io.StringIO()
    clock = Clock()
    warnings: list[str] = []
    rep = StatsReporter(status.snapshot, 60.0, out, 1.0, warnings.append, clock)
    rep._prev = status.snapshot()  # start() without its thread
    pipe.run(every[:3000])
    clock.t += 60
    first = rep.report()
    pipe.run(every[3000:])
    clock.t += 60
    second = rep.report()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(lines) == 2 and lines[1]["interval_s"] == 60.0
    assert lines[0]["ts"].endswith("Z")
    assert first["delta"]["capture"]["tcp_segments"] == 3000
    assert second["delta"]["capture"]["tcp_segments"] == 4040
    assert second["totals"]["capture"]["tcp_segments"] == 7040
    assert second["delta"]["totals"]["sessions"] > 0
    assert first["delta"]["tcp"]["acks"] + second["delta"]["tcp"]["acks"] == \
        second["totals"]["tcp"]["acks"]
    assert second["capture_loss"]["percent"] == 0.0 and warnings == []


def test_loss_above_the_threshold_warns_once_per_period(status: LiveStatus) -> None:
    clock = Clock()
    warnings: list[str] = []
    tcp = status.pipeline.tcp_stats
    rep = StatsReporter(status.snapshot, 10.0, None, 1.0, warnings.append, clock)
    rep._prev = status.snapshot()

    def interval(acks: int, unseen: int) -> None:
        tcp.acks += acks
        tcp.acks_unseen += unseen
        clock.t += 10
        rep.report()

    interval(1000, 5)  # 0.5%: below
    interval(MIN_INTERVAL_ACKS - 1, 50)  # too few ACKs to judge
    assert warnings == []
    interval(1000, 30)  # 3%
    assert len(warnings) == 1
    assert "capture loss estimate 3.00% over the last 10 s (30 of 1000 ACKs" in warnings[0]
    assert "kernel dropped none" in warnings[0]
    interval(1000, 30)  # within the period: held back
    assert len(warnings) == 1
    clock.t += WARN_EVERY_S
    interval(1000, 40)
    assert len(warnings) == 2 and "1 more intervals above it" in warnings[1]
