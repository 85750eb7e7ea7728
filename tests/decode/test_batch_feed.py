"""The C batch loop (sensor/decode/_batch.c) against its Python reading, frame for frame: the
segments fed, their times, the counters and the return value, on every capture of the suite,
on generated and mutated frames and on hostile batch metadata."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pcap_batches import META, pack, sec_usec

from sensor.capture.source import _probe, _pure_frames
from sensor.decode import batch
from sensor.decode.packet import Decoder, Segment
from sensor.records import CaptureStats

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted(
    [ROOT / "pcaps" / "demo.pcap", ROOT / "pcaps" / "train-benign.pcap",
     *(p for p in (ROOT / "tests" / "data").rglob("*")
       if p.suffix in (".pcap", ".pcapng") and not isinstance(_probe(str(p)), str))]
)  # fmt: skip

Fed = tuple[int, float | None, float | None]
Feed = Callable[..., Fed]


def _c_feed() -> Feed:
    """The C loop; the suite runs on a build that has it (tests/test_native.py says why not)."""
    from sensor.decode import _batch

    return _batch.feed


def run(feed: Feed, packets: bytes, meta: bytes, linktype: int) -> tuple[Fed, list, CaptureStats]:
    """What one batch feeds, returns and counts (the fast segments added as Pipeline does)."""
    dec = Decoder(CaptureStats())
    got: list[tuple[float, Segment]] = []
    out = feed(packets, meta, linktype, dec.decode, lambda ts, seg: got.append((ts, seg)))
    dec.stats.tcp_segments += out[0]
    return out, got, dec.stats


def run_keyed(packets: bytes, meta: bytes, linktype: int) -> tuple[Fed, list, list]:
    """The C loop asked for flow keys: what it feeds, returns, and the key of each segment
    (None for those the Python decoder made)."""
    dec = Decoder(CaptureStats())
    got: list[tuple[float, Segment]] = []
    keys: list[object] = []

    def segment(ts: float, seg: Segment, key: object = None) -> None:
        got.append((ts, seg))
        keys.append(key)

    out = _c_feed()(packets, meta, linktype, dec.decode, segment, True)
    return out, got, keys


def same(packets: bytes, meta: bytes, linktype: int) -> int:
    """Both loops agree on this batch; returns how many segments the C loop built itself. Asked
    for keys, the C loop feeds the same, each segment it built with its sender's FlowKey."""
    from sensor.decode._batch import FlowKey

    c_out, c_got, c_stats = run(_c_feed(), packets, meta, linktype)
    p_out, p_got, p_stats = run(batch.feed_py, packets, meta, linktype)
    k_out, k_got, keys = run_keyed(packets, meta, linktype)
    assert k_got == c_got and k_out == c_out
    assert sum(k is not None for k in keys) == c_out[0]
    for (_, seg), key in zip(k_got, keys, strict=True):
        assert key is None or key == FlowKey(seg[0], seg[2], seg[1], seg[3])
    assert c_got == p_got
    assert [type(v) for _, seg in c_got for v in seg] == [type(v) for _, seg in p_got for v in seg]
    assert c_out[1:] == p_out[1:]
    assert c_stats == p_stats
    return c_out[0]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_of_the_suite(path: Path) -> None:
    probed = _probe(str(path))
    assert not isinstance(probed, str), probed
    frames = list(_pure_frames(str(path), *probed, CaptureStats()))
    assert frames
    rnd = random.Random(path.name)
    fast = pos = 0
    while pos < len(frames):  # batches of the sizes a ring gives, one link type each
        n = rnd.choice((1, 7, 64, 512))
        chunk = frames[pos : pos + n]
        linktype = chunk[0][1]
        chunk = [f for f in chunk if f[1] == linktype]
        pos += len(chunk)
        fast += same(*pack([(*sec_usec(ts), data) for ts, _, data in chunk]), linktype)
    if path.name in ("demo.pcap", "train-benign.pcap"):
        assert fast > 0.9 * len(frames)  # Ethernet IPv4/IPv6 TCP: nearly all in C


def _eth(etype: int, body: bytes, vlan: int | None = None) -> bytes:
    head = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", etype) + body


def _tcp(opts: bytes, payload: bytes, flags: int = 0x18) -> bytes:
    off = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", 41000, 25, 0xFFFFFFF0, 7, off << 4, flags, 501, 0, 0) + (
        opts + payload
    )


def _ip4(tcp: bytes, ttl: int = 57) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, ttl, 6, 0,
                       b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02") + tcp  # fmt: skip


def _ip6(tcp: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 33, b"\x20\x01" + bytes(14),
                       b"\x20\x01" + bytes(13) + b"\x25") + tcp  # fmt: skip


OPTS = b"\x02\x04\x05\xb4\x01\x03\x03\x07"
SAMPLES = [
    _eth(0x0800, _ip4(_tcp(b"", b"MAIL FROM:<a@example.org>\r\n"))),
    _eth(0x0800, _ip4(_tcp(OPTS, b"", 0x02))),
    _eth(0x86DD, _ip6(_tcp(b"", b"250 OK\r\n"))),
    _eth(0x0800, _ip4(_tcp(b"", b"DATA\r\n")), vlan=7),
    _eth(0x86DD, _ip6(_tcp(OPTS, b"")), vlan=7),
    _eth(0x0800, _ip4(_tcp(b"", b"")) + b"\x00" * 6),  # Ethernet padding after the datagram
]


def test_samples_take_the_c_path() -> None:
    assert same(*pack([(1_700_000_000, i, f) for i, f in enumerate(SAMPLES)]), 1) == len(SAMPLES)


def _varied(n: int) -> list[tuple[int, int, bytes]]:
    """SAMPLES[0] from n sources (spread over the cache's slots) and source ports."""
    frames = []
    for i in range(n):
        frame = bytearray(SAMPLES[0])
        frame[26:30] = struct.pack("!I", 0x0A000000 + i * 7919)  # Ethernet 14 + IPv4 source at 12
        frame[34:36] = struct.pack("!H", i % 65536)  # the TCP source port
        frames.append((1_700_000_000, i % 1_000_000, bytes(frame)))
    return frames


def test_repeated_addresses_and_ports_are_shared() -> None:
    """The C loop hands out one object per address and per 16-bit value seen lately (its caches):
    within a flow, equal fields are identical objects."""
    out, got, _ = run(_c_feed(), *pack([(1_700_000_000, i, SAMPLES[0]) for i in range(50)]), 1)
    assert out[0] == 50
    for field in (0, 1, 2, 3, 7):  # src, dst, sport, dport, window
        assert len({id(seg[field]) for _, seg in got}) == 1, field


def test_addresses_colliding_in_the_cache_are_never_mixed_up() -> None:
    """20,000 distinct sources, most of them sharing a cache slot with others, each come out as
    themselves, twice over (the second time partly from the cache)."""
    frames = _varied(20_000)
    for _ in range(2):
        out, got, _ = run(_c_feed(), *pack(frames), 1)
        assert out[0] == len(frames)
        assert [seg[0] for _, seg in got] == [f[2][26:30] for f in frames]
        assert [seg[2] for _, seg in got] == [i % 65536 for i in range(len(frames))]
        assert all(seg[1] == b"\xc6\x33\x64\x02" and seg[3] == 25 for _, seg in got)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 90),
    linktype=st.sampled_from([1, 1, 1, 101, 113, 0]),
)
def test_mutated_frames(base: bytes, edits: list[tuple[int, int]], cut: int, linktype: int) -> None:
    frame = bytearray(base)
    for at, value in edits:  # header bytes: lengths, versions, protocol, offsets, tags
        if at < len(frame):
            frame[at] = value
    frames = [bytes(frame), bytes(frame[:cut]), base]
    same(*pack([(1_700_000_001, 999_999, f) for f in frames]), linktype)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(st.binary(max_size=120), max_size=6),
    records=st.lists(st.tuples(*[st.integers(0, 2**32 - 1)] * 4), max_size=4),
)
def test_hostile_batches(frames: list[bytes], records: list[tuple[int, ...]]) -> None:
    """Offsets and lengths past the buffer, any times: cut as a Python slice cuts them."""
    packets, meta = pack([(1, 2, f) for f in frames])
    meta += b"".join(META.pack(*r) for r in records)
    same(packets, meta, 1)


def test_no_frame_and_bad_meta() -> None:
    assert run(_c_feed(), b"", b"", 1)[0] == (0, None, None)
    assert run(batch.feed_py, b"", b"", 1)[0] == (0, None, None)
    with pytest.raises(ValueError):
        _c_feed()(b"", b"\x00" * 15, 1, Decoder().decode, lambda ts, seg: None)


def test_callback_errors_pass_through() -> None:
    packets, meta = pack([(1, 0, SAMPLES[0]), (1, 0, b"junk")])

    def boom(ts: float, seg: Segment) -> None:
        raise RuntimeError("from segment")

    def bad_decode(linktype: int, data: bytes) -> Segment | None:
        raise LookupError("from decode")

    with pytest.raises(RuntimeError, match="from segment"):
        _c_feed()(packets, meta, 1, Decoder().decode, boom)
    with pytest.raises(LookupError, match="from decode"):
        _c_feed()(packets, meta, 1, bad_decode, lambda ts, seg: None)
