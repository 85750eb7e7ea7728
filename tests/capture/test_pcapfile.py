"""Tests of the pure-Python classic pcap reader."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from capture_helpers import eth_tcp, write_pcap_raw
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.common import Cut
from sensor.capture.pcapfile import parse_header, read_pcap
from sensor.capture.writer import PcapWriter
from sensor.records import CaptureStats

FRAMES = [eth_tcp(i) for i in range(6)]


def _read(data: bytes, **kw: int) -> tuple[list[tuple[float, int, bytes]], CaptureStats]:
    stats = CaptureStats()
    return list(read_pcap(io.BytesIO(data), stats, **kw)), stats


def test_little_endian_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "le.pcap"
    with PcapWriter(str(path)) as w:
        for i, frame in enumerate(FRAMES):
            w.write(1000 + i + 0.123456, frame)
    frames, stats = _read(path.read_bytes())
    assert [f[2] for f in frames] == FRAMES
    assert [f[1] for f in frames] == [1] * len(FRAMES)
    assert frames[2][0] == 1002 + 123456 * 1e-6
    assert stats == CaptureStats()


def test_big_endian_micro_and_nano(tmp_path: Path) -> None:
    for nano, frac, scale in ((False, 654321, 1e-6), (True, 987654321, 1e-9)):
        path = tmp_path / f"be{nano}.pcap"
        write_pcap_raw(path, [(2000 + i, frac, f) for i, f in enumerate(FRAMES)], ">", nano, 113)
        frames, stats = _read(path.read_bytes())
        assert [f[2] for f in frames] == FRAMES
        assert {f[1] for f in frames} == {113}
        assert frames[1][0] == 2001 + frac * scale
        assert stats.malformed == stats.truncated == 0


def test_nanosecond_little_endian_keeps_precision(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    write_pcap_raw(path, [(3000, 123456789, FRAMES[0])], "<", nano=True)
    frames, _ = _read(path.read_bytes())
    assert abs(frames[0][0] - 3000.123456789) < 1e-9


def test_fcs_bits_of_linktype_are_masked() -> None:
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, (0x1 << 28) | 1)
    assert parse_header(hdr)[2] == 1


def test_truncated_final_record_keeps_earlier_frames(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    write_pcap_raw(path, [(1, 0, f) for f in FRAMES])
    data = path.read_bytes()
    for cut in (10, len(FRAMES[-1]) + 8):  # mid-frame, then mid-record-header
        frames, stats = _read(data[:-cut])
        assert [f[2] for f in frames] == FRAMES[:-1]
        assert (stats.truncated, stats.files_truncated, stats.malformed) == (1, 1, 0)


def test_oversized_caplen_is_counted_and_the_skipped_rest_said(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    write_pcap_raw(path, [(1, 0, f) for f in FRAMES])
    data = bytearray(path.read_bytes())
    third = 24 + sum(16 + len(f) for f in FRAMES[:2])
    for caplen in (10_000_000, 0xFFFFFFFF):
        struct.pack_into("<I", data, third + 8, caplen)
        for chunk in (7, 1 << 20):
            stats = CaptureStats()
            cut = Cut()
            frames = list(read_pcap(io.BytesIO(bytes(data)), stats, chunk_bytes=chunk, cut=cut))
            assert [f[2] for f in frames] == FRAMES[:2]
            assert (stats.oversized_records, stats.truncated, stats.files_truncated) == (1, 1, 1)
            assert stats.malformed == 0
            assert cut.what == (
                f"record 3 at byte {third} claims {caplen} captured bytes (more than 262144): "
                f"the {len(data) - third} bytes from there to the end were skipped"
            )


def test_records_longer_than_the_snap_length_are_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "snap.pcap"
    with PcapWriter(str(path), snaplen=40) as w:
        for i, frame in enumerate(FRAMES):
            w.write_raw(1 + i, 0, frame)  # caplen = the whole frame, more than the snap length
    frames, stats = _read(path.read_bytes())
    assert [f[2] for f in frames] == FRAMES and stats == CaptureStats()


def test_small_chunks_and_records_larger_than_a_chunk(tmp_path: Path) -> None:
    big = eth_tcp(1) + bytes(5000)
    path = tmp_path / "big.pcap"
    write_pcap_raw(path, [(1, i, f) for i, f in enumerate([*FRAMES, big, *FRAMES])])
    whole, _ = _read(path.read_bytes())
    for chunk in (1, 7, 64, 4096):
        frames, stats = _read(path.read_bytes(), chunk_bytes=chunk)
        assert frames == whole
        assert stats == CaptureStats()
    assert whole[len(FRAMES)][2] == big


def test_bad_header_counts_malformed() -> None:
    frames, stats = _read(b"\x00" * 24)
    assert frames == [] and stats.malformed == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_after_a_header_never_raise(tail: bytes) -> None:
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    frames, stats = _read(hdr + tail, chunk_bytes=64)
    assert sum(16 + len(f[2]) for f in frames) <= len(tail)
    assert stats.files_truncated <= 1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=100))
def test_random_bytes_never_raise(data: bytes) -> None:
    _read(data)
