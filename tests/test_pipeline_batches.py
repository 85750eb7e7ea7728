"""Pipeline.run on frames read in libpcap batches (a live capture's LiveFrames) gives what it
gives on the same frames one by one: records, counters and the run's first and last times."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from pcap_batches import pack, sec_usec

from sensor.capture.common import BatchedFrames, Frame
from sensor.capture.source import _probe, _pure_frames
from sensor.pipeline import Pipeline
from sensor.records import CaptureStats

ROOT = Path(__file__).resolve().parent.parent


class Batches(BatchedFrames):
    """Frames of one link type, handed over `size` at a time as next_batch would."""

    def __init__(self, frames: list[Frame], size: int) -> None:
        self.linktype = frames[0][1]
        self._frames = frames
        self._size = size
        self.read = 0

    def batches(self) -> Iterator[tuple[bytes, bytes]]:
        for i in range(0, len(self._frames), self._size):
            chunk = self._frames[i : i + self._size]
            self.read += len(chunk)
            yield pack([(*sec_usec(ts), data) for ts, _, data in chunk])

    def __next__(self) -> Frame:
        raise AssertionError("Pipeline.run reads the batches")


def _run(frames: list[Frame] | Batches) -> tuple[list, list, Pipeline]:
    conns: list = []
    sessions: list = []
    pipe = Pipeline(on_conn=conns.append, on_session=sessions.append)
    pipe.run(frames)
    pipe.finish()
    return conns, sessions, pipe


@pytest.mark.parametrize("capture", ["demo.pcap", "train-benign.pcap"])
@pytest.mark.parametrize("size", [1, 97, 512])
def test_batches_give_what_frames_give(capture: str, size: int) -> None:
    path = str(ROOT / "pcaps" / capture)
    probed = _probe(path)
    assert not isinstance(probed, str)
    # the times as a batch carries them (whole microseconds), for both runs
    frames = [(sec + usec * 1e-6, lt, data)
              for ts, lt, data in _pure_frames(path, *probed, CaptureStats())
              for sec, usec in (sec_usec(ts),)]  # fmt: skip
    want_conns, want_sessions, want = _run(frames)
    batches = Batches(frames, size)
    conns, sessions, got = _run(batches)
    assert batches.read == len(frames)
    assert conns == want_conns and sessions == want_sessions and len(sessions) > 10
    assert got.capture_stats == want.capture_stats and got.capture_stats.tcp_segments > 0
    assert got.tcp_stats == want.tcp_stats
    skip = {"wall_s"}
    assert {k: v for k, v in dataclasses.asdict(got.totals).items() if k not in skip} == {
        k: v for k, v in dataclasses.asdict(want.totals).items() if k not in skip
    }
    assert got.totals.first_ts == frames[0][0] and got.totals.last_ts == frames[-1][0]
