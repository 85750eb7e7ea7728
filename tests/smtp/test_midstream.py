"""A connection picked up mid-stream, or after a gap, resyncs without counting violations."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sensor.records import SmtpSession
from sensor.smtp import session_to_dict
from sensor.smtp.commands import is_command_line
from sensor.smtp.replies import parse_reply_line

from .dialogues import (
    AUTH_PLAIN,
    BANNER,
    BASIC,
    BDAT,
    EHLO_REPLY,
    PIPELINED,
    C,
    Event,
    S,
    run,
)
from .test_splits import feed_checking_bounds

# The end of a message whose start (and the commands before it) the capture missed: text lines,
# dot-stuffed lines, lines that start with an SMTP verb in prose, then the end-of-data dot.
BODY_TAIL = (
    b"ders for the third quarter are attached.\r\n"
    b"..a line that began with a dot, stuffed\r\n"
    b"...\r\n"
    b"Quit smoking, said the doctor.\r\n"
    b"Data: 42 rows\r\n"
    b"Mail from the past arrives today\r\n"
    b"HELP WANTED: apply within\r\n"
    b"Rcpt to whom it may concern\r\n"
    + b"".join(b"line %d of the report, nothing to see\r\n" % i for i in range(40))
    + b"-- \r\nAlice\r\n"
)
MIDSTREAM_DATA: list[Event] = [
    (C, BODY_TAIL[:700]),
    (C, BODY_TAIL[700:] + b".\r\n"),
    (S, b"250 2.0.0 Ok: queued as 4Xk9Q2\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]


def run_midstream(events: Sequence[Event]) -> SmtpSession:
    """Feed events (event i at ts 100+i) to a parser told the handshake was not seen."""
    return run(events, midstream=True)


def test_pick_up_inside_data_counts_no_violation() -> None:
    s = run_midstream(MIDSTREAM_DATA)
    assert s.midstream
    assert s.anomalies == {}
    assert s.reply_codes == {250: 1, 221: 1}  # the 250 answers the dot, the 221 the QUIT
    assert s.commands == ("QUIT",)
    assert s.banner is None and s.transactions == ()
    assert session_to_dict(s)["midstream"] is True


def test_the_same_bytes_without_the_hint_are_violations() -> None:
    """What the sensor did before: the message text parsed as commands."""
    s = run(MIDSTREAM_DATA)
    assert not s.midstream and s.anomalies["unknown_command"] > 40


def test_pick_up_inside_a_transaction_parses_what_follows() -> None:
    """MAIL and its reply were missed: the RCPT and DATA after them are no sequence error, and
    the content is read as content."""
    s = run_midstream([
        (C, b"le.org>\r\nRCPT TO:<bob@example.net>\r\nDATA\r\n"),
        (S, b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
        (C, b"Subject: hi\r\n\r\nQuit smoking\r\n.\r\n"), (S, b"250 2.0.0 Ok: queued\r\n"),
        (C, b"QUIT\r\n"), (S, b"221 2.0.0 Bye\r\n"),
    ])  # fmt: skip
    assert s.anomalies == {}
    assert s.commands == ("RCPT", "DATA", "QUIT")
    [t] = s.transactions
    assert t.mail_from is None and [r.addr for r in t.rcpt_to] == ["bob@example.net"]
    assert t.rcpt_to[0].code == 250 and t.data_mode == "data" and t.accepted
    assert t.headers["subject"] == "hi"


def test_pick_up_inside_a_multiline_reply() -> None:
    s = run_midstream([
        (S, b"TENSION\r\n250-PIPELINING\r\n250 SMTPUTF8\r\n"),
        (C, b"MAIL FROM:<a@c.example>\r\n"), (S, b"250 2.1.0 Ok\r\n"),
    ])  # fmt: skip
    assert s.anomalies == {}
    assert s.reply_codes == {250: 2} and s.transactions[0].mail_code == 250


def test_pick_up_right_after_the_handshake_reads_as_usual() -> None:
    """The banner seen before any client byte: nothing was lost but the handshake."""
    for events in (BASIC, PIPELINED, BDAT, AUTH_PLAIN):
        got, want = session_to_dict(run_midstream(events)), session_to_dict(run(events))
        assert got.pop("midstream") is True and want.pop("midstream") is False
        assert got == want


def test_a_reply_before_any_greeting_is_not_a_banner_once_the_client_spoke() -> None:
    s = run_midstream([(C, b"NOOP\r\n"), (S, b"220 mx.example.net ready\r\n")])
    assert s.banner is None and s.reply_codes == {220: 1} and s.anomalies == {}


def test_after_a_gap_prose_starting_with_a_verb_does_not_end_resync() -> None:
    s = run([
        (S, BANNER), (C, b"EHLO c.example\r\n"), (S, EHLO_REPLY), (C, 300),
        (C, b"Quit smoking, said the doctor\r\nData: 42\r\nsend me more\r\nQUIT\r\n"),
        (S, b"221 bye\r\n"),
    ])  # fmt: skip
    assert s.commands == ("EHLO", "QUIT")
    assert s.anomalies == {"gap_client": 1}


def test_resync_skips_bare_line_ends_and_long_lines_without_counting() -> None:
    s = run_midstream([
        (C, b"x" * 5000 + b"\nbare\rcr\r\nmore\n"), (C, b"NOOP\r\n"), (S, b"250 ok\r\n"),
    ])  # fmt: skip
    assert s.anomalies == {} and s.commands == ("NOOP",)


def test_command_line_shapes() -> None:
    yes = [b"MAIL FROM:<a@b.example> SIZE=10", b"mail from:<>", b"RCPT TO:<x@y.example>",
           b"DATA", b"QUIT", b"RSET", b"EHLO client.example", b"HELO [10.0.0.1]",
           b"NOOP", b"HELP", b"BDAT 100 LAST", b"AUTH PLAIN AHUAcA==", b"STARTTLS",
           b"XCLIENT ADDR=1.2.3.4", b"VRFY root"]  # fmt: skip
    no = [b"Quit smoking", b"Data: 42", b"Data", b"QUIT now", b"Mail from the past",
          b"HELP WANTED: apply within", b"EHLO two words", b"RCPT to whom it may concern",
          b"BDAT many", b"AUTH", b"send me more", b".", b"", b"MAIL FROM:<a@b> " + b"x" * 600,
          b"XCLIENT please"]  # fmt: skip
    assert [line for line in yes if not is_command_line(line)] == []
    assert [line for line in no if is_command_line(line)] == []


DIALOGUE: list[Event] = [
    (C, b"MAIL FROM:<a@c.example>\r\n"), (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<b@s.example>\r\n"), (S, b"250 2.1.5 Ok\r\n"),
    (C, b"DATA\r\n"), (S, b"354 go ahead\r\n"),
    (C, b"Subject: x\r\n\r\nhi\r\n.\r\n"), (S, b"250 2.0.0 Ok: queued\r\n"),
    (C, b"QUIT\r\n"), (S, b"221 2.0.0 Bye\r\n"),
]  # fmt: skip


def _lines(data: bytes) -> list[bytes]:
    return [line.removesuffix(b"\r") for line in data.split(b"\n")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.binary(max_size=300), st.integers(0, 700))
def test_random_bytes_before_a_dialogue_never_count_violations(
    client: bytes, server: bytes, cut: int
) -> None:
    """Whatever precedes the first command and the first reply line, nothing is counted and the
    dialogue after them is read whole."""
    client += b"\r\n"
    server += b"\r\n"
    assume(not any(is_command_line(line) or line == b"." for line in _lines(client)))
    assume(not any(parse_reply_line(line) for line in _lines(server)))
    cut = min(cut, len(client))
    s = run_midstream([(C, client[:cut]), (S, server), (C, client[cut:]), *DIALOGUE])
    assert s.anomalies == {}
    assert s.commands == ("MAIL", "RCPT", "DATA", "QUIT")
    [t] = s.transactions
    assert (t.mail_from, t.mail_code, t.rcpt_to[0].code, t.accepted) == ("a@c.example", 250,
                                                                        250, True)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(st.binary(max_size=400), st.integers(1, 500))),
                max_size=40))  # fmt: skip
def test_random_bytes_and_gaps_after_a_pick_up_never_raise(
    events: list[tuple[bool, bytes | int]],
) -> None:
    s = feed_checking_bounds(events, midstream=True)
    assert s.midstream
    session_to_dict(s)
