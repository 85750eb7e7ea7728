"""Every anomaly of the vocabulary is raised by a dialogue that shows it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sensor.smtp import Anomaly, SmtpLimits

from .dialogues import BANNER, EHLO_REPLY, C, Event, S, conn_record, new_parser, run
from .hostile_mail import nested_multipart

HELLO: list[Event] = [(S, BANNER), (C, b"EHLO c.example\r\n"), (S, EHLO_REPLY)]
TXN: list[Event] = [
    *HELLO,
    (C, b"MAIL FROM:<a@c.example>\r\n"), (S, b"250 ok\r\n"),
    (C, b"RCPT TO:<b@s.example>\r\n"), (S, b"250 ok\r\n"),
]  # fmt: skip
NO_PIPELINING = b"250-mx.example.net\r\n250 SIZE 1000\r\n"

CASES: dict[Anomaly, tuple[list[Event], SmtpLimits | None]] = {
    Anomaly.PREGREET: ([(C, b"EHLO c.example\r\n"), (S, BANNER)], None),
    Anomaly.NO_BANNER: ([(C, b"EHLO c.example\r\n"), (S, b"250 hi\r\n")], None),
    Anomaly.BARE_LF: ([(S, BANNER), (C, b"EHLO c.example\n")], None),
    Anomaly.BARE_CR: ([(S, BANNER), (C, b"EHLO c.exa\rmple\r\n")], None),
    Anomaly.OVERLONG_LINE: ([(S, BANNER), (C, b"NOOP " + b"a" * 600 + b"\r\n")], None),
    Anomaly.LINE_TRUNCATED: ([(S, BANNER), (C, b"EHLO " + b"a" * 5000 + b"\r\n")], None),
    Anomaly.UNKNOWN_COMMAND: ([(S, BANNER), (C, b"XYZZY plugh\r\n")], None),
    Anomaly.NON_SMTP_VERB: ([(C, b"GET / HTTP/1.1\r\nHost: mx\r\n\r\n")], None),
    Anomaly.PIPELINING_NOT_ADVERTISED: (
        [(S, BANNER), (C, b"EHLO c.example\r\n"), (S, NO_PIPELINING),
         (C, b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@s.example>\r\n"),
         (S, b"250 ok\r\n250 ok\r\n")], None),
    Anomaly.OUT_OF_SEQUENCE: ([*HELLO, (C, b"DATA\r\n"), (S, b"503 5.5.1 need RCPT\r\n")], None),
    Anomaly.STRIPPED_STARTTLS: (
        [(S, BANNER), (C, b"EHLO c.example\r\n"),
         (S, b"250-mx\r\n250-XXXXXXXA\r\n250 8BITMIME\r\n")],
        None),
    Anomaly.STARTTLS_REFUSED: ([*HELLO, (C, b"STARTTLS\r\n"), (S, b"502 no\r\n")], None),
    Anomaly.STARTTLS_INJECTION: (
        [*HELLO, (C, b"STARTTLS\r\nRSET\r\n"), (S, b"220 go ahead\r\n"),
         (C, b"\x16\x03\x01\x00\x05hello")], None),
    Anomaly.STARTTLS_PLAINTEXT: (
        [*HELLO, (C, b"STARTTLS\r\n"), (S, b"220 go ahead\r\n"), (C, b"EHLO c.example\r\n"),
         (S, EHLO_REPLY)], None),
    Anomaly.STARTTLS_RESPONSE_INJECTION: (
        [*HELLO, (C, b"STARTTLS\r\n"), (S, b"220 go ahead\r\n250 injected\r\n"),
         (C, b"\x16\x03\x01\x00\x05hello")], None),
    Anomaly.AUTH_WITHOUT_TLS: ([*HELLO, (C, b"AUTH PLAIN AHUAcA==\r\n"), (S, b"535 no\r\n")], None),
    Anomaly.COMMAND_AFTER_421: (
        [(S, BANNER), (C, b"EHLO c.example\r\n"), (S, b"421 4.3.2 shutting down\r\n"),
         (C, b"MAIL FROM:<a@c.example>\r\n")], None),
    Anomaly.TOO_MANY_RCPTS: (
        [*TXN, (C, b"RCPT TO:<c@s.example>\r\n")], SmtpLimits(max_rcpts_per_txn=1)),
    Anomaly.TOO_MANY_TXNS: (
        [*TXN, (C, b"MAIL FROM:<a@c.example>\r\n")], SmtpLimits(max_txns_per_session=1)),
    Anomaly.TOO_MANY_COMMANDS: ([*HELLO, (C, b"NOOP\r\nNOOP\r\n")], SmtpLimits(max_commands=2)),
    Anomaly.INVALID_TRANSACTION: ([*HELLO, (C, b"RCPT TO:<b@s.example>\r\n")], None),
    Anomaly.BAD_PATH: ([*HELLO, (C, b"MAIL FROM <a@c.example>\r\n")], None),
    Anomaly.SLOPPY_PATH: ([*HELLO, (C, b"MAIL FROM: <a@c.example>\r\n")], None),
    Anomaly.BDAT_INVALID_SIZE: ([*TXN, (C, b"BDAT -1 LAST\r\n")], None),
    Anomaly.GAP_CLIENT: ([*HELLO, (C, 100), (C, b"QUIT\r\n")], None),
    Anomaly.GAP_SERVER: ([*HELLO, (S, 100), (C, b"QUIT\r\n"), (S, b"221 bye\r\n")], None),
    Anomaly.UNMATCHED_REPLY: ([(S, BANNER), (S, b"250 nothing asked\r\n")], None),
    Anomaly.MALFORMED_REPLY: ([(S, BANNER), (C, b"NOOP\r\n"), (S, b"hello there\r\n")], None),
    Anomaly.PENDING_OVERFLOW: (
        [(S, BANNER), (C, b"NOOP\r\nNOOP\r\nNOOP\r\n")], SmtpLimits(max_pending_cmds=2)),
    Anomaly.MISSING_DATA_TERMINATOR: (
        [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, b"Subject: cut\r\n\r\nbody\r\n")], None),
    Anomaly.HEADER_TOO_LARGE: (
        [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"),
         (C, b"Subject: s\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\nbody\r\n.\r\n"),
         (S, b"250 ok\r\n")], SmtpLimits(max_header_bytes=1024)),
    Anomaly.AUTH_TOO_MANY: (
        [*HELLO, (C, b"AUTH PLAIN AHUAcA==\r\n"), (S, b"535 no\r\n"),
         (C, b"AUTH PLAIN AHUAcQ==\r\n"), (S, b"535 no\r\n")], SmtpLimits(max_auth_attempts=1)),
    Anomaly.TXN_UNANSWERED: (
        [*HELLO, (C, b"".join(b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@s.example>\r\n"
                              b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\n" for _ in range(4)))],
        SmtpLimits(max_unanswered_txns=2)),
    Anomaly.DATA_AFTER_REFUSAL: (
        [*HELLO, (C, b"MAIL FROM:<a@c.example>\r\nRCPT TO:<b@s.example>\r\nDATA\r\n"),
         (C, b"Subject: spam\r\n"),
         (S, b"250 ok\r\n250 ok\r\n554 5.7.1 no thanks\r\n")], None),
    Anomaly.MIME_LIMIT: (
        [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"),
         (C, nested_multipart(30).replace(b"\r\n.", b"\r\n..") + b".\r\n"),
         (S, b"250 ok\r\n")], None),
}  # fmt: skip
# Raised only by a bug of ours, so no dialogue shows it: tests/smtp/test_parser.py and
# test_message.py break the parsing on purpose to see it reported.
UNREACHABLE = {Anomaly.ANALYZER_ERROR}


FROM_RECORD = {Anomaly.RETRANSMISSION_INCONSISTENCY}
"""Anomalies the reassembler reports through the ConnRecord given to close(), not a dialogue."""


def test_every_anomaly_has_a_dialogue() -> None:
    assert set(CASES) | FROM_RECORD == set(Anomaly) - UNREACHABLE


def test_conflicting_retransmissions_in_the_record_become_an_anomaly() -> None:
    out: list = []  # type: ignore[type-arg]
    p = new_parser(out)
    p.data(S, 100.0, BANNER)
    p.close(200.0, replace(conn_record(), conflicting_overlaps=2))
    assert out[0].anomalies == {"retransmission_inconsistency": 2}


@pytest.mark.parametrize("anomaly", list(CASES), ids=[a.value for a in CASES])
def test_anomaly_is_raised(anomaly: Anomaly) -> None:
    events, limits = CASES[anomaly]
    assert run(events, limits).anomalies.get(anomaly.value, 0) >= 1


def test_clean_dialogue_has_no_anomaly() -> None:
    events = [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, b"Subject: hi\r\n\r\nx\r\n.\r\n"),
              (S, b"250 ok\r\n"), (C, b"QUIT\r\n"), (S, b"221 bye\r\n")]  # fmt: skip
    assert run(events).anomalies == {}


def test_overlong_text_lines_in_message_content_are_counted() -> None:
    """RFC 5321 4.5.3.1.6: 1000 octets per text line; two lines over it, one just at it."""
    content = b"Subject: long\r\n\r\n" + b"a" * 998 + b"\r\n" + b"b" * 1500 + b"\r\n"
    events = [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"),
              (C, content[:700]), (C, content[700:] + b"c" * 2000 + b"\r\n.\r\n"),
              (S, b"250 ok\r\n")]  # fmt: skip
    assert run(events).anomalies == {"overlong_line": 2}
    unfinished = [*TXN, (C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, b"d" * 1200)]
    assert run(unfinished).anomalies == {"missing_data_terminator": 1, "overlong_line": 1}
