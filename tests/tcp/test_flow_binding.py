"""FlowKeys bound to the flow table's halves (sensor/decode/_batch.c bind, Reassembler.owner):
the C batch loop hands segment() the half a key was bound to, so that the table is not looked
up. A binding must always be the table's own entry, must go when the connection does, and must
never be seen by another table of the process."""

from __future__ import annotations

from pathlib import Path

import pcapy
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_helpers import ACK, FIN, RST, Conv, Harness

from sensor.decode.packet import Decoder
from sensor.records import TcpStats
from sensor.tcp.reassembler import Reassembler, TcpLimits, flow_key
from sensor.tcp.stream import Half

ROOT = Path(__file__).resolve().parents[2]


def _batch():  # type: ignore[no-untyped-def]
    """The C module; the suite runs on a build that has it (tests/test_native.py says why not)."""
    from sensor.decode import _batch

    return _batch


def _check(r: Reassembler, seen: list[object]) -> None:
    """Every key object seen is bound, for r, to r's entry for it or to nothing; the halves of
    r's connections hold the extra keys bound to them, and nothing else is bound to them."""
    b = _batch()
    flows = r._flows
    for key in seen:
        half = b.bound(key, r.owner)
        if half is None:
            continue
        assert isinstance(half, Half)
        assert flows.get(key) is half
        c = half.conn
        assert not c.removed
        assert any(k is key for k in c.keys) or half.extra_key is key


def _key_objects(seg: tuple, mode: str, r: Reassembler) -> tuple[object, object]:
    """(key, bound half) as the C loop would pass them in `mode`."""
    key = flow_key(seg[0], seg[2], seg[1], seg[3])
    if mode == "cached":  # the cache's key, with the half r bound it to
        return key, _batch().bound(key, r.owner)
    if mode == "fresh":  # the cache made the key anew: its slot went to another 4-tuple
        return _batch().FlowKey(seg[0], seg[2], seg[1], seg[3]), None
    return key, None  # "unbound": the loop passes the key, not a half


_MODES = st.sampled_from(["cached", "cached", "fresh", "unbound", "steal"])


def _conversation(cv: Conv, how: int) -> list[tuple]:
    segs = [*cv.handshake(), cv.c(0, b"EHLO x\r\n"), cv.s(0, b"220 hi\r\n", ack=8),
            cv.c(8, b"QUIT\r\n", ack=8)]  # fmt: skip
    if how == 0:  # FIN both ways
        segs += [cv.c(14, flags=FIN | ACK, ack=8), cv.s(8, flags=FIN | ACK, ack=15),
                 cv.c(15, ack=9)]  # fmt: skip
    elif how == 1:
        segs.append(cv.s(8, flags=RST | ACK, ack=14))
    return segs  # how 2: left open (timed out, evicted or flushed)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=8),
    st.data(),
)
def test_bound_halves_give_the_records_of_table_lookups(convs: list, data: st.DataObject) -> None:
    """Conversations on a few 4-tuples (reused ports: a new SYN on a closed one), interleaved,
    each segment passed with its key in one of the ways the C loop can pass it, or with its
    binding taken by another table: the records are those of a table that looks every segment
    up, and the bindings stay the table's entries after every segment."""
    limits = TcpLimits(max_connections=4, closed_linger_s=1.0, idle_timeout_s=20.0)
    lanes = []
    for i, (port, how) in enumerate(convs):
        cv = Conv(cport=3000 + port, cisn=1000 + 7919 * i, sisn=5000 + 104729 * i)
        lanes.append(_conversation(cv, how))
    order = []
    cursors = [0] * len(lanes)
    while any(cursors[i] < len(lanes[i]) for i in range(len(lanes))):
        live = [i for i in range(len(lanes)) if cursors[i] < len(lanes[i])]
        i = data.draw(st.sampled_from(live[:2]))  # at most two conversations at a time
        order.append(lanes[i][cursors[i]])
        cursors[i] += 1
    plain, bound = Harness(limits), Harness(limits)
    other = Reassembler(None, TcpStats(), limits)  # a table that steals bindings
    seen: list[object] = []
    ts = 0.0
    for seg in order:
        ts += data.draw(st.sampled_from([0.01, 0.5, 2.0]))
        plain.r.segment(ts, seg)
        mode = data.draw(_MODES)
        if mode == "steal":
            key, half = _key_objects(seg, "cached", bound.r)
            if half is not None:
                _batch().bind(key, other.owner, half)  # as if another table had bound it
            half = None
        else:
            key, half = _key_objects(seg, mode, bound.r)
        seen.append(key)
        bound.r.segment(ts, seg, key, half)
        _check(bound.r, seen)
    plain.r.flush()
    bound.r.flush()
    assert bound.records == plain.records
    assert [h.events for h in bound.handlers] == [h.events for h in plain.handlers]
    for key in seen:  # every connection ended: nothing is bound to this table any more
        assert _batch().bound(key, bound.r.owner) is None


def _feed_capture(r: Reassembler, path: Path, every: int = 0) -> None:
    b = _batch()
    handle = pcapy.open_offline(str(path))
    decode = Decoder().decode
    while True:
        packets, meta = handle.next_batch(64)
        if not meta:
            break
        b.feed(packets, meta, handle.datalink(), decode, r.segment, True, r.owner)


def test_two_tables_fed_the_same_capture_keep_to_their_own_halves() -> None:
    """The C loop's key cache is the process's: two tables fed the same flows, batch by batch in
    turn, each get the records of a table fed alone."""
    cap = ROOT / "pcaps" / "demo.pcap"
    alone = Harness()
    _feed_capture(alone.r, cap)
    alone.r.flush()
    a, b = Harness(), Harness()
    handle = pcapy.open_offline(str(cap))
    decode_a, decode_b = Decoder().decode, Decoder().decode
    feed = _batch().feed
    while True:
        packets, meta = handle.next_batch(16)
        if not meta:
            break
        feed(packets, meta, handle.datalink(), decode_a, a.r.segment, True, a.r.owner)
        feed(packets, meta, handle.datalink(), decode_b, b.r.segment, True, b.r.owner)
    a.r.flush()
    b.r.flush()
    assert len(alone.records) > 100
    assert a.records == alone.records == b.records
    assert [h.events for h in a.handlers] == [h.events for h in alone.handlers]


def test_most_segments_of_a_capture_come_with_their_half() -> None:
    """What the binding is for: past a connection's first segment, the loop hands the half."""
    r = Harness().r
    calls = {3: 0, 4: 0}
    segment = r.segment

    def counting(*args: object) -> None:
        calls[len(args)] += 1
        segment(*args)  # type: ignore[arg-type]

    b = _batch()
    handle = pcapy.open_offline(str(ROOT / "pcaps" / "demo.pcap"))
    decode = Decoder().decode
    while True:
        packets, meta = handle.next_batch(64)
        if not meta:
            break
        b.feed(packets, meta, handle.datalink(), decode, counting, True, r.owner)
    r.flush()
    assert calls[4] > 0.8 * (calls[3] + calls[4])
    assert r._count == 0


def test_a_binding_holds_its_half_until_unbound_and_only_for_its_owner() -> None:
    b = _batch()
    key = b.FlowKey(b"\x01\x02\x03\x04", 1, b"\x05\x06\x07\x08", 25)
    h = Harness()
    half = object()
    b.bind(key, h.r.owner, half)
    assert b.bound(key, h.r.owner) is half
    assert b.bound(key, h.r.owner + 1) is None
    b.unbind(key, h.r.owner + 1)  # another owner's unbind leaves it
    assert b.bound(key, h.r.owner) is half
    b.unbind(key, h.r.owner)
    assert b.bound(key, h.r.owner) is None
    b.bind(("a", 1, "b", 2), h.r.owner, half)  # a tuple key: nothing to bind, no error
    for bad in (0, -1):
        try:
            b.bind(key, bad, half)
        except (ValueError, OverflowError):
            pass
        else:
            raise AssertionError(f"owner {bad} accepted")
    assert Reassembler(None, h.stats).owner != h.r.owner  # never the same in a process
