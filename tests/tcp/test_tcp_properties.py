"""Property tests for sensor/tcp: any arrival order reassembles, hostile input stays bounded."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tcp_helpers import ACK, CLIENT, FIN, RST, SERVER, Conv, Harness, Seg, seg

from sensor.tcp.conn import Connection
from sensor.tcp.reassembler import CONN_BYTES, Reassembler, TcpLimits

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def stream_segments(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], int]:
    """A stream, segments covering it (cuts plus random overlapping copies), and an ISN."""
    data = draw(st.binary(min_size=1, max_size=600))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=12)))
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    pieces = [(a, data[a:b]) for a, b in pairwise(bounds) if b > a]
    extra = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 80)),
                          max_size=6))  # fmt: skip
    for a, n in extra:
        pieces.append((a, data[a : a + n]))
    isn = draw(st.sampled_from([0, 1000, 0xFFFFFFFF, 0xFFFFFF00, draw(st.integers(0, 0xFFFFFFFF))]))
    return data, pieces, isn


@SETTINGS
@given(stream_segments(), st.randoms(use_true_random=False), st.booleans())
def test_any_permutation_with_syn_and_fin_reassembles(
    case: tuple[bytes, list[tuple[int, bytes]], int], rnd: object, dup: bool
) -> None:
    data, pieces, isn = case
    cv = Conv(cisn=isn)
    segs = [cv.c(off, p) for off, p in pieces]
    segs.append(cv.c(len(data), b"", ACK | FIN))
    if dup:
        segs += segs[: len(segs) // 2]
    rnd.shuffle(segs)  # type: ignore[attr-defined]
    h = Harness()
    h.feed([(1.0 + i * 1e-3, s) for i, s in enumerate([cv.syn(), cv.synack(), *segs])])
    h.r.flush()
    rh = h.handlers[0]
    assert bytes(rh.stream[True]) == data
    assert rh.gaps[True] == 0
    assert h.records[0].bytes_to_server == len(data)
    assert h.r.buffered_bytes() == 0


@SETTINGS
@given(stream_segments(), st.randoms(use_true_random=False))
def test_without_syn_first_seen_start_then_any_order(
    case: tuple[bytes, list[tuple[int, bytes]], int], rnd: object
) -> None:
    data, pieces, isn = case
    cv = Conv(cisn=isn)
    first = min(pieces, key=lambda p: p[0])
    rest = [p for p in pieces if p is not first]
    rnd.shuffle(rest)  # type: ignore[attr-defined]
    segs = [cv.c(first[0], first[1]), *[cv.c(o, p) for o, p in rest]]
    h = Harness()
    h.feed([(1.0 + i * 1e-3, s) for i, s in enumerate(segs)])
    h.r.flush()
    assert bytes(h.handlers[0].stream[True]) == data
    assert h.handlers[0].gaps[True] == 0
    assert h.records[0].state == "OTH"


@SETTINGS
@given(
    st.binary(min_size=1, max_size=300),
    st.lists(st.tuples(st.integers(0, 320), st.binary(min_size=1, max_size=60)), max_size=12),
    st.randoms(use_true_random=False),
)
def test_conflicting_overlaps_first_copy_wins(
    data: bytes, noise: list[tuple[int, bytes]], rnd: object
) -> None:
    cv = Conv(cisn=0xFFFFFFF0)
    arrivals = [(0, data[:1])] + [(off, data[off : off + 7]) for off in range(1, len(data), 7)]
    arrivals += [(off % len(data), p) for off, p in noise]  # noise starts inside the data
    head, tail = arrivals[:1], arrivals[1:]
    rnd.shuffle(tail)  # type: ignore[attr-defined]
    arrivals = head + tail
    oracle: dict[int, int] = {}  # first arrival covering a byte is what must come out
    for off, p in arrivals:
        for i, b in enumerate(p):
            oracle.setdefault(off + i, b)
    h = Harness()
    h.feed([(1.0, cv.syn())] + [(2.0 + i, cv.c(o, p)) for i, (o, p) in enumerate(arrivals)])
    h.r.flush()
    rh = h.handlers[0]
    end = max(oracle) + 1
    assert bytes(rh.stream[True]) == bytes(oracle[i] for i in range(end))
    assert rh.gaps[True] == 0


ADDRS = [CLIENT, SERVER, bytes([10, 0, 0, 3]), bytes(16)]
PORTS = [25, 40000, 40001]
SEQS = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF]),
                 st.integers(0, 3000))  # fmt: skip
GARBAGE = st.tuples(
    st.floats(0, 50, allow_nan=False),
    st.sampled_from(ADDRS), st.sampled_from(ADDRS), st.sampled_from(PORTS), st.sampled_from(PORTS),
    SEQS, SEQS, st.integers(0, 255), st.integers(0, 65535), st.integers(0, 255),
    st.binary(max_size=12), st.binary(max_size=700),
)  # fmt: skip


def _without_payload(r: Reassembler) -> int:
    """Connections in the table that carried no payload yet, counted from the table itself."""
    conns = {id(half.conn): half.conn for half in r._flows.values()}
    return sum(1 for c in conns.values() if not c.wired)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(GARBAGE, max_size=120), st.sampled_from([0, 3 * CONN_BYTES]))
def test_garbage_never_raises_and_stays_bounded(pkts: list[tuple], memcap: int) -> None:  # type: ignore[type-arg]
    """Also under a memcap that evicts (the half-open share is then 0.75 connections): the
    count of connections without payload that picks what to evict stays exact."""
    lim = TcpLimits(max_connections=4, max_ooo_bytes_per_dir=1000, max_ooo_chunks_per_dir=8,
                    max_total_bytes=2500, idle_timeout_s=10.0, closed_linger_s=1.0,
                    memcap_bytes=memcap or TcpLimits().memcap_bytes, handler_bytes=100)  # fmt: skip
    h = Harness(lim)
    ts = 0.0
    for dt, src, dst, sp, dp, sq, ak, fl, win, ttl, opt, pay in pkts:
        ts += dt
        h.r.segment(ts, seg(src, dst, sp, dp, sq, ak, fl, pay, win, ttl, opt))
        assert h.r.buffered_bytes() <= lim.max_total_bytes
        assert h.r.largest_buffer() <= lim.max_ooo_bytes_per_dir
        assert len(h.r) <= lim.max_connections
        assert h.r._young_n == _without_payload(h.r)
    h.r.flush()
    assert h.r._young_n == 0
    assert h.r.buffered_bytes() == 0 and len(h.r) == 0
    assert len(h.records) == h.stats.connections
    for rh in h.handlers:
        assert rh.record is not None


LATE = 99  # this segment arrives after the next one (reordering)
KINDS = ["syn", "synack", "c", "s", "c", "s", "cd", "sd", "cd", "sd", "cf", "sf", "cr", "sr"]
STEPS = st.lists(
    st.tuples(
        st.sampled_from([*KINDS, "cw", "sw"]),  # c/s: pure ACK, d: data, f/r: FIN/RST, w: window 0
        st.sampled_from([0, 0, 0, 0, 1, -3, 5, LATE]),  # offset error: mostly in order
        st.sampled_from([0.001, 0.01, 0.5, 3.0]),
    ),
    max_size=40,
)


def _conversation(steps: list[tuple[str, int, float]]) -> list[tuple[float, Seg]]:
    """A plausible dialogue from steps: each side's offsets advance with what it sent."""
    cv = Conv()
    sent = {"c": 0, "s": 0}
    ts = 1.0
    out: list[tuple[float, Seg]] = []
    held: list[Seg] = []  # a LATE segment, sent after the next one
    for kind, err, dt in steps:
        ts += dt
        if kind in ("syn", "synack"):
            segment = cv.syn() if kind == "syn" else cv.synack()
        else:
            side, what = kind[0], kind[1:]
            off = max(sent[side] + (0 if err == LATE else err), 0)
            payload = b"x" * 7 if what == "d" else b""
            flags = {"": ACK, "d": ACK, "f": ACK | FIN, "r": RST | ACK, "w": ACK}[what]
            make = cv.c if side == "c" else cv.s
            segment = make(off, payload, flags, ack=sent["s" if side == "c" else "c"])
            if what == "w":  # a zero window
                segment = (*segment[:7], 0, *segment[8:])
            sent[side] = max(sent[side], off + len(payload) + (what == "f"))
            if err == LATE and not held:
                held.append(segment)
                continue
        out.append((ts, segment))
        out.extend((ts, s) for s in held)
        held.clear()
    out.extend((ts, s) for s in held)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
@example([("c", 0, 0.01), ("syn", 0, 0.01), ("synack", 0, 0.01), ("c", 0, 0.01)])  # RTT after "A"
@example([("cd", 0, 0.01), ("syn", 0, 0.01), ("synack", 0, 0.01), ("cd", 0, 0.01)])  # and "D"
def test_fast_path_changes_nothing(steps: list[tuple[str, int, float]]) -> None:
    """Records and delivered events are the same when every packet takes the slow path."""
    segs = _conversation(steps)
    lim = TcpLimits(idle_timeout_s=20.0, closed_linger_s=1.0)
    fast = Harness(lim)
    fast.feed(segs)
    fast.r.flush()

    def never_fast(self: Connection) -> None:
        self.client.fast = self.server.fast = False

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Connection, "refresh_fast", never_fast)
        slow = Harness(lim)
        slow.feed(segs)
        slow.r.flush()
    assert fast.records == slow.records
    assert [h.events for h in fast.handlers] == [h.events for h in slow.handlers]
