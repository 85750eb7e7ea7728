"""The reassembly memcap: estimated bytes; closed connections' lingers cut first, then half-open
flows evicted; no handler before data."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from tcp_helpers import ACK, FIN, PSH, Conv, Harness

from sensor.pipeline import SMTP_PARSER_BYTES, Pipeline
from sensor.tcp.reassembler import CONN_BYTES, TcpLimits


def flood_conv(i: int) -> Conv:
    """The i-th flow of a SYN flood: its own client address and port."""
    return Conv(cisn=i * 7919, sisn=i * 104729, cport=1024 + i % 60000,
                client=bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255]))  # fmt: skip


def smtp_start(cv: Conv) -> list:
    return [
        *cv.handshake(),
        cv.s(0, b"220 mx.example.org ESMTP\r\n", ACK | PSH),
        cv.c(0, b"EHLO client.example.com\r\n", ACK | PSH, ack=26),
        cv.s(26, b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n", ACK | PSH, ack=25),
        cv.c(25, b"MAIL FROM:<a@example.com>\r\n", ACK | PSH, ack=76),
    ]


def test_flows_without_payload_get_no_handler_until_their_first_byte() -> None:
    h = Harness()
    for i in range(50):
        h.r.segment(1.0 + i * 1e-3, flood_conv(i).syn())
    cv = Conv(cport=50000)
    h.feed([(2.0, s) for s in cv.handshake()])
    assert h.handlers == []
    assert h.r.memory() == 51 * CONN_BYTES
    h.r.segment(2.1, cv.s(0, b"220 hi\r\n", ACK | PSH))
    assert len(h.handlers) == 1
    h.r.flush()
    assert len(h.records) == 51  # every flow has its record, handler or not
    (rec,) = [r for r in h.records if r.client_port == 50000]
    assert h.handlers[0].uid == rec.uid  # the uid the handler got is the record's
    assert h.handlers[0].record is rec
    assert {r.state for r in h.records if r.client_port != 50000} == {"S0"}


def test_memcap_evicts_the_oldest_half_open_flows_first() -> None:
    limit = 40 * CONN_BYTES + 20000
    h = Harness(TcpLimits(memcap_bytes=limit, handler_bytes=5000))
    sessions = [Conv(cport=50000 + k, client=bytes([192, 0, 2, k + 1])) for k in range(3)]
    for k, cv in enumerate(sessions):
        h.feed([(1.0 + k, s) for s in smtp_start(cv)])
    for i in range(200):
        h.r.segment(10.0 + i * 1e-3, flood_conv(i).syn())
        assert h.r.memory() <= limit
    assert len(h.handlers) == 3
    assert h.stats.evicted_memcap == h.stats.evicted_half_open > 150
    evicted = [r for r in h.records if r.end_reason == "evicted"]
    assert [r.client_port for r in evicted] == [1024 + i for i in range(len(evicted))]  # oldest
    assert all(r.state == "S0" for r in evicted)
    h.r.flush()
    assert len(h.records) == 203  # every flow accounted for
    for hd in h.handlers:  # the sessions were never evicted
        assert hd.record is not None and hd.record.end_reason == "eof"


def test_memcap_then_evicts_the_least_recently_active_connection() -> None:
    sessions = [Conv(cport=50000 + k, client=bytes([192, 0, 2, k + 1])) for k in range(4)]
    probe = Harness(TcpLimits(handler_bytes=5000))
    for cv in sessions[:3]:
        probe.feed([(1.0, s) for s in smtp_start(cv)])
    h = Harness(TcpLimits(memcap_bytes=probe.r.memory() + 1000, handler_bytes=5000))
    for k, cv in enumerate(sessions[:3]):
        h.feed([(1.0 + k, s) for s in smtp_start(cv)])
    h.r.segment(5.0, sessions[0].c(52, b"RCPT TO:<b@example.org>\r\n", ACK | PSH, ack=76))
    h.feed([(6.0, s) for s in smtp_start(sessions[3])])
    assert h.stats.evicted_memcap == 1
    assert h.stats.evicted_half_open == 0
    (rec,) = h.records
    assert (rec.client_port, rec.end_reason) == (50001, "evicted")  # idle since t=2


def smtp_done(cv: Conv) -> list:
    """smtp_start, then QUIT, 221 and the FIN exchange: the connection is closed and lingers."""
    return [
        *smtp_start(cv),
        cv.s(76, b"250 OK\r\n", ACK | PSH, ack=52),
        cv.c(52, b"QUIT\r\n", ACK | PSH, ack=84),
        cv.s(84, b"221 bye\r\n", ACK | PSH, ack=58),
        cv.s(93, b"", ACK | FIN, ack=58),
        cv.c(58, b"", ACK | FIN, ack=94),
        cv.s(94, b"", ACK, ack=59),
    ]


@pytest.mark.parametrize("cap", ["memcap", "max_connections"])
def test_lingering_closed_connections_make_room_before_any_open_one_is_evicted(cap: str) -> None:
    """A busy link: every connection that closed waits closed_linger_s for stragglers, and those
    fill the table. New connections (handshake only: no payload yet) must not be evicted for
    them, or the rest of each comes back as a mid-stream session with a lost greeting."""
    probe = Harness(TcpLimits(handler_bytes=5000))
    for s in smtp_start(Conv(cport=40000)):
        probe.r.segment(1.0, s)
    per_conn = probe.r.memory()
    room = 4  # connections that fit the cap
    limits = (TcpLimits(memcap_bytes=room * per_conn, handler_bytes=5000) if cap == "memcap"
              else TcpLimits(max_connections=room, handler_bytes=5000))  # fmt: skip
    h = Harness(limits)
    convs = [Conv(cport=41000 + k, client=bytes([192, 0, 2, k + 1]), cisn=k * 7919)
             for k in range(40)]  # fmt: skip
    h.feed([(10.0, s) for s in convs[0].handshake()])
    for k, cv in enumerate(convs):  # all within the 5 s linger
        if k + 1 < len(convs):  # the next one's handshake before this one's dialogue
            h.feed([(10.0 + k * 0.01, s) for s in convs[k + 1].handshake()])
        h.feed([(10.005 + k * 0.01, s) for s in smtp_done(cv)[len(cv.handshake()):]])
    ended = {r.client_port: r for r in h.records}
    assert len(ended) == 40 - room  # room made for each new one: the earliest closed went
    assert [r.client_port for r in h.records] == [41000 + k for k in range(len(h.records))]
    assert {r.end_reason for r in h.records} == {"fin"}
    assert {r.history for r in h.records} == {h.records[0].history}  # every one whole: ShAdDaFf
    assert h.stats.linger_cut == len(h.records)
    assert h.stats.evicted_half_open == h.stats.evicted_memcap == h.stats.evicted_lru == 0
    h.r.flush()
    assert h.stats.connections == 40  # no connection was split in two
    assert all(hd.record is not None and hd.record.end_reason == "fin" for hd in h.handlers)


@pytest.mark.parametrize("cap", ["memcap", "max_connections"])
def test_below_the_half_open_share_the_least_recently_active_goes_not_a_new_connection(
    cap: str,
) -> None:
    """A run of kernel drops took the FINs of some sessions: they sit idle until idle_timeout_s.
    A connection in its handshake is among the newest, not the one to evict: its rest would
    come back mid-stream, its greeting lost (and its record would read as an unanswered
    attempt)."""
    zombies = [Conv(cport=42000 + k, client=bytes([192, 0, 2, k + 1])) for k in range(7)]
    fresh = [Conv(cport=42100 + k, client=bytes([192, 0, 2, 100 + k])) for k in range(2)]
    probe = Harness(TcpLimits(handler_bytes=5000))
    for cv in zombies:
        probe.feed([(1.0, s) for s in smtp_start(cv)])
    probe.feed([(1.0, s) for s in fresh[0].handshake()])
    limits = (TcpLimits(memcap_bytes=probe.r.memory() + 1000, handler_bytes=5000)
              if cap == "memcap" else TcpLimits(max_connections=8, handler_bytes=5000))  # fmt: skip
    h = Harness(limits)
    for k, cv in enumerate(zombies):  # idle since 1.0, 1.1, ...
        h.feed([(1.0 + k * 0.1, s) for s in smtp_start(cv)])
    h.feed([(9.0, s) for s in fresh[0].handshake()])  # no payload yet
    h.feed([(9.1, s) for s in fresh[1].handshake()])
    (rec,) = h.records
    assert (rec.client_port, rec.end_reason) == (42000, "evicted")  # idle the longest
    assert h.stats.evicted_half_open == 0
    for cv in fresh:
        h.r.segment(9.2, cv.s(0, b"220 mx.example.org ESMTP\r\n", ACK | PSH))
    h.r.flush()
    for cv in fresh:
        (whole,) = [r for r in h.records if r.client_port == cv.cport]
        assert whole.history.startswith("ShA")  # one record, from its SYN


def test_strays_make_room_before_anything_open() -> None:
    """A segment with neither SYN nor payload on a 4-tuple the table does not hold (the last
    ACK of a connection written out) opens a connection: those go first, before a connection
    in its handshake."""
    sessions = [Conv(cport=43000 + k, client=bytes([192, 0, 2, k + 1])) for k in range(3)]
    h = Harness(TcpLimits(max_connections=4, handler_bytes=5000))
    h.feed([(1.0, s) for s in smtp_start(sessions[0])])
    young = Conv(cport=43050, client=bytes([192, 0, 2, 50]))
    h.feed([(1.5, s) for s in young.handshake()])
    stray = Conv(cport=43100, client=bytes([192, 0, 2, 99]))
    h.r.segment(2.0, stray.c(500, b"", ACK, ack=900))
    h.feed([(3.0, s) for s in smtp_start(sessions[1])])
    h.feed([(4.0, s) for s in smtp_start(sessions[2])])
    (rec,) = h.records
    assert (rec.client_port, rec.state, rec.end_reason) == (43100, "OTH", "evicted")
    assert h.stats.evicted_half_open == 1


def test_the_estimate_matches_what_connections_really_cost() -> None:
    """CONN_BYTES and SMTP_PARSER_BYTES, against tracemalloc (within 25%)."""
    n = 3000
    for kind in ("syn", "handshake", "smtp"):
        segs = []
        for i in range(n):
            cv = flood_conv(i)
            segs += {"syn": [cv.syn()], "handshake": cv.handshake(), "smtp": smtp_start(cv)}[kind]
        pipe = Pipeline(tcp_limits=TcpLimits(memcap_bytes=1 << 40))
        reasm = pipe._reasm  # the run's reassembler, to read its estimate
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i, s in enumerate(segs):
                reasm.segment(1000.0 + i * 1e-5, s)
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        estimate = reasm.memory()
        assert estimate == pytest.approx(used, rel=0.25), kind
        if kind != "smtp":
            assert estimate == n * CONN_BYTES  # no parser for flows without payload
        else:
            assert estimate > n * (CONN_BYTES + SMTP_PARSER_BYTES)


def test_split_divides_every_global_cap() -> None:
    lim = TcpLimits(max_connections=1001, max_total_bytes=300, memcap_bytes=10 << 20)
    share = lim.split(2)
    assert (share.max_connections, share.max_total_bytes, share.memcap_bytes) == (500, 150, 5 << 20)
    assert share.max_ooo_bytes_per_dir == lim.max_ooo_bytes_per_dir  # per direction: unchanged
    assert share.rexmit_segments == lim.rexmit_segments
