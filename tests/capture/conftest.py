"""Fixtures of the capture tests: a directory of generated captures."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from capture_helpers import eth_tcp

from sensor.capture.writer import PcapWriter


@pytest.fixture
def pcap_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write `frames` (or n Ethernet/TCP frames) 1 s apart from `start` to a pcap; its path."""

    def make(
        name: str = "t.pcap",
        n: int = 5,
        start: float = 1_700_000_000.0,
        frames: list[bytes] | None = None,
        linktype: int = 1,
        nanosecond: bool = False,
    ) -> Path:
        path = tmp_path / name
        data = frames if frames is not None else [eth_tcp(i) for i in range(n)]
        with PcapWriter(str(path), linktype=linktype, nanosecond=nanosecond) as w:
            for i, frame in enumerate(data):
                w.write(start + i + 0.25, frame)
        return path

    return make
