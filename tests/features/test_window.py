"""Sliding windows: sums and distinct counts follow packet time, stay bounded, drop counted."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.features.schema import DISTINCT_INDEX, SUM_INDEX
from sensor.features.window import EVENT_RESOLUTION_S, HostWindows

MSGS, DST = SUM_INDEX["msgs"], DISTINCT_INDEX["dst_ips"]


def ev(ts: float, n: float = 1, dst: str = "192.0.2.1") -> tuple[float, tuple[tuple[int, float],
                                                                          ...],
                                                              tuple[tuple[int, str], ...]]:
    return ts, ((MSGS, n),), ((DST, dst),)


def test_events_leave_each_window_after_its_length() -> None:
    w = HostWindows((60.0, 600.0, 3600.0), 100)
    for t, dst in ((0.0, "a"), (30.0, "b"), (100.0, "a")):
        w.advance(t)
        w.add(ev(t, dst=dst))
    w.advance(100.0)
    short, medium = w.snapshot(0), w.snapshot(1)
    assert (short.msgs, short.dst_ips) == (1, 1)
    assert (medium.msgs, medium.dst_ips) == (3, 2)
    assert w.start(0, 100.0) == 100.0 and w.start(1, 100.0) == 0.0
    w.advance(700.0)
    assert w.snapshot(1).msgs == 0 and w.snapshot(2).msgs == 3
    w.advance(3700.1)
    assert w.snapshot(2).msgs == 0 and w.snapshot(2).dst_ips == 0 and w.empty


def test_close_events_merge_and_the_cap_drops_the_oldest() -> None:
    w = HostWindows((60.0, 600.0, 3600.0), 3)
    w.add(ev(0.0))
    w.add(ev(0.5))  # within EVENT_RESOLUTION_S: merged
    assert w.snapshot(2).msgs == 2 and w.dropped == 0
    for t in (2.0, 3.0, 4.0):
        w.add(ev(t))
    assert w.dropped == 1
    assert w.snapshot(2).msgs == 3  # the merged first event was dropped


def test_derived_features_and_interarrival() -> None:
    w = HostWindows((60.0, 600.0, 3600.0), 100)
    ia = SUM_INDEX["ia_n"], SUM_INDEX["ia_sum"], SUM_INDEX["ia_sumsq"]
    for t in (10.0, 20.0, 30.0):
        w.add((t, ((SUM_INDEX["rcpts"], 4), (SUM_INDEX["rcpt_5xx"], 1),
                   (SUM_INDEX["rcpt_unknown"], 1), (ia[0], 1), (ia[1], 10.0),
                   (ia[2], 100.0)), ()))
    f = w.snapshot(0)
    assert f.reject_ratio == 0.25 and f.unknown_ratio == 0.25
    assert f.interarrival_cv == 0.0  # perfectly regular
    assert f.mean_msg_size == 0.0 and f.tls_share == 0.0  # no division by zero


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50, allow_nan=False), st.integers(0, 5),
                          st.sampled_from("abcd")), max_size=60))
def test_window_sums_equal_a_recount(steps: list[tuple[float, int, str]]) -> None:
    lengths = (30.0, 120.0, 600.0)
    w = HostWindows(lengths, 10_000)
    now, kept = 0.0, []
    for gap, n, dst in steps:
        now += gap
        w.advance(now)
        w.add(ev(now, n, dst))
        kept.append((now, n, dst))
    for i, length in enumerate(lengths):
        # merged events carry the time of the first of them: they leave up to
        # EVENT_RESOLUTION_S early, and never late
        inside = [k for k in kept if k[0] > now - length + EVENT_RESOLUTION_S]
        maybe = [k for k in kept if k[0] > now - length - EVENT_RESOLUTION_S]
        f = w.snapshot(i)
        assert f.msgs <= sum(k[1] for k in maybe)
        assert f.msgs >= sum(k[1] for k in inside)
        assert f.dst_ips >= len({k[2] for k in inside})
