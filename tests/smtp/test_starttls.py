"""After the 220 to STARTTLS the client's next bytes decide: TLS stops parsing, plaintext is parsed
on; bytes pipelined behind STARTTLS (either side) are injection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp import session_to_dict

from .dialogues import BANNER, EHLO_REPLY, STARTTLS, C, Event, S, run, run_bytewise, run_split

HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)  # a ClientHello record
SERVER_HELLO = b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03" + bytes(30)
READY = b"220 2.0.0 Ready to start TLS\r\n"
OPENING: list[tuple[bool, bytes]] = [
    (S, BANNER), (C, b"EHLO client.example.org\r\n"), (S, EHLO_REPLY), (C, b"STARTTLS\r\n"),
    (S, READY),
]  # fmt: skip
# What a TLS-terminating proxy exports: the dialogue after the 220 in clear.
DECRYPTED: list[tuple[bool, bytes]] = [
    *OPENING,
    (C, b"EHLO client.example.org\r\n"), (S, EHLO_REPLY),
    (C, b"MAIL FROM:<alice@example.org>\r\n"), (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<bob@example.net>\r\n"), (S, b"250 2.1.5 Ok\r\n"),
    (C, b"DATA\r\n"), (S, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (C, b"Subject: over TLS\r\n\r\nhello\r\n.\r\n"), (S, b"250 2.0.0 Ok: queued\r\n"),
    (C, b"QUIT\r\n"), (S, b"221 2.0.0 Bye\r\n"),
]  # fmt: skip


def test_plaintext_after_the_220_is_parsed_on_and_flagged() -> None:
    s = run(DECRYPTED)
    assert s.tls_established and s.tls_bytes == 0
    assert s.anomalies == {"starttls_plaintext": 1}
    assert s.commands == ("EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT")
    [t] = s.transactions
    assert t.mail_from == "alice@example.org" and [r.addr for r in t.rcpt_to] == [
        "bob@example.net"]
    assert t.accepted and t.headers["subject"] == "over TLS"
    assert not t.tls  # opened after STARTTLS, not while it was accepted (Zeek's tls)


@pytest.mark.parametrize("events", [DECRYPTED, STARTTLS], ids=["plaintext", "tls"])
def test_any_split_gives_the_same_record(events: list[tuple[bool, bytes]]) -> None:
    want = session_to_dict(run(events))
    for cut in range(0, 60):
        assert session_to_dict(run_split(events, cut)) == want, cut
    assert session_to_dict(run_bytewise(events)) == want


def test_tls_record_after_the_220_stops_parsing() -> None:
    s = run([*OPENING, (C, HELLO), (S, SERVER_HELLO), (C, b"\x17\x03\x03\x00\x04abcd")])
    assert s.tls_established and s.tls_bytes == len(HELLO) + len(SERVER_HELLO) + 9
    assert s.commands == ("EHLO", "STARTTLS") and s.anomalies == {}


def test_commands_pipelined_behind_starttls_are_injection() -> None:
    """CVE-2011-0411: the injected commands ride in the STARTTLS segment; TLS follows."""
    s = run([
        (S, BANNER), (C, b"EHLO client.example.org\r\n"), (S, EHLO_REPLY),
        (C, b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n"), (S, READY),
        (C, HELLO), (S, SERVER_HELLO),
    ])  # fmt: skip
    assert s.anomalies == {"starttls_injection": 1}
    assert s.tls_established and s.tls_bytes == len(HELLO) + len(SERVER_HELLO)
    assert s.commands == ("EHLO", "STARTTLS") and s.transactions == ()


def test_injection_in_a_later_segment_before_the_reply() -> None:
    s = run([*OPENING[:4], (C, b"NOOP\r\n"), (S, READY), (C, HELLO)])
    assert s.anomalies == {"starttls_injection": 1} and s.tls_bytes == len(HELLO)


def test_injected_commands_are_parsed_when_plaintext_follows() -> None:
    s = run([
        *OPENING[:3], (C, b"STARTTLS\r\nNOOP\r\n"), (S, READY), (C, b"QUIT\r\n"),
        (S, b"250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"),
    ])  # fmt: skip
    assert s.anomalies == {"starttls_injection": 1, "starttls_plaintext": 1}
    assert s.commands == ("EHLO", "STARTTLS", "NOOP", "QUIT")
    assert s.reply_codes == {220: 2, 221: 1, 250: 2}


def test_hello_in_the_starttls_segment_is_no_injection() -> None:
    s = run([*OPENING[:3], (C, b"STARTTLS\r\n" + HELLO), (S, READY), (S, SERVER_HELLO)])
    assert s.anomalies == {} and s.tls_bytes == len(HELLO) + len(SERVER_HELLO)


def test_server_bytes_after_its_220_before_the_hello_are_response_injection() -> None:
    s = run([*OPENING[:4], (S, READY + b"250 2.0.0 injected\r\n"), (C, HELLO), (S, SERVER_HELLO)])
    assert s.anomalies == {"starttls_response_injection": 1}
    assert s.reply_codes == {220: 2, 250: 1}  # the injected line is not parsed
    assert s.tls_bytes == len(HELLO) + len(SERVER_HELLO)


def test_response_injection_in_a_separate_segment() -> None:
    s = run([*OPENING, (S, b"250 2.0.0 injected\r\n"), (C, HELLO)])
    assert s.anomalies == {"starttls_response_injection": 1}


def test_client_gap_right_after_the_220_keeps_tls() -> None:
    s = run([*OPENING, (C, 300), (C, b"\x17\x03\x03\x00\x04abcd"), (S, SERVER_HELLO)])
    assert s.commands == ("EHLO", "STARTTLS")
    assert s.anomalies == {"gap_client": 1}


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.booleans())
def test_whatever_follows_the_220_never_raises(after: bytes, server_first: bool) -> None:
    events: list[Event] = [*OPENING, (C, after), (S, b"250 x\r\n" + after)]
    if server_first:
        events[-2], events[-1] = events[-1], events[-2]
    s = run(events)
    tls = bool(after[0] & 0x80) or (20 <= after[0] <= 23 and (len(after) < 2 or after[1] == 3))
    assert ("starttls_plaintext" in s.anomalies) == (not tls)
    undecided = tls and len(after) < 2  # one byte cannot tell: the server spoke before the hello
    assert ("starttls_response_injection" in s.anomalies) == (server_first or undecided)


def test_auth_in_plaintext_after_the_220_is_marked_not_counted_as_clear() -> None:
    s = run([*OPENING, (C, b"EHLO client.example.org\r\n"), (S, EHLO_REPLY),
             (C, b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), (S, b"235 2.7.0 Ok\r\n")])  # fmt: skip
    [a] = s.auth
    assert a.outcome == "success" and a.user == "alice" and a.after_starttls
    assert s.anomalies == {"starttls_plaintext": 1}
    assert session_to_dict(s)["auth"][0]["after_starttls"] is True
