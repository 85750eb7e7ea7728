"""SmtpParser on fabricated dialogues: commands, replies, transactions, AUTH, STARTTLS, BDAT."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sensor.records import SmtpSession
from sensor.smtp import SmtpLimits

from .dialogues import (
    ATTACHMENT_BYTES,
    AUTH_PLAIN,
    BANNER,
    BASIC,
    BDAT,
    BDAT_BINARY,
    BDAT_HEAD,
    EHLO_REPLY,
    MESSAGE,
    PIPELINED,
    STARTTLS,
    C,
    Event,
    S,
    conn_record,
    new_parser,
    run,
)


def test_basic_session_fields() -> None:
    s = run(BASIC)
    assert (s.uid, s.ts, s.duration_s) == ("CtEst1", 100.0, 3.5)
    assert s.banner == "mx.example.net ESMTP Postfix (Debian/GNU)" and s.banner_code == 220
    assert (s.helo, s.helo_verb, s.helo_kind) == ("client.example.org", "EHLO", "fqdn")
    assert "PIPELINING" in s.extensions and "AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2" in s.extensions
    assert s.tls_offered and not s.tls_attempted
    assert s.commands == ("EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT")
    assert s.reply_codes == {220: 1, 221: 1, 250: 4, 354: 1, 550: 1}
    assert s.anomalies == {}
    assert s.bytes_from_client == sum(len(p) for d, p in BASIC if d is C)
    assert s.bytes_from_server == sum(len(p) for d, p in BASIC if d is S)


def test_basic_transaction() -> None:
    [t] = run(BASIC).transactions
    assert (t.trans_depth, t.mail_from, t.mail_code) == (1, "alice@example.org", 250)
    assert t.mail_params == {"SIZE": "2048", "BODY": "8BITMIME"}
    assert [(r.addr, r.code, r.enhanced) for r in t.rcpt_to] == [
        ("bob@example.net", 250, "2.1.5"),
        ("nobody@example.net", 550, "5.1.1"),
    ]
    assert t.rcpt_to[1].params == {"NOTIFY": "NEVER"}
    assert t.data_mode == "data" and t.accepted and t.complete and not t.truncated
    assert t.last_reply == "250 2.0.0 Ok: queued as 4Xk9Q2" and t.last_code == 250
    assert t.headers["subject"] == "Quarterly résumé"
    assert t.received_count == 2 and t.received_ips == ("203.0.113.7", "10.1.2.3")
    assert [a.filename for a in t.attachments] == ["report.pdf"]
    assert t.attachments[0].sha256 == hashlib.sha256(ATTACHMENT_BYTES).hexdigest()
    unstuffed = MESSAGE.replace(b"\r\n..", b"\r\n.")
    assert t.size == len(unstuffed)


def test_pipelined_transactions_and_depth() -> None:
    s = run(PIPELINED)
    assert s.anomalies == {}
    assert [(t.trans_depth, t.headers["subject"], t.last_reply) for t in s.transactions] == [
        (1, "one", "250 2.0.0 Ok: queued as A1"),
        (2, "two", "250 2.0.0 Ok: queued as A2"),
    ]
    assert [len(t.rcpt_to) for t in s.transactions] == [2, 1]


def test_client_data_delivered_before_server_replies() -> None:
    client = b"".join(p for d, p in PIPELINED if d is C)
    server = b"".join(p for d, p in PIPELINED if d is S)
    out: list[SmtpSession] = []
    p = new_parser(out)
    p.data(False, 100.0, BANNER)
    p.data(True, 101.0, client)  # the reassembler may hand over one side first
    p.data(False, 102.0, server[len(BANNER) :])
    p.close(103.0, conn_record())
    got = [(t.headers["subject"], t.last_reply, t.accepted) for t in out[0].transactions]
    assert got == [
        ("one", "250 2.0.0 Ok: queued as A1", True),
        ("two", "250 2.0.0 Ok: queued as A2", True),
    ]


def test_bdat_binary_chunks() -> None:
    s = run(BDAT)
    [t] = s.transactions
    assert s.commands == ("EHLO", "MAIL", "RCPT", "BDAT", "BDAT", "BDAT", "QUIT")
    assert t.data_mode == "bdat" and t.accepted
    assert t.size == len(BDAT_HEAD) + len(BDAT_BINARY)
    assert t.headers["subject"] == "binary"
    [att] = t.attachments
    assert att.content_type == "image/png" and att.size == len(BDAT_BINARY)
    assert t.last_reply == "250 2.0.0 Ok: 312 bytes queued as B7"
    assert s.anomalies == {}


def test_auth_attempts() -> None:
    s = run(AUTH_PLAIN)
    got = [(a.mechanism, a.outcome, a.code, a.user) for a in s.auth]
    assert got == [
        ("PLAIN", "failure", 535, "mallory@example.org"),
        ("PLAIN", "success", 235, "alice@example.org"),
        ("LOGIN", "temp_failure", 454, "bob@example.org"),
        ("CRAM-MD5", "failure", 535, "carol"),
        ("XOAUTH2", "success", 235, "dave@example.org"),
        ("LOGIN", "aborted", 501, None),
    ]
    assert s.commands.count("AUTH") == 6 and s.commands[-1] == "QUIT"
    assert s.anomalies == {"auth_without_tls": 6}


def test_starttls_accepted_stops_parsing() -> None:
    s = run(STARTTLS)
    assert s.tls_attempted and s.tls_established
    assert s.tls_reply == "220 2.0.0 Ready to start TLS"
    tls_sizes = [len(p) for p in (STARTTLS[5][1], STARTTLS[6][1], STARTTLS[7][1])]
    assert s.tls_bytes == sum(tls_sizes)
    assert s.commands == ("EHLO", "STARTTLS")
    assert s.anomalies == {}


def test_starttls_client_hello_before_reply_is_not_parsed() -> None:
    events: list[Event] = [*STARTTLS[:4], STARTTLS[5], STARTTLS[4]]
    s = run(events)
    assert s.tls_established and s.commands == ("EHLO", "STARTTLS")
    assert s.tls_bytes == len(STARTTLS[5][1])


def test_starttls_refused_parsing_goes_on() -> None:
    s = run([
        (S, BANNER), (C, b"EHLO c.example\r\n"), (S, EHLO_REPLY), (C, b"STARTTLS\r\n"),
        (C, b"MAIL FROM:<a@c.example>\r\n"), (S, b"454 4.7.0 TLS not available\r\n"),
        (S, b"250 2.1.0 Ok\r\n"), (C, b"QUIT\r\n"), (S, b"221 Bye\r\n"),
    ])  # fmt: skip
    assert not s.tls_established and s.tls_reply == "454 4.7.0 TLS not available"
    # MAIL went out before STARTTLS was answered: injection, whatever the answer (RFC 2920 3.1)
    assert s.anomalies == {"starttls_refused": 1, "starttls_injection": 1}
    assert s.commands == ("EHLO", "STARTTLS", "MAIL", "QUIT")
    assert s.transactions[0].mail_code == 250


def test_zeek_rows_of_invalid_transactions() -> None:
    """The dialogue of Zeek's smtp-mail-transactions-invalid test, one row per MAIL/stray RCPT."""
    s = run([
        (C, b"EHLO Bob-PC\r\n"),
        (S, b"220 tinkyx390 ESMTP Exim 4.94.2\r\n250-tinkyx390 Hello\r\n250 PIPELINING\r\n"),
        (C, b"MAIL FROM:<bob@example.org>\r\n"), (S, b"250 OK\r\n"),
        (C, b"RCPT TO:<alice@example.org>\r\n"), (S, b"250 Accepted\r\n"),
        (C, b"DATA\r\n"), (S, b"354 Enter message\r\n"),
        (C, b"Hello, Alice (1)\r\n.\r\n"), (S, b"250 OK id=1pgobK-001mwq-ED\r\n"),
        (C, b"RCPT TO:<alice@example.org>\r\n"), (S, b"503 sender not yet given\r\n"),
        (C, b"DATA\r\n"), (S, b"503-All RCPT commands were rejected\r\n503 valid RCPT first\r\n"),
        (C, b"Hello, Alice (2)\r\n"), (S, b"500 unrecognized command\r\n"),
        (C, b".\r\n"), (S, b"500 unrecognized command\r\n"),
        (C, b"MAIL FROM:<bob@example.org>\r\n"), (S, b"250 OK\r\n"),
        (C, b"DATA\r\n"), (S, b"503 valid RCPT command must precede DATA\r\n"),
        (C, b"MAIL FROM:<bob@example.org>\r\n"), (S, b"503 sender already given\r\n"),
        (C, b"RCPT TO:<alice@example.org>\r\n"), (S, b"250 Accepted\r\n"),
        (C, b"DATA\r\n"), (S, b"354 Enter message\r\n"),
        (C, b"Hello again\r\n.\r\n"), (S, b"250 OK id=1pgobM-001mwq-Vc\r\n"),
        (C, b"QUIT\r\n"), (S, b"221 closing connection\r\n"),
    ])  # fmt: skip
    rows = [
        (t.trans_depth, t.mail_from, [r.addr for r in t.rcpt_to], t.last_reply)
        for t in s.transactions
    ]
    assert rows == [
        (1, "bob@example.org", ["alice@example.org"], "250 OK id=1pgobK-001mwq-ED"),
        (2, None, ["alice@example.org"], "500 unrecognized command"),
        (2, "bob@example.org", [], "503 valid RCPT command must precede DATA"),
        (2, "bob@example.org", ["alice@example.org"], "250 OK id=1pgobM-001mwq-Vc"),
    ]
    assert s.anomalies["invalid_transaction"] == 1
    assert s.anomalies["pregreet"] == 1
    assert s.anomalies["unknown_command"] == 2
    assert s.banner == "tinkyx390 ESMTP Exim 4.94.2"


def test_open_transactions_are_flushed_at_close() -> None:
    s = run([
        (S, BANNER), (C, b"HELO [192.0.2.10]\r\n"), (S, b"250 mx\r\n"),
        (C, b"MAIL FROM:<a@x.example>\r\n"), (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<b@y.example>\r\n"), (S, b"554 5.7.1 Relay access denied\r\n"),
        (C, b"QUIT\r\n"), (S, b"221 bye\r\n"),
    ])  # fmt: skip
    [t] = s.transactions
    assert s.helo_kind == "ip_literal"
    assert t.data_mode is None and not t.accepted and t.complete
    assert t.rcpt_to[0].code == 554 and t.last_reply == "221 bye"


def test_limits_rcpts_and_transactions() -> None:
    lim = SmtpLimits(max_rcpts_per_txn=2, max_txns_per_session=1)
    rcpts = b"".join(b"RCPT TO:<u%d@y.example>\r\n" % i for i in range(5))
    s = run([
        (S, BANNER), (C, b"EHLO c.example\r\n"), (S, EHLO_REPLY),
        (C, b"MAIL FROM:<a@x.example>\r\n" + rcpts + b"RSET\r\nMAIL FROM:<b@x.example>\r\n"),
    ], lim)  # fmt: skip
    [t] = s.transactions
    assert len(t.rcpt_to) == 2 and t.rcpts_dropped == 3
    assert s.anomalies["too_many_rcpts"] == 3 and s.anomalies["too_many_txns"] == 1


def test_multiline_reply_in_one_payload_equals_line_by_line() -> None:
    ehlo_reply = b"250-mx Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"
    mixed = b"250-mx Hello\r\n251-odd\r\n250 8BITMIME\r\n"  # codes differ: malformed
    for reply in (ehlo_reply, mixed):
        whole = [(C, b"EHLO c.example\r\n"), (S, reply), (C, b"QUIT\r\n"), (S, b"221 bye\r\n")]
        lines = [(S, line + b"\n") for line in reply.split(b"\n")[:-1]]
        split = [(C, b"EHLO c.example\r\n"), *lines, (C, b"QUIT\r\n"), (S, b"221 bye\r\n")]
        a, b = run([(S, BANNER), *whole]), run([(S, BANNER), *split])
        assert a == b
    assert a.anomalies == {"malformed_reply": 1}
    assert run([(S, BANNER), (C, b"EHLO c\r\n"), (S, ehlo_reply)]).extensions == (
        "PIPELINING", "SIZE 1000", "STARTTLS",
    )  # fmt: skip


ROOT = Path(__file__).resolve().parent.parent.parent
BOUNDARY_CHECK = """
import sys
from sensor.smtp import client
from sensor.smtp.parser import SmtpParser
from smtp.dialogues import conn_record

def broken(self, line, ts):
    raise RuntimeError("a bug in the command parser")

client.ClientSide.client_line = broken
out = []
p = SmtpParser("Cbug", 1.0, "192.0.2.10", 40000, "198.51.100.25", 25, out.append)
p.data(False, 1.0, b"220 mx.example.net ESMTP\\r\\n")
p.data(True, 1.1, b"EHLO c.example\\r\\n")
p.data(True, 1.2, b"MAIL FROM:<a@b>\\r\\n")
p.gap(True, 1.3, 10)
p.close(2.0, conn_record())
[s] = out
print(s.banner, {str(k): v for k, v in s.anomalies.items()})
"""


def test_an_exception_inside_one_session_is_counted_and_the_session_kept(tmp_path: Path) -> None:
    """The session boundary (data, gap, close) holds even for a bug of ours, made here by
    breaking the command parser. Compiled code calls it directly, so the package's sources are
    run interpreted, in a process of their own, where the method can be replaced."""
    pure = tmp_path / "pure"
    shutil.copytree(ROOT / "sensor", pure / "sensor",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", BOUNDARY_CHECK], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,  # not the repository: its compiled package would come first
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(pure), str(ROOT / "tests")])},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "mx.example.net ESMTP {'analyzer_error': 1}"
    assert "parsing stopped by RuntimeError" in r.stderr
