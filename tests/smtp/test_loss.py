"""Capture loss inside a dialogue: the parser resyncs, and the hole fakes no protocol anomaly."""

from __future__ import annotations

from sensor.smtp.core import LOSS_ARTEFACTS

from .dialogues import C, Event, S, run

BANNER = b"220 mx.example.org ESMTP\r\n"
EHLO = b"EHLO client.example.org\r\n"
EHLO_REPLY = b"250-mx.example.org\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
MAIL = b"MAIL FROM:<a@client.example.org>\r\n"
RCPT = b"RCPT TO:<b@example.org>\r\n"
BODY = b"Subject: hi\r\n\r\nGET this: a body line that looks like a command\r\nQUIT now\r\n.\r\n"
OPENING: list[Event] = [(S, BANNER), (C, EHLO), (S, EHLO_REPLY)]
HELLO = b"\x16\x03\x01\x00\x05hello"


def test_mail_lost_in_a_gap_is_no_sequence_violation() -> None:
    s = run([*OPENING, (C, len(MAIL)), (S, b"250 ok\r\n"), (C, RCPT), (S, b"250 ok\r\n"),
             (C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, BODY), (S, b"250 queued\r\n"),
             (C, b"QUIT\r\n"), (S, b"221 bye\r\n")])  # fmt: skip
    assert s.anomalies == {"gap_client": 1}
    [t] = s.transactions
    assert [r.addr for r in t.rcpt_to] == ["b@example.org"]
    assert t.data_mode == "data"


def test_data_after_a_gap_starts_content_not_commands() -> None:
    s = run([*OPENING, (C, len(MAIL) + len(RCPT)), (S, b"250 ok\r\n250 ok\r\n"),
             (C, b"DATA\r\n"), (S, b"354 go\r\n"), (C, BODY), (S, b"250 queued\r\n"),
             (C, b"QUIT\r\n"), (S, b"221 bye\r\n")])  # fmt: skip
    assert s.commands == ("EHLO", "DATA", "QUIT")  # the body's "GET" and "QUIT now" are content
    assert s.anomalies == {"gap_client": 1}


def test_starttls_reply_lost_then_a_hello_is_tls() -> None:
    s = run([*OPENING, (C, b"STARTTLS\r\n"), (S, 30), (C, HELLO), (S, b"\x16\x03\x03\x00\x02hi")])
    assert s.tls_established
    assert s.anomalies == {"gap_server": 1}


def test_starttls_reply_and_hello_lost_then_tls_records_is_tls() -> None:
    record = b"\x17\x03\x03\x00\xc8" + bytes(200)
    s = run([*OPENING, (C, b"STARTTLS\r\n"), (C, 300), (S, 30), (S, record), (C, record)])
    assert s.tls_established and set(s.anomalies) == {"gap_client", "gap_server"}


def test_starttls_reply_lost_then_plaintext_is_not_tls() -> None:
    s = run([*OPENING, (C, b"STARTTLS\r\n"), (S, 30), (C, b"QUIT\r\n"), (S, b"221 bye\r\n")])
    assert not s.tls_established  # 6 bytes are no ClientHello


def test_a_session_with_a_gap_reports_no_anomaly_loss_can_fake() -> None:
    # a bare LF and a command sent before the banner, then a gap: neither is reported
    s = run([(C, b"EHLO x\n"), *OPENING, (C, b"NOOP\r\n"), (C, 40), (S, b"250 ok\r\n"),
             (S, b"250 ok\r\n")])  # fmt: skip
    assert set(s.anomalies) == {"gap_client"}
    without_gap = run([(C, b"EHLO x\n"), *OPENING, (C, b"NOOP\r\n"), (S, b"250 ok\r\n")])
    assert {"bare_lf", "pregreet"} <= set(without_gap.anomalies)


def test_loss_artefacts_are_not_abuse_evidence_loss_cannot_fake() -> None:
    names = {str(a) for a in LOSS_ARTEFACTS}
    assert "non_smtp_verb" not in names and "stripped_starttls" not in names
    assert "gap_client" not in names and "gap_server" not in names
