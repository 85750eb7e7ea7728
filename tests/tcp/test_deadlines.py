"""The connection timers' heap (sensor.tcp.deadlines) against a plain model of it, and the
reassembler's use of it: the heap holds exactly the connections of the table."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_helpers import FIN, Conv, Harness

from sensor.records import TcpStats
from sensor.tcp.conn import Connection
from sensor.tcp.deadlines import Deadlines
from sensor.tcp.reassembler import TcpLimits
from sensor.tcp.stream import Budget

_BUDGET = Budget(TcpStats(), 1 << 20, 1024, 1 << 30)


def _conn(i: int) -> Connection:
    return Connection(0.0, (bytes([10, 0, 0, 1]), 1024 + i), (bytes([10, 0, 0, 2]), 25), _BUDGET)


# few distinct deadlines, so that ties (decided by the scheduling order) are common
_deadline = st.sampled_from([0.0, 1.0, 1.5, 2.0, 5.0, 300.0])
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.integers(0, 11), _deadline),
        st.tuples(st.just("pop"), st.just(0), st.just(0.0)),
        st.tuples(st.just("discard"), st.integers(0, 11), st.just(0.0)),
        st.tuples(st.just("pop_put_back"), st.just(0), st.just(0.0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_the_heap_gives_connections_in_deadline_then_scheduling_order(ops: list) -> None:
    conns = [_conn(i) for i in range(12)]
    heap = Deadlines()
    model: dict[int, tuple[float, int]] = {}  # connection -> (deadline, scheduling order)
    order = 0
    for op, i, deadline in ops:
        if op == "schedule":
            if i not in model or model[i][0] != deadline:  # the same deadline keeps its place
                model[i] = (deadline, order)
                order += 1
            heap.schedule(conns[i], deadline)
        elif op == "discard":
            model.pop(i, None)
            heap.discard(conns[i])
        elif model:
            want = min(model, key=model.__getitem__)
            got = heap.pop()
            assert got is conns[want]
            assert got.heap_index == -1
            if op == "pop_put_back":
                heap.put_back(got)  # with the deadline and order it had
            else:
                del model[want]
        assert len(heap) == len(model)
        first = heap.first()
        if model:
            assert first is conns[min(model, key=model.__getitem__)]
        else:
            assert first is None
        for k, c in enumerate(conns):
            assert (c.heap_index >= 0) == (k in model)
    out = []
    while len(heap):
        out.append(heap.pop())
    assert out == [conns[i] for i in sorted(model, key=model.__getitem__)]


def test_the_heap_holds_exactly_the_table_connections() -> None:
    """Closed, evicted and timed-out connections leave the heap at once (no superseded entries
    kept until a sweep): its size is the table's after every segment."""
    limits = TcpLimits(max_connections=50, closed_linger_s=1.0, idle_timeout_s=30.0)
    h = Harness(limits)
    r = h.r
    ts = 0.0
    for i in range(400):
        cv = Conv(cport=2000 + i)
        segs = [*cv.handshake(), cv.c(0, b"EHLO x\r\n"), cv.s(0, b"220 hi\r\n", ack=8)]
        if i % 3:  # two in three close; the rest stay open until evicted or timed out
            segs += [cv.c(8, flags=FIN | 0x10, ack=8), cv.s(8, flags=FIN | 0x10, ack=9),
                     cv.c(9, ack=9)]  # fmt: skip
        for s in segs:
            ts += 0.01
            r.segment(ts, s)
            assert len(r._heap) == r._count <= 50
    assert h.stats.linger_cut and h.stats.evicted_lru  # both ways out were taken
    r.segment(ts + 100.0, Conv(cport=9999).syn())  # every other connection times out
    assert len(r._heap) == r._count == 1
    r.flush()
    assert len(r._heap) == r._count == 0
