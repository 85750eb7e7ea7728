"""Unit scenarios for sensor/tcp: delivery, gaps, lifecycle, states, caps and records."""

from __future__ import annotations

import hashlib
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_helpers import ACK, CLIENT, FIN, PSH, RST, SERVER, SYN, Conv, Harness, seg

from sensor.records import ConnRecord
from sensor.tcp.conn import _UID_TABLE, IP_MEMO_ENTRIES, ip_text, ip_text_of
from sensor.tcp.reassembler import TcpLimits, make_uid


def timed(segs: list, t0: float = 100.0, step: float = 0.01) -> list:
    return [(t0 + i * step, s) for i, s in enumerate(segs)]


def full_session(cv: Conv) -> list:
    """Handshake, banner, one command and reply, FIN from the client, FIN from the server."""
    return [
        *cv.handshake(),
        cv.s(0, b"220 hi\r\n", ACK | PSH),
        cv.c(0, b"QUIT\r\n", ACK | PSH, ack=8),
        cv.s(8, b"221 bye\r\n", ACK | PSH, ack=6),
        cv.c(6, b"", ACK | FIN, ack=17),
        cv.s(17, b"", ACK | FIN, ack=7),
        cv.c(7, b"", ACK, ack=18),
    ]


def only_record(h: Harness) -> ConnRecord:
    assert len(h.records) == 1
    return h.records[0]


def test_clean_session_sf_record_and_streams() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed(full_session(cv)))
    assert h.records == []  # the record waits the linger time for stragglers
    h.r.flush()
    rec = only_record(h)
    rh = h.handlers[0]
    assert bytes(rh.stream[True]) == b"QUIT\r\n"
    assert bytes(rh.stream[False]) == b"220 hi\r\n221 bye\r\n"
    assert rec.state == "SF"
    assert rec.history == "ShAdDFf"  # the server never sent a pure ACK
    assert rec.end_reason == "fin"
    assert (rec.client_ip, rec.client_port, rec.server_ip, rec.server_port) == (
        "10.0.0.1", 40000, "10.0.0.2", 25)  # fmt: skip
    assert (rec.bytes_to_server, rec.bytes_to_client) == (6, 17)
    assert (rec.pkts_to_server, rec.pkts_to_client) == (5, 4)
    assert rec.rtt_s is not None and abs(rec.rtt_s - 0.02) < 1e-9
    assert (rec.syn_ttl, rec.syn_window, rec.syn_mss, rec.syn_wscale) == (57, 29200, 1460, 7)
    assert abs(rec.duration_s - 0.08) < 1e-9
    assert rec.gaps == rec.retrans_segments == rec.ooo_segments == 0
    assert rh.record is rec and rh.close_ts == 100.08


def test_record_emitted_after_linger_in_packet_time() -> None:
    h = Harness()
    h.feed(timed(full_session(Conv())))
    other = Conv(cport=40001)
    h.r.segment(104.0, other.syn())
    assert h.records == []
    h.r.segment(106.0, other.syn())  # same ISN: a retransmitted SYN, and 5 s passed
    assert [r.end_reason for r in h.records] == ["fin"]


@pytest.mark.parametrize("kind", ["rst", "straggler"])
def test_a_segment_handled_early_still_runs_a_due_expiry_pass(kind: str) -> None:
    # The pass falls at the first segment at or after its time, whatever that segment is: a
    # flow-split worker that does not own it runs the pass there too, and the merged records of
    # one pass must come from the same packet in every worker.
    h = Harness()
    h.feed(timed(full_session(Conv())))  # closed at 100.08: emitted by the first pass from 105.08
    late = Conv(cport=40001)
    h.feed(timed(full_session(late), t0=101.0))  # closed at 101.08, lingering until 106.08
    assert h.records == []
    if kind == "rst":
        h.r.segment(105.5, Conv(cport=40002).c(0, flags=RST))  # a new flow's RST: closed at once
    else:
        h.r.segment(105.5, late.c(0, b"QUIT\r\n", ACK | PSH, ack=8))  # after late's close
    assert [r.end_reason for r in h.records] == ["fin"]


def test_retransmission_not_delivered_twice() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(0, b"HELO a\r\n"), cv.c(0, b"HELO a\r\n"),
                  cv.c(3, b"O a\r\nMAIL"), cv.c(8, b"MAIL FROM")]))  # fmt: skip
    h.r.flush()
    rec = only_record(h)
    assert bytes(h.handlers[0].stream[True]) == b"HELO a\r\nMAIL FROM"
    assert rec.retrans_segments == 3
    assert rec.bytes_to_server == 17
    assert "T" in rec.history
    assert h.stats.retransmissions == 3


def test_reordering_buffers_then_delivers_in_order() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(10, b"KLMNO"), cv.c(5, b"FGHIJ"), cv.c(0, b"ABCDE")]))
    assert bytes(h.handlers[0].stream[True]) == b"ABCDEFGHIJKLMNO"
    assert h.r.buffered_bytes() == 0
    h.r.flush()
    assert only_record(h).ooo_segments == 2
    assert h.handlers[0].gaps[True] == 0


def test_overlap_first_copy_wins_and_conflict_counted() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(4, b"EFGH"), cv.c(2, b"xxXXYYZZ"), cv.c(0, b"AB")]))
    h.r.flush()
    assert bytes(h.handlers[0].stream[True]) == b"ABxxEFGHZZ"
    rec = only_record(h)
    assert rec.conflicting_overlaps == 1
    assert h.stats.conflicting_overlaps == 1


def test_sequence_wrap_around_2_32() -> None:
    h = Harness()
    cv = Conv(cisn=0xFFFFFFFA, sisn=0xFFFFFFFF)
    body = bytes(range(40))
    h.feed(timed([*cv.handshake(), cv.c(20, body[20:]), cv.c(0, body[:10]), cv.c(10, body[10:20]),
                  cv.s(0, b"250 ok\r\n")]))  # fmt: skip
    h.r.flush()
    assert bytes(h.handlers[0].stream[True]) == body
    assert bytes(h.handlers[0].stream[False]) == b"250 ok\r\n"
    assert only_record(h).gaps == 0


def test_midstream_pickup_does_not_rewind() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([cv.c(100, b"later"), cv.c(90, b"0123456789"), cv.c(105, b" still"),
                  cv.s(0, b"250 x\r\n", ack=111)]))  # fmt: skip
    h.r.flush()
    rh = h.handlers[0]
    assert bytes(rh.stream[True]) == b"later still"
    rec = only_record(h)
    assert rec.state == "OTH"
    assert rec.end_reason == "eof"
    assert rec.retrans_segments == 1
    assert (rec.client_port, rec.server_port) == (40000, 25)


def test_client_is_non_server_port_side_when_server_speaks_first() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([cv.s(0, b"220 hi\r\n")]))
    h.r.flush()
    rec = only_record(h)
    assert (rec.client_ip, rec.server_port) == ("10.0.0.1", 25)
    assert bytes(h.handlers[0].stream[False]) == b"220 hi\r\n"


def test_client_tie_break_lower_port_is_server() -> None:
    h = Harness(ports=frozenset())
    h.feed([(1.0, seg(SERVER, CLIENT, 587, 50000, 1, 1, ACK, b"x"))])
    h.r.flush()
    rec = only_record(h)
    assert (rec.client_ip, rec.client_port, rec.server_port) == ("10.0.0.1", 50000, 587)


def test_synack_first_makes_receiver_the_client() -> None:
    h = Harness(ports=frozenset())
    cv = Conv(sport=9999, cport=80)
    h.feed(timed([cv.synack(), cv.c(0)]))
    h.r.flush()
    rec = only_record(h)
    assert (rec.client_port, rec.server_port) == (80, 9999)
    assert rec.state == "S1"  # a missed SYN, then the ACK completes the handshake (as Zeek)


def test_one_sided_capture_client_only() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([cv.syn(), cv.c(0), cv.c(0, b"EHLO x\r\n"), cv.c(8, b"QUIT\r\n"),
                  cv.c(14, b"", ACK | FIN)]))  # fmt: skip
    h.r.flush()
    rec = only_record(h)
    assert bytes(h.handlers[0].stream[True]) == b"EHLO x\r\nQUIT\r\n"
    assert rec.state == "SH"
    assert rec.pkts_to_client == 0
    assert rec.rtt_s is None


def test_syn_payload_tfo_is_delivered() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([cv.syn(b"EHLO"), cv.synack(), cv.c(4, b" x\r\n"), cv.c(0, b"EHLO")]))
    h.r.flush()
    assert bytes(h.handlers[0].stream[True]) == b"EHLO x\r\n"


def test_rst_delivers_buffered_data_with_gap_and_closes() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(0, b"AB"), cv.c(5, b"FG"), cv.c(7, b"", RST | ACK)]))
    rh = h.handlers[0]
    assert [e[0] for e in rh.events] == ["data", "gap", "data"]
    assert rh.gaps[True] == 3
    h.r.flush()
    rec = only_record(h)
    assert (rec.state, rec.end_reason) == ("RSTO", "rst")
    assert (rec.gaps, rec.gap_bytes, rec.bytes_to_server) == (1, 3, 4)
    assert "G" in rec.history and "R" in rec.history


def _state_of(segs: list) -> str:
    h = Harness()
    h.feed(timed(segs))
    h.r.flush()
    return only_record(h).state


def test_states_from_small_scenarios() -> None:
    cv = Conv()
    assert _state_of([cv.syn()]) == "S0"
    assert _state_of([cv.syn(), cv.s(-1, b"", RST | ACK, ack=0)]) == "REJ"
    assert _state_of([*cv.handshake()]) == "S1"
    assert _state_of(full_session(cv)) == "SF"
    assert _state_of([*cv.handshake(), cv.c(0, b"x"), cv.c(1, b"", RST)]) == "RSTO"
    assert _state_of([*cv.handshake(), cv.s(0, b"x"), cv.s(1, b"", RST)]) == "RSTR"
    assert _state_of([cv.c(0, b"x"), cv.s(0, b"y")]) == "OTH"
    assert _state_of([cv.syn(), cv.c(0, b"", RST)]) == "RSTOS0"
    assert _state_of([*cv.handshake(), cv.c(0, b"", FIN | ACK)]) == "S2"
    assert _state_of([*cv.handshake(), cv.s(0, b"", FIN | ACK)]) == "S3"


def test_port_reuse_gives_two_records() -> None:
    h = Harness()
    first = Conv()
    again = Conv(cisn=777777, sisn=888888)
    segs = timed(full_session(first)) + timed(
        [*again.handshake(), again.c(0, b"NOOP\r\n")], t0=101.0
    )
    h.feed(segs)
    h.r.flush()
    assert len(h.records) == 2
    a, b = h.records
    assert a.uid != b.uid
    assert (a.state, a.end_reason, b.end_reason) == ("SF", "fin", "eof")
    assert bytes(h.handlers[1].stream[True]) == b"NOOP\r\n"
    assert h.stats.connections == 2


def test_new_syn_after_client_fin_starts_new_connection() -> None:
    h = Harness()
    cv = Conv()
    again = Conv(cisn=99)
    h.feed(timed([*cv.handshake(), cv.c(0, b"", FIN | ACK), again.syn()]))
    h.r.flush()
    assert [(r.state, r.end_reason) for r in h.records] == [("S2", "fin"), ("S0", "eof")]


def test_lru_eviction_counted() -> None:
    h = Harness(TcpLimits(max_connections=2))
    convs = [Conv(cport=40000 + i) for i in range(3)]
    h.feed([(1.0, convs[0].syn()), (2.0, convs[1].syn()), (3.0, convs[0].c(0, b"x")),
            (4.0, convs[2].syn())])  # fmt: skip
    assert h.stats.evicted_lru == 1
    assert [(r.client_port, r.end_reason) for r in h.records] == [(40001, "evicted")]
    assert len(h.r) == 2
    h.r.flush()
    assert len(h.records) == 3


def test_idle_timeout_in_packet_time() -> None:
    h = Harness(TcpLimits(idle_timeout_s=300.0))
    a, b = Conv(cport=1111), Conv(cport=2222)
    h.feed([(10.0, a.syn()), (200.0, b.syn()), (309.0, b.syn())])
    assert h.records == []
    h.feed([(311.0, b.syn())])
    assert [(r.client_port, r.end_reason) for r in h.records] == [(1111, "timeout")]
    assert h.stats.timed_out == 1
    h.r.expire(700.0)
    assert [r.end_reason for r in h.records] == ["timeout", "timeout"]
    assert len(h.r) == 0


def test_flush_delivers_everything_with_gaps() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(10, b"KL"), cv.c(20, b"UV"), cv.s(0, b"220")]))
    assert h.r.buffered_bytes() == 4
    h.r.flush()
    rh = h.handlers[0]
    assert [(e[0], e[3]) for e in rh.events if e[1]] == [
        ("gap", 10), ("data", b"KL"), ("gap", 8), ("data", b"UV")]  # fmt: skip
    assert h.r.buffered_bytes() == 0
    assert only_record(h).end_reason == "eof"
    assert h.stats.flushed_at_end == 1


def test_fin_beyond_hole_waits_for_retransmission() -> None:
    h = Harness()
    cv = Conv()
    segs = [*cv.handshake(), cv.c(3, b"DEF", ACK | FIN), cv.s(0, b"", ACK | FIN), cv.c(0, b"ABC")]
    h.feed(timed([*segs, cv.c(7, b"", ACK, ack=1), cv.s(1, b"", ACK, ack=7)]))
    h.r.flush()
    rec = only_record(h)
    assert bytes(h.handlers[0].stream[True]) == b"ABCDEF"
    assert (rec.state, rec.end_reason, rec.gaps) == ("SF", "fin", 0)


def test_fin_beyond_unfilled_hole_becomes_gap_at_linger_end() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(3, b"DEF", ACK | FIN), cv.s(0, b"", ACK | FIN)]))
    h.r.expire(200.0)
    rec = only_record(h)
    assert (rec.state, rec.end_reason, rec.gap_bytes) == ("SF", "fin", 3)
    assert bytes(h.handlers[0].stream[True]) == b"DEF"


def test_ack_reveals_lost_tail_as_gap() -> None:
    h = Harness()
    cv = Conv()
    h.feed(timed([*cv.handshake(), cv.c(0, b"DATA\r\n"), cv.s(0, b"", ACK, ack=20)]))
    h.r.flush()
    rh = h.handlers[0]
    assert rh.events[-2][:2] == ("gap", True) and rh.events[-2][3] == 14
    assert only_record(h).gap_bytes == 14


def test_ooo_cap_hit_delivers_with_gap_and_stays_bounded() -> None:
    h = Harness(TcpLimits(max_ooo_bytes_per_dir=100))
    cv = Conv()
    h.feed(timed([*cv.handshake()]))
    for i in range(10):
        h.r.segment(101.0 + i, cv.c(50 + 30 * i, b"z" * 30))
        assert h.r.largest_buffer() <= 100
    assert h.stats.ooo_cap_hits >= 1
    rh = h.handlers[0]
    assert rh.events[0][:2] == ("gap", True) and rh.events[0][3] == 50
    h.r.flush()
    assert bytes(rh.stream[True]) == b"z" * 300


def test_chunk_count_cap() -> None:
    h = Harness(TcpLimits(max_ooo_chunks_per_dir=4))
    cv = Conv()
    h.feed(timed([*cv.handshake()]))
    for i in range(10):
        h.r.segment(101.0 + i, cv.c(2 + 2 * i, b"y"))
    assert h.stats.ooo_cap_hits >= 1
    h.r.flush()
    assert bytes(h.handlers[0].stream[True]) == b"y" * 10


def test_total_cap_flushes_oldest_buffer() -> None:
    h = Harness(TcpLimits(max_total_bytes=50))
    a, b = Conv(cport=1), Conv(cport=2)
    h.feed(timed([*a.handshake(), *b.handshake(), a.c(10, b"a" * 30), b.c(10, b"b" * 30)]))
    assert h.stats.total_cap_hits == 1
    assert h.r.buffered_bytes() == 30
    assert bytes(h.handlers[0].stream[True]) == b"a" * 30  # the oldest buffer went out
    assert h.handlers[0].gaps[True] == 10


def test_uid_is_deterministic_and_zeek_shaped() -> None:
    uids = []
    for _ in range(2):
        h = Harness()
        h.feed(timed(full_session(Conv())))
        h.r.flush()
        uids.append(only_record(h).uid)
    assert uids[0] == uids[1]
    assert len(uids[0]) == 17 and uids[0].startswith("C") and uids[0].isalnum()
    assert make_uid(1.0, "a", 1, "b", 2) != make_uid(1.0, "a", 1, "b", 3)
    # the key is ts's repr and the endpoints joined by "|" (uids stay those of earlier builds)
    assert make_uid(1700000000.123456, "10.1.2.3", 45678, "192.168.10.20", 25) == (
        "C" + hashlib.blake2b(b"1700000000.123456|10.1.2.3|45678|192.168.10.20|25",
                              digest_size=16).digest().translate(_UID_TABLE).decode()
    )  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16))
def test_address_text_is_inet_ntop(addr: bytes) -> None:
    family = socket.AF_INET if len(addr) == 4 else socket.AF_INET6
    assert ip_text_of(addr) == socket.inet_ntop(family, addr)
    assert ip_text(addr) == ip_text(bytes(addr)) == socket.inet_ntop(family, addr)  # memo'd


def test_address_text_memo_holds_past_its_bound() -> None:
    """More addresses than the memo keeps: each is still its own text (the memo starts over)."""
    addrs = [i.to_bytes(4, "big") for i in range(IP_MEMO_ENTRIES + 100)]
    for _ in range(2):
        assert [ip_text(a) for a in addrs] == [socket.inet_ntoa(a) for a in addrs]


def test_without_factory_still_emits_records() -> None:
    from sensor.records import TcpStats
    from sensor.tcp.reassembler import Reassembler

    records: list[ConnRecord] = []
    r = Reassembler(None, TcpStats(), on_record=records.append)
    for i, s in enumerate(full_session(Conv())):
        r.segment(float(i), s)
    r.flush()
    assert [x.state for x in records] == ["SF"]


def test_odd_field_values_never_raise() -> None:
    h = Harness()
    h.r.segment(2.0, seg(b"\x01\x02\x03", SERVER, 5, 25, 1 << 40, -5, 0xFF, b"x"))
    h.r.flush()
    assert h.records[0].server_ip == "010203"  # flags 0xFF: a SYN-ACK sender


def test_ipv6_addresses() -> None:
    h = Harness()
    c6 = bytes.fromhex("20010db8000000000000000000000001")
    s6 = bytes.fromhex("20010db8000000000000000000000002")
    cv = Conv(client=c6, server=s6)
    h.feed(timed(full_session(cv)))
    h.r.flush()
    rec = only_record(h)
    assert (rec.client_ip, rec.server_ip, rec.state) == ("2001:db8::1", "2001:db8::2", "SF")


def test_rst_after_fin_exchange_keeps_sf() -> None:
    h = Harness()
    cv = Conv()
    segs = full_session(cv)
    h.feed(timed([*segs[:-1], cv.c(7, b"", RST)]))
    h.r.flush()
    assert only_record(h).state == "SF"


def test_syn_flood_stays_within_connection_cap() -> None:
    h = Harness(TcpLimits(max_connections=50))
    for i in range(500):
        h.r.segment(1.0 + i * 0.001, Conv(cport=1024 + i).syn())
        assert len(h.r) <= 50
    assert h.stats.evicted_lru == 450
    assert SYN  # the flag constant used by the builders


def test_peer_ack_over_a_hole_delivers_gap_and_data_in_time() -> None:
    # The server acknowledges client bytes the capture never saw: the hole is a capture loss,
    # reported at once so the client's later bytes are not held back until the connection ends.
    h = Harness()
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"MAIL FROM:<a@b>\r\n"))])
    h.feed([(3.0, cv.c(100, b"DATA\r\n"))])  # bytes 17..99 were lost before the tap
    events = h.handlers[0].events
    assert [e[0] for e in events] == ["data"]
    h.feed([(4.0, cv.s(0, b"", ack=106))])  # the server acked everything up to DATA\r\n
    assert events[1:] == [("gap", True, 4.0, 83), ("data", True, 4.0, b"DATA\r\n")]
    h.feed([(5.0, cv.c(106, b"QUIT\r\n"))])  # and the stream goes on in order
    assert events[-1] == ("data", True, 5.0, b"QUIT\r\n")
    h.r.flush()
    assert h.records[0].gap_bytes == 83 and h.records[0].gaps == 1


def test_admit_is_asked_for_new_flows_only_and_refused_segments_still_move_the_clock() -> None:
    h = Harness(TcpLimits(idle_timeout_s=300.0))
    kept, refused = Conv(cport=1111), Conv(cport=2222)
    asked: list[tuple[int, int, int]] = []

    def admit(src: bytes, sport: int, dst: bytes, dport: int, flags: int) -> bool:
        asked.append((sport, dport, flags))
        return 2222 not in (sport, dport)

    h.r.admit = admit
    h.feed([(10.0, kept.syn()), (10.1, kept.synack()), (10.2, kept.c(0, b"HELO x\r\n")),
            (20.0, refused.c(0, b"MAIL FROM:<a@b>\r\n")), (20.1, refused.s(0, b"250 ok\r\n"))])
    # the kept flow is asked once (its SYN); the refused one at each of its segments
    assert asked == [(1111, 25, SYN), (2222, 25, ACK), (25, 2222, ACK)]
    assert len(h.r) == 1 and h.stats.connections == 1
    assert bytes(h.handlers[0].stream[True]) == b"HELO x\r\n"
    h.feed([(311.0, refused.c(40, b"DATA\r\n"))])  # refused, yet its time ends the idle one
    assert [(r.client_port, r.end_reason) for r in h.records] == [(1111, "timeout")]



def test_flow_keys_are_values_and_take_any_port() -> None:
    """Keys of one 4-tuple are equal, with one hash, whatever int objects made them (C
    FlowKeys, see tests/decode/test_flowkey.py); the reverse direction is another key; a port
    or address no header can carry still makes a key, a tuple, equal to no decoded one."""
    from sensor.decode._batch import FlowKey
    from sensor.tcp.reassembler import flow_key, key_fields

    port = int("40001")  # a new int object, equal to the one below
    src, dst = b"\x01" * 4, b"\x02" * 4
    a, b = flow_key(src, port, dst, 25), flow_key(src, 40001, dst, 25)
    assert isinstance(a, FlowKey) and a == b and hash(a) == hash(b)
    assert key_fields(a) == (src, 40001, dst, 25)
    assert flow_key(dst, 25, src, 40001) != a
    assert flow_key(b"x", 70000, b"y", -1) == (b"x", 70000, b"y", -1)
    assert flow_key(b"x" * 17, 1, b"y", 2) == (b"x" * 17, 1, b"y", 2)
    assert flow_key(b"x", 70000, b"y", -1) != FlowKey(b"x", 4464, b"y", 1)
