"""The watermark merge: any interleaving of the sources, with entries sent twice, comes out in
one order, each entry once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.stream.entries import CONN, END, Parsed, make_fields
from sensor.stream.merge import INF, Merge


def entry(src: str, seq: int, t: float, kind: bytes = CONN) -> Parsed:
    fields = make_fields(b"s", src.encode(), seq, kind, t, b"10.0.0.1", b"10.0.0.2", b"{}")
    return Parsed(f"{seq}-{src}", fields)


sources = st.lists(st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=20),
                   min_size=1, max_size=4)


@given(sources, st.randoms(use_true_random=False), st.integers(0, 10))
@settings(max_examples=200, deadline=None)
def test_any_interleaving_gives_one_order(keys: list[list[float]], rnd: object,
                                          dups: int) -> None:
    streams = []
    for i, ks in enumerate(keys):
        ks = sorted(ks)  # a source's keys never decrease
        es = [entry(f"src{i}", n + 1, t) for n, t in enumerate(ks)]
        es.append(entry(f"src{i}", len(ks) + 1, ks[-1], END))
        streams.append(es)
    expected = sorted((p.t, p.src, p.seq) for es in streams for p in es)
    import random

    assert isinstance(rnd, random.Random)
    queues = [list(es) for es in streams]
    arrival: list[Parsed] = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        arrival.append(q.pop(0))
        if dups and rnd.random() < 0.2 and arrival:  # resent after a failure
            arrival.append(rnd.choice(arrival))
            dups -= 1
    merge = Merge()
    merge.expect([f"src{i}" for i in range(len(streams))])  # (one not yet seen cannot hold back)
    out: list[tuple[float, str, int]] = []
    for p in arrival:
        merge.add(p, 0.0)
        out.extend((x.t, x.src, x.seq) for x in merge.pop(merge.watermark(0.0)))
    assert merge.watermark(0.0) == INF  # every source ended
    out.extend((x.t, x.src, x.seq) for x in merge.pop(INF))
    assert out == expected


def test_a_silent_source_stops_holding_back_after_its_timeout() -> None:
    merge = Merge(None, timeout_s=30.0)
    merge.add(entry("a", 1, 5.0), now=0.0)
    merge.add(entry("b", 1, 50.0), now=0.0)
    merge.add(entry("b", 2, 60.0), now=20.0)
    assert merge.watermark(20.0) == 5.0  # a holds everything back (even its own 5.0: more
    assert list(merge.pop(merge.watermark(20.0))) == []  # with the same key may come)
    assert merge.watermark(31.0) == 60.0  # a silent for 31 s: only b counts
    assert [(p.src, p.seq) for p in merge.pop(merge.watermark(31.0))] == [("a", 1), ("b", 1)]
    merge.add(entry("a", 2, 40.0), now=32.0)  # a comes back, behind: applied late, counted
    assert merge.late == 1


def test_floor_drops_what_was_applied_before_a_restart() -> None:
    merge = Merge({"a": 3})
    assert not merge.add(entry("a", 2, 1.0), 0.0)
    assert not merge.add(entry("a", 3, 1.0), 0.0)
    assert merge.add(entry("a", 4, 1.0), 0.0)
    assert merge.duplicates == 2
