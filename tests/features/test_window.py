"""Sliding windows: sums and distinct counts follow packet time, stay bounded, drop counted."""

from __future__ import annotations

import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.features import window
from sensor.features.schema import DISTINCT_INDEX, SUM_INDEX, SUMS
from sensor.features.window import (
    EVENT_RESOLUTION_S,
    MERGE_MAX_ENTRIES,
    PACKED_ADD,
    HostWindows,
    distinct_key,
)

MSGS, DST = SUM_INDEX["msgs"], DISTINCT_INDEX["dst_ips"]


def ev(ts: float, n: float = 1,
       dst: str = "192.0.2.1") -> tuple[float, tuple[tuple[int, float], ...], tuple[str, ...]]:
    return ts, ((MSGS, n),), (distinct_key(DST, dst),)


def test_events_leave_each_window_after_its_length() -> None:
    w = HostWindows((60.0, 600.0, 3600.0), 100)
    for t, dst in ((0.0, "a"), (30.0, "b"), (100.0, "a")):
        w.advance(t)
        w.add(*ev(t, dst=dst))
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
    w.add(*ev(0.0))
    w.add(*ev(0.5))  # within EVENT_RESOLUTION_S: merged
    assert w.snapshot(2).msgs == 2 and w.dropped == 0
    for t in (2.0, 3.0, 4.0):
        w.add(*ev(t))
    assert w.dropped == 1
    assert w.snapshot(2).msgs == 3  # the merged first event was dropped


def test_a_flood_within_one_second_stays_bounded_and_exact() -> None:
    # Every event lands within EVENT_RESOLUTION_S: merging alone would grow one event forever.
    w = HostWindows((60.0, 600.0, 3600.0), 8)
    n = 6 * MERGE_MAX_ENTRIES
    for i in range(n):
        w.add(*ev(i * 1e-6, dst=f"198.51.100.{i % 200}"))
    adds = [list(PACKED_ADD.iter_unpack(packed)) for _, packed, _ in w._events]
    sizes = [len(a) + len(keys) for a, (_, _, keys) in zip(adds, w._events, strict=True)]
    assert max(sizes) <= MERGE_MAX_ENTRIES + 2  # one event's own entries past the threshold
    kept = sum(sum(a for _, a in pairs) for pairs in adds)
    assert w.snapshot(2).msgs == kept  # sums stay exact over what the cap kept
    assert w.snapshot(2).dst_ips == 200


def test_derived_features_and_interarrival() -> None:
    w = HostWindows((60.0, 600.0, 3600.0), 100)
    ia = SUM_INDEX["ia_n"], SUM_INDEX["ia_sum"], SUM_INDEX["ia_sumsq"]
    for t in (10.0, 20.0, 30.0):
        w.add(t, ((SUM_INDEX["rcpts"], 4), (SUM_INDEX["rcpt_5xx"], 1),
                  (SUM_INDEX["rcpt_unknown"], 1), (ia[0], 1), (ia[1], 10.0),
                  (ia[2], 100.0)), ())
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
        w.add(*ev(now, n, dst))
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


AUTH = SUM_INDEX["auth_failures"]
USERS = DISTINCT_INDEX["auth_users"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.3, 0.9, 5.0, 40.0, 200.0]),
                          st.lists(st.sampled_from("abc"), max_size=3),
                          st.lists(st.sampled_from("xy"), max_size=2)), max_size=50),
       st.sampled_from([3, 10_000]))
def test_sums_and_distinct_counts_equal_an_exact_recount(
        steps: list[tuple[float, list[str], list[str]]], max_events: int) -> None:
    """Against a model of merged events (first time of each), the drop cap and expiry;
    values repeated inside one event or across merged events count once."""
    lengths = (30.0, 120.0, 600.0)
    w = HostWindows(lengths, max_events)
    Rec = tuple[list[str], list[str]]
    groups: list[tuple[float, list[Rec]]] = []  # live merged events of the model
    now = 0.0
    for gap, dsts, users in steps:
        now += gap
        w.advance(now)
        keys = tuple(distinct_key(DST, d) for d in dsts) + tuple(
            distinct_key(USERS, u) for u in users)
        w.add(now, ((MSGS, 1), (AUTH, len(users))), keys)
        groups = [g for g in groups if g[0] > now - lengths[-1]]
        if groups and now - groups[-1][0] < EVENT_RESOLUTION_S:
            groups[-1][1].append((dsts, users))
        else:
            groups.append((now, [(dsts, users)]))
            groups = groups[-max_events:]
    for i, length in enumerate(lengths):
        inside = [r for g in groups if g[0] > now - length for r in g[1]]
        f = w.snapshot(i)
        assert f.msgs == len(inside)
        assert f.auth_failures == sum(len(r[1]) for r in inside)
        assert f.dst_ips == len({d for r in inside for d in r[0]})
        assert f.auth_users == len({u for r in inside for u in r[1]})
        assert w.count(i, len(SUMS) + DST) == f.dst_ips
        assert w.count(i, len(SUMS) + USERS) == f.auth_users
        assert w.count(i, MSGS) == f.msgs
        # the gates' in-place reading agrees with count(), one need or two at a time
        needs = [(i, idx, th, strict) for idx in (MSGS, AUTH, len(SUMS) + DST, len(SUMS) + USERS)
                 for th in (0.0, 1.0, 2.0, 3.0) for strict in (False, True)]
        held = [w.count(n[0], n[1]) > n[2] if n[3] else w.count(n[0], n[1]) >= n[2]
                for n in needs]
        for need, holds in zip(needs, held, strict=True):
            assert w.reaches((need,), 1) == holds
        for a in range(0, len(needs), 7):
            pair = (needs[a], needs[-1 - a])
            assert w.reaches(pair, 2) == (held[a] and held[-1 - a])
            assert w.reaches(pair, 1) == (held[a] or held[-1 - a])
    assert w.empty == (not groups)


# --------------------------------------------------------------------------------------------
# sensor/features/_sums.c against its Python reading, window.accumulate_py

_AMOUNTS = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SUMS) - 1), _AMOUNTS), max_size=40),
       st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=len(SUMS),
                max_size=len(SUMS)))  # fmt: skip
def test_native_sums_equal_their_python_reading(adds: list[tuple[int, float]],
                                                start: list[float]) -> None:
    assert window.NATIVE_SUMS  # the suite runs on the native build
    native, python = array("d", start), array("d", start)
    packed = window._accumulate(native, tuple(adds))
    assert packed == window.accumulate_py(python, tuple(adds))
    assert native.tobytes() == python.tobytes()  # bit for bit, NaNs and signed zeros included
    assert [i for i, _ in PACKED_ADD.iter_unpack(packed)] == [i for i, _ in adds]


def test_native_sums_refuse_what_the_python_reading_refuses() -> None:
    for adds in (((len(SUMS), 1.0),), ((-1, 1.0),), ((256, 1.0),), ((0, "x"),), ((0,),),
                 (0, 1.0), ((0, 2**1100),)):  # fmt: skip
        for accumulate in (window._accumulate, window.accumulate_py):
            with pytest.raises((IndexError, TypeError, struct.error, OverflowError)):
                accumulate(array("d", bytes(8 * len(SUMS))), adds)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # the sums are doubles
        window._accumulate(array("i", [0] * len(SUMS)), ((0, 1.0),))  # type: ignore[arg-type]
