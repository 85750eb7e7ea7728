"""Tests of stdin/FIFO streams: read like files, ordered by first packet, never blocking a run."""

from __future__ import annotations

import gzip
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.capture.stream import is_stream
from sensor.capture.writer import PcapngWriter
from sensor.records import CaptureStats

Factory = Callable[..., Path]
BPF = build_filter()


def _run(
    paths: list[Path], use_libpcap: bool = True
) -> tuple[list[tuple[float, int, bytes]], CaptureStats, list[tuple[str, str]]]:
    stats = CaptureStats()
    errors: list[tuple[str, str]] = []
    frames = open_files(
        [str(p) for p in paths], BPF, stats, lambda p, r: errors.append((p, r)), use_libpcap
    )
    return list(frames), stats, errors


def _feed_fifo(
    path: Path, parts: list[bytes], pause: float = 0.0, hold: threading.Event | None = None
) -> threading.Thread:
    """A thread that opens the FIFO for writing, writes `parts` (pausing between them), then
    waits for `hold` (if given) before closing."""

    def run() -> None:
        with open(path, "wb") as fh:
            for part in parts:
                fh.write(part)
                fh.flush()
                time.sleep(pause)
            if hold is not None:
                hold.wait(30)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_streams_are_named_by_dash_and_fifos(tmp_path: Path, pcap_factory: Factory) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert is_stream("-") and is_stream(str(fifo))
    assert not is_stream(str(pcap_factory())) and not is_stream(str(tmp_path / "missing"))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("pcapng", [False, True])
def test_fifo_gives_the_frames_of_the_file(
    tmp_path: Path, pcap_factory: Factory, compress: bool, pcapng: bool
) -> None:
    """Written in small pieces with pauses, a FIFO stream reads exactly like the file."""
    plain = pcap_factory("plain.pcap", n=50)
    if pcapng:
        frames, _, _ = _run([plain], use_libpcap=False)
        plain = tmp_path / "plain.pcapng"
        with PcapngWriter(str(plain)) as w:
            w.add_interface(1)
            for ts, _linktype, frame in frames:
                w.write(ts, frame)
    want, _, _ = _run([plain], use_libpcap=False)
    data = plain.read_bytes()
    if compress:
        data = gzip.compress(data)
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    t = _feed_fifo(fifo, [data[i : i + 97] for i in range(0, len(data), 97)], pause=0.001)
    got, stats, errors = _run([fifo])
    t.join()
    assert errors == [] and got == want
    assert (stats.files, stats.packets, stats.files_truncated) == (1, 50, 0)


def test_stream_takes_its_place_by_first_packet(tmp_path: Path, pcap_factory: Factory) -> None:
    late = pcap_factory("late.pcap", n=2, start=2000.0)
    early = pcap_factory("early.pcap", n=2, start=1000.0)
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    t = _feed_fifo(fifo, [early.read_bytes()])
    got, _, errors = _run([late, fifo])
    t.join()
    assert errors == [] and [f[0] for f in got] == [1000.25, 1001.25, 2000.25, 2001.25]


def test_stream_with_a_late_first_record_is_read_after_the_files(
    tmp_path: Path, pcap_factory: Factory
) -> None:
    """A live writer (header, then silence) waits for no file: it comes last, whatever its time."""
    late = pcap_factory("late.pcap", n=2, start=2000.0)
    early = pcap_factory("early.pcap", n=2, start=1000.0).read_bytes()
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    t = _feed_fifo(fifo, [early[:24], early[24:]], pause=0.6)
    stats = CaptureStats()
    frames = open_files([str(fifo), str(late)], BPF, stats, print, stream_wait=0.2)
    got = [f[0] for f in frames]
    t.join()
    assert got == [2000.25, 2001.25, 1000.25, 1001.25]


def test_fifo_without_writer_is_an_error_after_the_wait(
    tmp_path: Path, pcap_factory: Factory
) -> None:
    good = pcap_factory(n=3)
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    stats = CaptureStats()
    errors: list[tuple[str, str]] = []
    t0 = time.monotonic()
    frames = open_files(
        [str(fifo), str(good)], BPF, stats, lambda p, r: errors.append((p, r)), stream_wait=0.3
    )
    assert 0.3 <= time.monotonic() - t0 < 3
    assert len(list(frames)) == 3
    assert errors == [(str(fifo), "no data within 0.3 s (no writer?)")]
    assert (stats.files, stats.files_failed) == (1, 1)


def test_stop_ends_a_stream_that_stays_open(tmp_path: Path, pcap_factory: Factory) -> None:
    """The writer keeps the FIFO open: setting `stop` ends the read (not counted as truncation)."""
    data = pcap_factory(n=10).read_bytes()
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    hold = threading.Event()
    t = _feed_fifo(fifo, [data[:-5]], hold=hold)  # the last record is incomplete, for now
    stop = threading.Event()
    stats = CaptureStats()
    frames = open_files([str(fifo)], BPF, stats, print, stop=stop)
    got = [next(frames) for _ in range(9)]
    threading.Timer(0.3, stop.set).start()
    assert list(frames) == []
    hold.set()
    t.join()
    assert len(got) == 9 and stats.files_truncated == 0


def test_header_cut_by_the_wait_is_named(tmp_path: Path, pcap_factory: Factory) -> None:
    """A writer that sends part of the header, then nothing, is reported as such."""
    data = pcap_factory(n=3).read_bytes()
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    hold = threading.Event()
    t = _feed_fifo(fifo, [data[:10]], hold=hold)
    errors: list[tuple[str, str]] = []
    frames = open_files(
        [str(fifo)], BPF, CaptureStats(), lambda p, r: errors.append((p, r)), stream_wait=0.3
    )
    hold.set()
    t.join()
    assert list(frames) == []
    assert errors == [(str(fifo), "no complete capture header within 0.3 s")]


def test_stream_cut_inside_a_record_is_named(tmp_path: Path, pcap_factory: Factory) -> None:
    """A writer that goes away in the middle of a record: the frames before it are read and the
    stream is named among the truncated inputs, as a cut file is."""
    data = pcap_factory("whole.pcap", n=20).read_bytes()
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    t = _feed_fifo(fifo, [data[:-30]])
    got, stats, errors = _run([fifo])
    t.join()
    assert errors == [] and len(got) == 19
    assert stats.files_truncated == 1 and str(fifo) in stats.truncated_files
