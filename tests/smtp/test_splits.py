"""Any split of the streams gives the same records; hostile input never raises and stays bounded."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.records import SmtpSession
from sensor.smtp import SmtpLimits, session_to_dict

from .dialogues import (
    AUTH_PLAIN,
    BANNER,
    BASIC,
    BDAT,
    EHLO_REPLY,
    PIPELINED,
    STARTTLS,
    conn_record,
    new_parser,
    run,
    run_bytewise,
    run_split,
)

DIALOGUES = {
    "basic": BASIC, "pipelined": PIPELINED, "bdat": BDAT, "auth": AUTH_PLAIN, "starttls": STARTTLS,
}  # fmt: skip


@pytest.mark.parametrize("name", list(DIALOGUES))
def test_every_split_point_gives_identical_records(name: str) -> None:
    events = DIALOGUES[name]
    want = session_to_dict(run(events))
    longest = max(len(p) for _, p in events)
    for cut in range(longest + 1):
        assert session_to_dict(run_split(events, cut)) == want, cut


@pytest.mark.parametrize("name", list(DIALOGUES))
def test_one_byte_at_a_time_gives_identical_records(name: str) -> None:
    events = DIALOGUES[name]
    assert session_to_dict(run_bytewise(events)) == session_to_dict(run(events))


LIMITS = SmtpLimits(max_line=256, max_pending_cmds=8, max_commands=50, max_mime_bytes=2048,
                    max_unanswered_txns=4, max_txns_per_session=20)


def check_bounds(p: object) -> None:
    from sensor.smtp.parser import SmtpParser

    assert isinstance(p, SmtpParser)
    assert len(p.cbuf) <= LIMITS.max_line + 4
    assert len(p.sbuf) <= LIMITS.max_line
    assert len(p.queue) <= LIMITS.max_pending_cmds + 8  # + gap barriers
    assert len(p.commands) <= LIMITS.max_commands
    assert len(p.txns) <= LIMITS.max_unanswered_txns + 1  # + the open one
    assert len(p.done) <= LIMITS.max_txns_per_session


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.binary(max_size=400), st.integers(1, 500))),
                max_size=40))  # fmt: skip
def test_random_bytes_and_gaps_never_raise(events: list[tuple[bool, bytes | int]]) -> None:
    session_to_dict(feed_checking_bounds(events))


def feed_checking_bounds(
    events: list[tuple[bool, bytes | int]], midstream: bool = False
) -> SmtpSession:
    """Feed data and gaps (event i at ts i), checking every bound after each; one session out."""
    out: list[SmtpSession] = []
    p = new_parser(out, LIMITS, midstream)
    for i, (to_server, payload) in enumerate(events):
        if isinstance(payload, int):
            p.gap(to_server, float(i), payload)
        else:
            p.data(to_server, float(i), payload)
        check_bounds(p)
    p.close(999.0, conn_record())
    assert len(out) == 1
    return out[0]


@st.composite
def shuffled_dialogue(draw: st.DrawFn) -> list[tuple[bool, bytes | int]]:
    """A known dialogue cut into random pieces, directions interleaved at random, some gaps."""
    events = draw(st.sampled_from(list(DIALOGUES.values())))
    pieces: dict[bool, list[bytes | int]] = {True: [], False: []}
    for to_server, payload in events:
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
        bounds = [0, *cuts, len(payload)]
        for a, b in itertools.pairwise(bounds):
            if draw(st.integers(0, 30)) == 0:
                pieces[to_server].append(max(1, b - a))
            else:
                pieces[to_server].append(payload[a:b])
    out: list[tuple[bool, bytes | int]] = []
    while pieces[True] or pieces[False]:
        side = draw(st.booleans()) if pieces[True] and pieces[False] else bool(pieces[True])
        out.append((side, pieces[side].pop(0)))
    return out


@settings(max_examples=150, deadline=None)
@given(shuffled_dialogue())
def test_interleavings_and_gaps_never_raise(events: list[tuple[bool, bytes | int]]) -> None:
    feed_checking_bounds(events)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(DIALOGUES.values())), st.data())
def test_interleaving_without_gaps_keeps_transactions(
    events: list[tuple[bool, bytes]], data: st.DataObject
) -> None:
    """Delivering one direction ahead of the other (same timestamps) changes no transaction."""
    want = run(events)
    client = [(i, p) for i, (d, p) in enumerate(events) if d]
    server = [(i, p) for i, (d, p) in enumerate(events) if not d]
    out: list[SmtpSession] = []
    p = new_parser(out)
    while client or server:
        take_client = data.draw(st.booleans()) if client and server else bool(client)
        i, payload = (client if take_client else server).pop(0)
        p.data(take_client, 100.0 + i, payload)
    p.close(200.0, conn_record())
    got = out[0]
    assert [session_to_dict(got)["transactions"]] == [session_to_dict(want)["transactions"]]
    assert got.auth == want.auth and got.commands == want.commands


TXN = b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@s.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"


def test_unanswered_pipelined_transactions_stay_bounded() -> None:
    """Issue 13: transactions the server never answers each kept a state, whatever the caps."""
    events: list[tuple[bool, bytes | int]] = [
        (False, BANNER), (True, b"EHLO c.example\r\n"), (False, EHLO_REPLY),
        *[(True, TXN * 50) for _ in range(40)],
    ]  # fmt: skip
    s = feed_checking_bounds(events)
    assert len(s.transactions) == LIMITS.max_txns_per_session
    assert s.anomalies["txn_unanswered"] >= 1 and s.anomalies["too_many_txns"] == 2000 - 20
    assert s.anomalies["pending_overflow"] > 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(0, 30)), max_size=25))
def test_transactions_in_flight_stay_bounded(batches: list[tuple[int, int]]) -> None:
    """Batches of pipelined transactions, each followed by some replies or none."""
    events: list[tuple[bool, bytes | int]] = [
        (False, BANNER), (True, b"EHLO c.example\r\n"), (False, EHLO_REPLY)]
    for n, replies in batches:
        events.append((True, TXN * n))
        if replies:
            events.append((False, b"250 2.0.0 Ok\r\n" * replies))
    s = feed_checking_bounds(events)
    txns = sum(n for n, _ in batches)
    assert len(s.transactions) == min(txns, LIMITS.max_txns_per_session)
