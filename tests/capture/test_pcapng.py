"""Tests of the pure-Python pcapng reader and of PcapngWriter (checked against tshark)."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

from capture_helpers import eth_tcp, ip4_tcp
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.common import Cut
from sensor.capture.pcapng import read_pcapng, tsresol_divisor
from sensor.capture.writer import PcapngWriter
from sensor.records import CaptureStats

ETH = [eth_tcp(i) for i in range(3)]
RAW = [ip4_tcp(i) for i in range(3)]


def _read(data: bytes, chunk: int = 1 << 20) -> tuple[list[tuple[float, int, bytes]], CaptureStats]:
    stats = CaptureStats()
    return list(read_pcapng(io.BytesIO(data), stats, chunk_bytes=chunk)), stats


def _two_interfaces(big_endian: bool = False) -> bytes:
    buf = io.BytesIO()
    w = PcapngWriter(buf, big_endian=big_endian)
    w.add_interface(1)  # default resolution: µs
    w.add_interface(101, tsresol=9)  # ns
    w.add_interface(101, tsresol=0x80 | 10)  # 2**-10 s
    for i in range(3):
        w.write(100 + i + 0.5, ETH[i], 0)
        w.write(200 + i + 0.123456789, RAW[i], 1)
        w.write(300 + i + 0.25, RAW[i], 2)
    w.close()
    return buf.getvalue()


def test_two_link_types_and_three_resolutions() -> None:
    for big_endian in (False, True):
        frames, stats = _read(_two_interfaces(big_endian))
        assert stats == CaptureStats()
        assert [f[1] for f in frames] == [1, 101, 101] * 3
        assert [f[2] for f in frames[0::3]] == ETH
        assert [f[2] for f in frames[1::3]] == RAW
        assert frames[0][0] == 100.5
        assert abs(frames[1][0] - 200.123456789) < 1e-9
        assert frames[2][0] == 300.25


def test_tsresol_forms() -> None:
    assert tsresol_divisor(6) == 1_000_000
    assert tsresol_divisor(9) == 1_000_000_000
    assert tsresol_divisor(0x80 | 20) == 1 << 20


def test_tshark_agrees_with_the_writer(tmp_path: Path, tshark: str) -> None:
    path = tmp_path / "two.pcapng"
    path.write_bytes(_two_interfaces())
    out = subprocess.run(
        [tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "tcp.srcport"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    rows = [line.split("\t") for line in out if line]
    assert [int(r[1]) for r in rows] == [40000] * 3 + [40001] * 3 + [40002] * 3
    assert [round(float(r[0]), 6) for r in rows[:3]] == [100.5, 200.123457, 300.25]


def test_several_sections_of_both_byte_orders() -> None:
    first = io.BytesIO()
    w = PcapngWriter(first)
    w.add_interface(1)
    w.write(1.0, ETH[0])
    second = io.BytesIO()
    w2 = PcapngWriter(second, big_endian=True)
    w2.add_interface(101)
    w2.write(2.0, RAW[1])
    frames, stats = _read(first.getvalue() + second.getvalue())
    assert [(f[0], f[1], f[2]) for f in frames] == [(1.0, 1, ETH[0]), (2.0, 101, RAW[1])]
    assert stats == CaptureStats()


def test_simple_packet_block_obsolete_packet_block_and_unknown_block() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.add_interface(1, snaplen=40)
    w.write(5.0, ETH[0])
    w.write_simple(ETH[1])  # no timestamp: takes the previous packet's, cut to snaplen 40
    w.write_block(0x0BADBEEF, b"unknown block body")
    obsolete = struct.pack("<HHIIII", 0, 0, 0, 7_000_000, len(RAW[2]), len(RAW[2]))
    w.write_block(2, obsolete + RAW[2])
    w.close()
    frames, stats = _read(buf.getvalue())
    assert frames == [(5.0, 1, ETH[0][:40]), (5.0, 1, ETH[1][:40]), (7.0, 1, RAW[2])]
    assert stats == CaptureStats()


def test_truncated_block_at_end_is_counted() -> None:
    data = _two_interfaces()
    for cut in (4, 40):
        frames, stats = _read(data[:-cut], chunk=64)
        assert len(frames) == 8
        assert (stats.truncated, stats.files_truncated, stats.malformed) == (1, 1, 0)


def _blocks(data: bytes) -> list[int]:
    """Offsets of the blocks of a little-endian pcapng byte string."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += struct.unpack_from("<I", data, pos + 4)[0]
    return offsets


def test_bad_block_length_stops_the_file_and_says_what_was_skipped() -> None:
    data = bytearray(_two_interfaces())
    fifth = _blocks(bytes(data))[4 + 3]  # SHB, 3 IDBs, then packets
    for bad, what, oversized in (
        (13, "a block length of 13", 0),
        (8, "a block length of 8", 0),
        (1 << 30, f"a block claiming {1 << 30} bytes (more than {4 * 1024 * 1024})", 1),
    ):
        corrupt = bytearray(data)
        struct.pack_into("<I", corrupt, fifth + 4, bad)
        stats = CaptureStats()
        cut = Cut()
        frames = list(read_pcapng(io.BytesIO(bytes(corrupt)), stats, chunk_bytes=64, cut=cut))
        assert len(frames) == 3
        assert (stats.malformed, stats.oversized_records) == (1 - oversized, oversized)
        assert (stats.truncated, stats.files_truncated) == (1, 1)
        assert cut.what == (
            f"block 8 at byte {fifth} is corrupt ({what}): "
            f"the {len(data) - fifth} bytes from there to the end were skipped"
        )


def test_oversized_or_short_packet_block_is_skipped_alone() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.add_interface(1, snaplen=40)  # frames longer than the snap length: read whole
    for caplen, frame in ((len(ETH[0]), ETH[0]), (0xFFFFFFFF, ETH[1]), (4000, ETH[1])):
        w.write_block(6, struct.pack("<IIIII", 0, 0, 0, caplen, len(frame)) + frame)
    w.write_block(6, struct.pack("<IIIII", 0, 0, 0, len(ETH[2]), len(ETH[2])) + ETH[2])
    frames, stats = _read(buf.getvalue())
    assert [f[2] for f in frames] == [ETH[0], ETH[2]]
    assert (stats.oversized_records, stats.malformed, stats.files_truncated) == (1, 1, 0)


def test_trailer_mismatch_stops_the_file() -> None:
    data = bytearray(_two_interfaces())
    offsets = _blocks(bytes(data))
    struct.pack_into("<I", data, offsets[5] - 4, 9999)  # trailer of the first packet block
    frames, stats = _read(bytes(data))
    assert frames == [] and stats.malformed == 1 and stats.files_truncated == 1


def test_unknown_interface_id_is_counted_and_skipped() -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.add_interface(1)
    w.write(1.0, ETH[0])
    w.write_block(6, struct.pack("<IIIII", 7, 0, 0, 4, 4) + b"abcd")
    w.write(2.0, ETH[1])
    frames, stats = _read(buf.getvalue())
    assert [f[2] for f in frames] == ETH[:2]
    assert stats.malformed == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_blocks_never_raise(tail: bytes) -> None:
    head = _two_interfaces()[:28]
    frames, _ = _read(head + tail, chunk=32)
    assert all(len(f[2]) <= len(tail) for f in frames)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0x20), st.binary(max_size=60)), max_size=8))
def test_random_well_framed_blocks_never_raise(blocks: list[tuple[int, bytes]]) -> None:
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    for btype, body in blocks:
        w.write_block(btype if btype != 0x0A0D0D0A else 1, body)
    _read(buf.getvalue())


def test_truncated_block_names_what_was_skipped() -> None:
    data = _two_interfaces()
    stats = CaptureStats()
    cut = Cut()
    frames = list(read_pcapng(io.BytesIO(data[:-40]), stats, cut=cut))
    last = _blocks(data)[-1]
    assert len(frames) == 8 and stats.files_truncated == 1
    assert (
        cut.what == f"the file ends inside block 13: its {len(data) - 40 - last} bytes were skipped"
    )
