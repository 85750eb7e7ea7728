"""Tests of open_files/check_file: validation, ordering, gzip, libpcap and pure paths agreeing."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from capture_helpers import eth, eth_tcp, eth_udp, ip4_tcp, ip6_tcp, write_pcap_raw
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.bpf import build_filter
from sensor.capture.source import STOP_CHECK_FRAMES, check_file, open_files
from sensor.capture.writer import PcapngWriter, PcapWriter
from sensor.errors import CaptureError
from sensor.records import CaptureStats

Factory = Callable[..., Path]
BPF = build_filter()


def _run(
    paths: list[Path], bpf: str = BPF, use_libpcap: bool = True
) -> tuple[list[tuple[float, int, bytes]], CaptureStats, list[tuple[str, str]]]:
    stats = CaptureStats()
    errors: list[tuple[str, str]] = []
    frames = open_files(
        [str(p) for p in paths], bpf, stats, lambda p, r: errors.append((p, r)), use_libpcap
    )
    return list(frames), stats, errors


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    (tmp / "dir").mkdir()
    (tmp / "empty.pcap").write_bytes(b"")
    (tmp / "page.pcap").write_bytes(b"<html><body>not a capture</body></html>")
    (tmp / "shorthdr.pcap").write_bytes(bytes.fromhex("d4c3b2a1020004000000"))
    (tmp / "shortshb.pcapng").write_bytes(bytes.fromhex("0a0d0d0a1c0000004d3c2b1a"))
    (tmp / "badbom.pcapng").write_bytes(bytes.fromhex("0a0d0d0a1c000000deadbeef") + bytes(16))
    (tmp / "junk.gz").write_bytes(b"\x1f\x8b" + b"garbage that is not deflate")
    (tmp / "emptyinside.gz").write_bytes(gzip.compress(b""))
    return {
        "missing": (tmp / "nope.pcap", "no such file"),
        "dir": (tmp / "dir", "is a directory"),
        "empty": (tmp / "empty.pcap", "empty file"),
        "magic": (tmp / "page.pcap", "not a pcap or pcapng file (magic 0x3c68746d)"),
        "short": (tmp / "shorthdr.pcap", "truncated pcap file header (10 of 24 bytes)"),
        "shb": (tmp / "shortshb.pcapng", "truncated pcapng section header (12 bytes)"),
        "bom": (tmp / "badbom.pcapng", "not a pcapng file (byte-order magic 0xdeadbeef)"),
        "gz": (tmp / "junk.gz", "corrupt gzip file"),
        "gzempty": (tmp / "emptyinside.gz", "empty file (inside gzip)"),
    }


def test_every_bad_input_is_reported_and_others_are_read(
    tmp_path: Path, pcap_factory: Factory
) -> None:
    bad = _bad_files(tmp_path)
    for path, reason in bad.values():
        got = check_file(str(path))
        assert got is not None and got.startswith(reason), (path, got)
    good = pcap_factory(n=3)
    assert check_file(str(good)) is None
    paths = [p for p, _ in bad.values()]
    frames, stats, errors = _run([paths[0], good, *paths[1:]])
    assert len(frames) == 3
    assert (stats.files, stats.files_failed, stats.packets) == (1, len(bad), 3)
    assert [e[0] for e in errors] == [str(p) for p in paths]
    assert all(" " in reason and "\n" not in reason for _, reason in errors)


def test_invalid_bpf_raises_before_reading(tmp_path: Path) -> None:
    errors: list[tuple[str, str]] = []
    with pytest.raises(CaptureError, match=r"^--bpf: "):
        open_files(
            [str(tmp_path / "x")],
            "tcp port twenty-five",
            CaptureStats(),
            lambda *a: errors.append(a),
        )
    assert errors == []


def test_files_are_read_in_order_of_first_packet(pcap_factory: Factory) -> None:
    late = pcap_factory("late.pcap", n=2, start=2000.0)
    early = pcap_factory("early.pcap", n=2, start=1000.0)
    frames, stats, _ = _run([late, early])
    assert [f[0] for f in frames] == [1000.25, 1001.25, 2000.25, 2001.25]
    assert (stats.files, stats.packets) == (2, 4)
    assert stats.bytes == sum(len(f[2]) for f in frames)


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path, pcap_factory: Factory) -> None:
    plain = pcap_factory("plain.pcap", n=4)
    disguised = tmp_path / "compressed.pcap"
    disguised.write_bytes(gzip.compress(plain.read_bytes()))
    not_gz = tmp_path / "uncompressed.pcap.gz"
    not_gz.write_bytes(plain.read_bytes())
    want, _, _ = _run([plain])
    for path in (disguised, not_gz):
        got, stats, errors = _run([path])
        assert got == want and errors == [] and stats.files == 1


def test_truncated_gzip_stream_keeps_frames(tmp_path: Path, pcap_factory: Factory) -> None:
    plain = pcap_factory("plain.pcap", n=200)
    packed = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])
    frames, stats, errors = _run([cut])
    assert errors == [] and 0 < len(frames) < 200
    assert stats.files_truncated == 1


def _mixed_frames() -> list[bytes]:
    """700 frames: port 25 plain, 802.1Q, QinQ and IPv6-in-802.1Q (467); port 443 and UDP (233)."""
    makers: list[Callable[[int], bytes]] = [
        lambda i: eth_tcp(i),
        lambda i: eth_tcp(i, dport=443),
        lambda i: eth_tcp(i, vlans=[10]),
        lambda i: eth_tcp(i, vlans=[10, 20], qinq=True),
        eth_udp,
        lambda i: eth(ip6_tcp(i), vlans=[30]),
    ]
    return [makers[i % len(makers)](i) for i in range(700)]


def test_libpcap_and_pure_paths_give_the_same_frames(pcap_factory: Factory) -> None:
    path = pcap_factory(frames=_mixed_frames())
    fast, fstats, _ = _run([path], use_libpcap=True)
    pure, pstats, _ = _run([path], use_libpcap=False)
    assert fast == pure
    assert len(fast) == 467
    assert (fstats.packets, fstats.bytes) == (pstats.packets, pstats.bytes)
    assert (fstats.filtered_out, pstats.filtered_out) == (0, 233)
    # libpcap reports nothing of what its filter rejected: the file is marked as such instead
    assert (fstats.files_filtered_by_libpcap, pstats.files_filtered_by_libpcap) == (1, 0)
    everything, estats, _ = _run([path], bpf="", use_libpcap=True)
    assert len(everything) == 700 and estats.files_filtered_by_libpcap == 0


def test_truncated_file_on_libpcap_path_loses_nothing(pcap_factory: Factory) -> None:
    path = pcap_factory(frames=[*_mixed_frames(), eth_tcp(999)])
    path.write_bytes(path.read_bytes()[:-7])
    fast, fstats, _ = _run([path])
    pure, pstats, _ = _run([path], use_libpcap=False)
    assert fast == pure
    assert len(fast) == 467  # all but the cut last frame; libpcap stopped mid-batch
    assert fstats.files_truncated == pstats.files_truncated == 1
    assert fstats.packets == 467
    assert fstats.truncated_files == pstats.truncated_files == {
        str(path): f"the file ends inside record 701: its {16 + len(eth_tcp(999)) - 7} bytes "
        "were skipped"
    }


def test_nanosecond_file_paths_agree_to_the_microsecond(pcap_factory: Factory) -> None:
    path = pcap_factory(frames=[eth_tcp(i) for i in range(3)], nanosecond=True)
    fast, _, _ = _run([path])
    pure, _, _ = _run([path], use_libpcap=False)
    assert [f[2] for f in fast] == [f[2] for f in pure]
    assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(fast, pure, strict=True))


def test_big_endian_file_through_both_paths(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    write_pcap_raw(path, [(10 + i, 500, eth_tcp(i)) for i in range(3)], order=">")
    fast, _, _ = _run([path])
    pure, _, _ = _run([path], use_libpcap=False)
    assert fast == pure and len(fast) == 3


def test_pcapng_with_two_link_types_falls_back_to_pure_path(tmp_path: Path) -> None:
    path = tmp_path / "two.pcapng"
    with PcapngWriter(str(path)) as w:
        w.add_interface(1)
        w.add_interface(101)
        for i in range(5):
            w.write(10.0 + i, eth_tcp(i), 0)
            w.write(10.5 + i, ip4_tcp(i, dport=80 if i % 2 else 25), 1)
    frames, stats, errors = _run([path])
    assert errors == []
    assert [f[1] for f in frames] == [1, 12, 1, 1, 12, 1, 1, 12]  # LINKTYPE_RAW read as DLT_RAW
    assert stats.filtered_out == 2 and stats.packets == 8


def test_single_link_type_pcapng_on_libpcap_path(tmp_path: Path) -> None:
    path = tmp_path / "one.pcapng"
    with PcapngWriter(str(path)) as w:
        w.add_interface(1)
        for i in range(600):
            w.write(10.0 + i, eth_tcp(i, dport=25 if i % 3 else 80), 0)
    fast, fstats, _ = _run([path])
    pure, pstats, _ = _run([path], use_libpcap=False)
    assert fast == pure and len(fast) == 400
    assert fstats.filtered_out == 0 and pstats.filtered_out == 200


def test_public_traces_read_the_same_on_both_paths(zeek_traces: Path) -> None:
    traces = sorted(p for p in zeek_traces.rglob("*") if p.is_file())
    assert len(traces) >= 10
    for trace in traces:
        fast, fstats, ferr = _run([trace], bpf="")
        pure, pstats, perr = _run([trace], bpf="", use_libpcap=False)
        assert ferr == perr == []
        assert len(fast) == len(pure) > 0, trace
        assert [f[2] for f in fast] == [f[2] for f in pure], trace
        assert all(abs(a[0] - b[0]) < 1e-6 for a, b in zip(fast, pure, strict=True))
        assert fstats.files_truncated == pstats.files_truncated == 0


def _link_frames(linktype: int, i: int, dport: int) -> bytes:
    ip = ip4_tcp(i, dport)
    if linktype == 113:
        return struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + ip
    if linktype == 276:
        return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, bytes(8)) + ip
    if linktype in (0, 108):
        return struct.pack("<I" if linktype == 0 else ">I", 2) + ip
    return ip  # 101, 228: raw IPv4


@pytest.mark.parametrize("linktype", [0, 101, 108, 113, 228, 276])
def test_link_types_agree_on_both_paths(linktype: int, pcap_factory: Factory) -> None:
    frames = [_link_frames(linktype, i, 25 if i % 2 else 80) for i in range(6)]
    path = pcap_factory(frames=frames, linktype=linktype)
    fast, _, _ = _run([path])
    pure, stats, _ = _run([path], use_libpcap=False)
    assert fast == pure
    assert [f[2] for f in pure] == frames[1::2]
    assert stats.filtered_out == 3


def test_oversized_caplen_paths_agree_and_name_the_file(tmp_path: Path) -> None:
    frames = [eth_tcp(i) for i in range(700)]
    path = tmp_path / "huge.pcap"
    write_pcap_raw(path, [(1, i, f) for i, f in enumerate(frames)])
    data = bytearray(path.read_bytes())
    at = 24 + sum(16 + len(f) for f in frames[:600])
    struct.pack_into("<I", data, at + 8, 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    fast, fstats, _ = _run([path])
    pure, pstats, _ = _run([path], use_libpcap=False)
    assert fast == pure and [f[2] for f in fast] == frames[:600]
    for stats in (fstats, pstats):
        assert (stats.files_truncated, stats.oversized_records, stats.packets) == (1, 1, 600)
        assert stats.truncated_files == {
            str(path): f"record 601 at byte {at} claims 4294967295 captured bytes (more than "
            f"262144): the {len(data) - at} bytes from there to the end were skipped"
        }


def test_records_longer_than_the_snap_length_are_whole_on_both_paths(tmp_path: Path) -> None:
    frames = [eth_tcp(i) + bytes(i % 3 * 50) for i in range(900)]  # 62, 112 or 162 bytes
    pcap = tmp_path / "snap.pcap"
    with PcapWriter(str(pcap), snaplen=100) as w:
        for i, frame in enumerate(frames):
            w.write_raw(1 + i, 0, frame)
    ng = tmp_path / "snap.pcapng"
    with PcapngWriter(str(ng)) as w:
        w.add_interface(1, snaplen=100)
        for frame in frames:
            w.write_block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    for path in (pcap, ng):
        fast, fstats, _ = _run([path])
        pure, pstats, _ = _run([path], use_libpcap=False)
        assert [f[2] for f in fast] == [f[2] for f in pure] == frames, path.name
        assert (fstats.packets, fstats.bytes) == (pstats.packets, pstats.bytes)
        assert fstats.truncated_files == pstats.truncated_files == {}


def test_truncated_gzip_is_named(tmp_path: Path, pcap_factory: Factory) -> None:
    plain = pcap_factory("plain.pcap", n=200)
    packed = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])
    _, stats, _ = _run([cut])
    assert list(stats.truncated_files) == [str(cut)]
    what = stats.truncated_files[str(cut)]
    assert what.startswith("the gzip stream could not be read past byte ")
    assert "Compressed file ended before the end-of-stream marker was reached" in what


def test_summary_names_the_truncated_file(tmp_path: Path, pcap_factory: Factory) -> None:
    plain = pcap_factory("plain.pcap", n=300)
    packed = gzip.compress(plain.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    run = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", str(cut)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert run.returncode == 0, run.stderr
    assert f"truncated {cut}: the gzip stream could not be read past byte " in run.stdout


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.integers(0, 11),
    st.sampled_from([0, 1, 60, 99, 100, 101, 150, 262144, 262145, 0x7FFFFFFF, 0xFFFFFFFF]),
    st.integers(0, 2),
)
def test_both_paths_agree_on_corrupt_record_lengths(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[int], which: int, caplen: int, cut: int
) -> None:
    """A record's caplen set to anything (the file's snap length is 100), the file maybe cut:
    libpcap and the pure-Python reader give the same frames and name the same damage."""
    makers = [eth_tcp(0), eth_tcp(1) + bytes(60), eth_tcp(2, dport=80), eth(ip6_tcp(3))]
    frames = [makers[k] for k in kinds]
    path = tmp_path_factory.mktemp("agree") / "a.pcap"
    with PcapWriter(str(path), snaplen=100) as w:
        for i, frame in enumerate(frames):
            w.write_raw(1 + i, 0, frame)
    data = bytearray(path.read_bytes())
    at = 24 + sum(16 + len(f) for f in frames[: which % len(frames)])
    struct.pack_into("<I", data, at + 8, caplen)
    path.write_bytes(bytes(data[: len(data) - cut * 5]))
    fast, fstats, ferr = _run([path])
    pure, pstats, perr = _run([path], use_libpcap=False)
    assert ferr == perr == []
    assert fast == pure
    assert (fstats.packets, fstats.bytes) == (pstats.packets, pstats.bytes)
    assert fstats.truncated_files == pstats.truncated_files
    assert (fstats.oversized_records, fstats.files_truncated) == (
        pstats.oversized_records,
        pstats.files_truncated,
    )


def test_stop_ends_reading_of_files_within_a_slice(pcap_factory: Factory) -> None:
    big = pcap_factory(n=STOP_CHECK_FRAMES * 3)
    stop = threading.Event()
    frames = open_files([str(big)], BPF, CaptureStats(), print, stop=stop)
    for _ in range(10):
        next(frames)
    stop.set()
    assert len(list(frames)) == STOP_CHECK_FRAMES - 10
