"""Postscreen's interrupted greeting: a ``220-`` teaser a pregreeting client talks into is the
banner, the pregreet stays, and the replies after it are the replies to the client's commands."""

from __future__ import annotations

import pytest

from sensor.smtp import session_to_dict

from .dialogues import C, S, run, run_bytewise, run_split

TEASER = b"220-mx.example.org ESMTP\r\n"  # postscreen_greet_banner, sent as "220-%s\r\n"
# postscreen's dummy engine answers the pregreeted EHLO and never sends the rest of the greeting
# (postscreen_smtpd.c: "Send no SMTP banner to pregreeting clients").
EHLO_REPLY = (
    b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 DSN\r\n"
)
ENFORCED: list[tuple[bool, bytes]] = [
    (S, TEASER),
    (C, b"EHLO bot.example\r\n"),  # into the pause: a pregreet
    (S, EHLO_REPLY),
    (C, b"MAIL FROM:<spam@bot.example>\r\n"), (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<victim@example.org>\r\n"), (S, b"550 5.5.1 Protocol error\r\n"),
    (C, b"QUIT\r\n"), (S, b"221 2.0.0 Bye\r\n"),
]  # fmt: skip


def test_teaser_interrupted_by_a_pregreet_is_the_banner() -> None:
    s = run(ENFORCED)
    assert s.banner == "mx.example.org ESMTP" and s.banner_code == 220
    assert s.reply_codes == {220: 1, 221: 1, 250: 2, 550: 1}
    assert s.anomalies == {"pregreet": 1}
    assert s.extensions == ("PIPELINING", "SIZE 10240000", "VRFY", "ETRN",
                            "ENHANCEDSTATUSCODES", "8BITMIME", "DSN")  # fmt: skip
    assert s.helo == "bot.example" and s.transactions[0].rcpt_to[0].code == 550


def test_same_record_for_every_split() -> None:
    want = session_to_dict(run(ENFORCED))
    for cut in range(len(EHLO_REPLY) + 1):
        assert session_to_dict(run_split(ENFORCED, cut)) == want, cut
    assert session_to_dict(run_bytewise(ENFORCED)) == want


def test_teaser_and_reply_in_one_segment() -> None:
    """The client's bytes were delivered first, the server's lines together."""
    s = run([(C, b"EHLO bot.example\r\n"), (S, TEASER + EHLO_REPLY)])
    assert s.banner == "mx.example.org ESMTP" and s.anomalies == {"pregreet": 1}
    assert "MX.EXAMPLE.ORG" not in s.extensions and "PIPELINING" in s.extensions


def test_drop_action_521_after_the_teaser() -> None:
    s = run([(S, TEASER), (C, b"EHLO bot.example\r\n"), (S, b"521 5.5.1 Protocol error\r\n")])
    assert s.banner == "mx.example.org ESMTP" and s.banner_code == 220
    assert s.reply_codes == {220: 1, 521: 1} and s.anomalies == {"pregreet": 1}


def test_greeting_finished_after_the_pregreet() -> None:
    """Postscreen's ignore action hands over to smtpd, whose greeting completes the teaser."""
    s = run([(S, TEASER), (C, b"EHLO bot.example\r\n"),
             (S, b"220 mx.example.org ESMTP Postfix\r\n"), (S, EHLO_REPLY)])  # fmt: skip
    assert s.banner == "mx.example.org ESMTP" and s.reply_codes == {220: 1, 250: 1}
    assert s.anomalies == {"pregreet": 1} and "PIPELINING" in s.extensions


def test_client_that_hangs_up_during_the_pause() -> None:
    s = run([(S, TEASER), (C, b"EHLO bot.example\r\n")])
    assert s.banner == "mx.example.org ESMTP" and s.anomalies == {"pregreet": 1}


@pytest.mark.parametrize("code", [421, 554])
def test_other_greeting_codes_cut_short(code: int) -> None:
    s = run([(S, b"%d-mx.example.org busy\r\n" % code), (C, b"EHLO bot.example\r\n"),
             (S, b"250 ok\r\n")])  # fmt: skip
    assert s.banner_code == code and s.banner == "mx.example.org busy"


def test_patient_client_sees_no_pregreet() -> None:
    s = run([(S, TEASER), (S, b"220 mx.example.org ESMTP Postfix\r\n"),
             (C, b"EHLO good.example\r\n"), (S, EHLO_REPLY)])  # fmt: skip
    assert s.banner == "mx.example.org ESMTP" and s.anomalies == {}
