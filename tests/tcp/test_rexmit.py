"""Retransmissions over delivered bytes: compared with the first copy, which wins (evasion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_helpers import ACK, FIN, PSH, SYN, Conv, Harness

from sensor.capture.writer import PcapWriter
from sensor.simulate.frames import make_direction
from sensor.tcp.reassembler import CONN_BYTES, TcpLimits
from sensor.tcp.stream import KEPT_COST

FIRST_RCPT = b"RCPT TO:<alice@example.org>\r\n"
EVIL_RCPT = b"RCPT TO:<eve99@example.org>\r\n"  # same length: a clean byte-for-byte overwrite


def smtp_capture(path: Path, rexmit: bytes | None) -> None:
    """One SMTP session; `rexmit`, if given, is sent again over the delivered RCPT command."""
    c = make_direction("10.0.0.1", "10.0.0.2", 40000, 25, 64, 0, 1, 0)
    s = make_direction("10.0.0.2", "10.0.0.1", 25, 40000, 64, 0, 1, 0)
    cseq, sseq = 1000, 5000
    frames: list[bytes] = [
        c.frame(cseq, 0, SYN, 64240, b"", b"", 0),
        s.frame(sseq, cseq + 1, SYN | ACK, 65160, b"", b"", 0),
    ]
    cseq += 1
    sseq += 1
    frames.append(c.frame(cseq, sseq, ACK, 502, b"", b"", 0))
    dialogue = [
        (False, b"220 mx.example.org ESMTP\r\n"),
        (True, b"EHLO client.example.com\r\n"),
        (False, b"250 mx.example.org\r\n"),
        (True, b"MAIL FROM:<bob@example.com>\r\n"),
        (False, b"250 2.1.0 Ok\r\n"),
        (True, FIRST_RCPT),
        (False, b"250 2.1.5 Ok\r\n"),
        (True, b"QUIT\r\n"),
        (False, b"221 2.0.0 Bye\r\n"),
    ]
    for to_server, line in dialogue:
        if to_server:
            frames.append(c.frame(cseq, sseq, ACK | PSH, 502, b"", line, 0))
            if line == FIRST_RCPT and rexmit is not None:
                frames.append(c.frame(cseq, sseq, ACK | PSH, 502, b"", rexmit, 0))
            cseq += len(line)
        else:
            frames.append(s.frame(sseq, cseq, ACK | PSH, 509, b"", line, 0))
            sseq += len(line)
    frames.append(c.frame(cseq, sseq, ACK | FIN, 502, b"", b"", 0))
    frames.append(s.frame(sseq, cseq + 1, ACK | FIN, 509, b"", b"", 0))
    frames.append(c.frame(cseq + 1, sseq + 1, ACK, 502, b"", b"", 0))
    with PcapWriter(str(path)) as w:
        for i, f in enumerate(frames):
            w.write(1_700_000_000.0 + i * 0.01, f)


def analyze(tmp_path: Path, rexmit: bytes | None) -> tuple[dict, dict]:  # type: ignore[type-arg]
    cap = tmp_path / "rexmit.pcap"
    smtp_capture(cap, rexmit)
    sess, conns = tmp_path / "s.jsonl", tmp_path / "c.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", str(cap), "--sessions", str(sess),
         "--conns", str(conns), "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (session,) = [json.loads(line) for line in sess.read_text().splitlines()]
    (conn,) = [json.loads(line) for line in conns.read_text().splitlines()]
    return session, conn


def test_conflicting_rcpt_retransmission_keeps_first_and_is_flagged(tmp_path: Path) -> None:
    session, conn = analyze(tmp_path, EVIL_RCPT)
    (txn,) = session["transactions"]
    assert [r["addr"] for r in txn["rcpt_to"]] == ["alice@example.org"]
    assert session["anomalies"].get("retransmission_inconsistency") == 1
    assert conn["conflicting_overlaps"] == 1
    assert conn["retrans_segments"] == 1


def test_identical_retransmission_is_not_a_conflict(tmp_path: Path) -> None:
    session, conn = analyze(tmp_path, FIRST_RCPT)
    (txn,) = session["transactions"]
    assert [r["addr"] for r in txn["rcpt_to"]] == ["alice@example.org"]
    assert "retransmission_inconsistency" not in session["anomalies"]
    assert conn["conflicting_overlaps"] == 0
    assert conn["retrans_segments"] == 1


def test_partial_overlap_with_delivered_bytes_compares_only_the_overlap() -> None:
    h = Harness()
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"ABCDEF")), (2.1, cv.c(3, b"DEFGHI")), (2.2, cv.c(4, b"xF"))])
    h.r.flush()
    (rec,) = h.records
    assert bytes(h.handlers[0].stream[True]) == b"ABCDEFGHI"
    assert rec.conflicting_overlaps == 1  # only "xF" over "EF"
    assert h.stats.conflicting_overlaps == 1
    assert h.r.kept_bytes() == 0  # released with the connection


def test_segments_older_than_the_kept_ones_are_not_compared() -> None:
    h = Harness(TcpLimits(rexmit_segments=2))
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"0123456789")), (2.1, cv.c(10, b"abcd"))])
    assert h.r.kept_bytes() == 14
    h.feed([(2.2, cv.c(14, b"efgh"))])  # a third: the oldest goes
    assert h.r.kept_bytes() == 8
    h.feed([(2.3, cv.c(0, b"XX")), (2.4, cv.c(12, b"cdeX"))])
    h.r.flush()
    (rec,) = h.records
    assert rec.conflicting_overlaps == 1  # "XX" is older than the kept segments, "eX" is not
    assert rec.retrans_segments == 2


def test_kept_segments_are_charged_to_the_memcap_and_released() -> None:
    h = Harness(TcpLimits(rexmit_segments=3))
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"abc"))])
    base = h.r.memory() - (3 + KEPT_COST)  # the connection and its handler
    h.feed([(2.0 + i * 0.01, cv.c(3 + i * 100, bytes(100))) for i in range(5)])
    assert h.r.memory() == base + 3 * (100 + KEPT_COST)  # the last three only
    h.feed([(3.0, cv.c(1000, b"x")), (3.1, cv.s(0, b"", ack=1000))])  # a gap, then "x"
    assert h.r.memory() == base + 1 + KEPT_COST  # the gap dropped the others
    h.r.flush()
    assert h.r.memory() == 0


def test_a_gap_forgets_the_kept_bytes() -> None:
    h = Harness()
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"abc")), (2.1, cv.c(10, b"xyz")), (2.2, cv.s(0, b"", ack=13))])
    h.feed([(2.3, cv.c(10, b"XYz")), (2.4, cv.c(0, b"ABC"))])  # "XYz" is compared, "ABC" is not
    h.r.flush()
    (rec,) = h.records
    assert rec.gaps == 1
    assert rec.conflicting_overlaps == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 400)), max_size=30),
    st.sampled_from([1, 2, 5, 100]),
)
def test_identical_duplicates_never_count_conflicts(
    pieces: list[bytes], dups: list[tuple[int, int]], kept: int
) -> None:
    data = b"".join(pieces)
    cv = Conv(cisn=0xFFFFFF00)
    h = Harness(TcpLimits(rexmit_segments=kept))
    h.feed([(1.0, s) for s in cv.handshake()])
    off = 0
    ts = 2.0
    for p in pieces:
        h.r.segment(ts, cv.c(off, p))
        off += len(p)
        ts += 0.01
        for start, n in dups:  # copies of any part of what was sent so far
            if start < off:
                h.r.segment(ts, cv.c(start, data[start : min(start + n, off)]))
    h.r.flush()
    (rec,) = h.records
    assert bytes(h.handlers[0].stream[True]) == data
    assert rec.conflicting_overlaps == 0
    assert h.stats.conflicting_overlaps == 0


def test_zero_kept_segments_turn_the_comparison_of_delivered_bytes_off() -> None:
    h = Harness(TcpLimits(rexmit_segments=0))
    cv = Conv()
    h.feed([(1.0, s) for s in cv.handshake()])
    h.feed([(2.0, cv.c(0, b"abcd")), (2.1, cv.c(0, b"XXXX"))])  # over delivered: not compared
    h.feed([(2.2, cv.c(8, b"ijkl")), (2.3, cv.c(8, b"iXkl"))])  # over buffered: still compared
    assert h.r.memory() == CONN_BYTES + 4  # the buffered "ijkl", nothing kept
    h.r.flush()
    assert h.records[0].conflicting_overlaps == 1
