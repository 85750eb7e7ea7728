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


def test_a_greeting_lost_with_the_syn_ack_is_no_missing_banner() -> None:
    """Without the server's SYN-ACK its stream start is unknown, so no gap can show a greeting
    lost with it (a burst of kernel drops takes the first packets of both directions)."""
    events: list[Event] = [(C, EHLO), (S, b"250 mx.example.org\r\n"), (C, b"QUIT\r\n"),
                           (S, b"221 bye\r\n")]  # fmt: skip
    seen = run(events).anomalies  # handshake seen: the server sent none, the client did not wait
    assert seen == {"no_banner": 1, "pregreet": 1}
    assert run(events, history="SADadFf").anomalies == {}


def test_message_text_read_as_commands_after_loss_is_no_other_protocol() -> None:
    """A gap takes DATA and its 354: the content that follows is read as commands, and its
    "GET" line is no HTTP client. Before any loss the same line is one."""
    text = b"Subject: offer\r\n\r\nGET yours now\r\nUSER guide inside\r\n.\r\n"
    lost = run([*OPENING, (C, MAIL), (S, b"250 ok\r\n"), (C, RCPT), (S, b"250 ok\r\n"),
                (C, len(b"DATA\r\n")), (S, 8), (C, text), (S, b"250 queued\r\n")])  # fmt: skip
    assert set(lost.anomalies) == {"gap_client", "gap_server"}
    clean = run([*OPENING, (C, b"GET yours now\r\n"), (S, b"502 no\r\n")])
    assert clean.anomalies.get("non_smtp_verb") == 1


def test_a_tls_hello_after_loss_is_a_lost_starttls() -> None:
    """The STARTTLS and its 220 fell into a gap: the hello that follows is TLS going on, not
    another protocol's opening; the same hello with no loss is one."""
    lost = run([*OPENING, (C, len(b"STARTTLS\r\n")), (S, 30), (C, HELLO + b"\r\nmore"),
                (S, b"\x16\x03\x03\x00\x02hi")])  # fmt: skip
    assert lost.tls_established and "non_smtp_verb" not in lost.anomalies
    clean = run([*OPENING, (C, HELLO + b"\r\n"), (S, b"500 what\r\n")])
    assert not clean.tls_established and clean.anomalies.get("non_smtp_verb") == 1


def test_after_loss_only_235_says_an_auth_succeeded() -> None:
    """The 535 to an AUTH fell into a gap: QUIT's 221 is matched to the exchange. With no loss a
    2xx ends it as success, as before."""
    auth = b"AUTH LOGIN\r\n"
    lost = run([*OPENING, (C, auth), (S, b"334 VXNlcm5hbWU6\r\n"), (C, b"dXNlcg==\r\n"),
                (S, 14), (C, b"QUIT\r\n"), (S, b"221 bye\r\n")])  # fmt: skip
    assert [a.outcome for a in lost.auth] == ["unknown"]
    clean = run([*OPENING, (C, auth), (S, b"334 VXNlcm5hbWU6\r\n"), (C, b"dXNlcg==\r\n"),
                 (S, b"250 fine\r\n")])  # fmt: skip
    assert [a.outcome for a in clean.auth] == ["success"]
