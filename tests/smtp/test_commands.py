"""Pure argument parsers: paths, HELO kinds, BDAT sizes, AUTH arguments, verbs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp import commands
from sensor.smtp.commands import (
    NON_SMTP_VERBS,
    SMTP_VERBS,
    HeloKind,
    helo_kind_text,
    is_command_line,
    is_non_smtp,
    parse_auth,
    parse_bdat,
    parse_helo_kind,
    parse_path,
    parse_path_ex,
    parse_path_ex_py,
    split_command,
)


def test_parse_path_strict_with_params() -> None:
    assert parse_path(b"FROM:<a@b.example> SIZE=10 BODY=8BITMIME") == (
        "a@b.example",
        {"SIZE": "10", "BODY": "8BITMIME"},
    )
    assert parse_path_ex(b"TO:<c@d.example>") == ("c@d.example", {}, False)


@pytest.mark.parametrize(
    ("arg", "addr"),
    [
        (b"FROM: <a@b.example>", "a@b.example"),
        (b"FROM:a@b.example", "a@b.example"),
        (b"From:a@b.example SIZE=3", "a@b.example"),
        (b"TO:<x@y.example>NOTIFY=NEVER", "x@y.example"),
    ],
)
def test_parse_path_sloppy_forms_are_flagged(arg: bytes, addr: str) -> None:
    parsed = parse_path_ex(arg)
    assert parsed is not None
    assert parsed[0] == addr
    assert parsed[2] is True


def test_parse_path_null_sender_route_and_utf8() -> None:
    assert parse_path(b"FROM:<>") == ("", {})
    assert parse_path(b"TO:<@relay1,@relay2:user@final.example>") == ("user@final.example", {})
    assert parse_path("FROM:<jörg@exämple.de> SMTPUTF8".encode()) == (
        "jörg@exämple.de",
        {"SMTPUTF8": ""},
    )


@pytest.mark.parametrize("arg", [b"", b"FROM", b"FROM:<a@b", b"FROM:", b"FROM:<a b@c>"])
def test_parse_path_rejects_garbage(arg: bytes) -> None:
    assert parse_path(arg) is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mail.example.com", HeloKind.FQDN),
        ("mail.example.com.", HeloKind.FQDN),
        ("[192.0.2.1]", HeloKind.IP_LITERAL),
        ("[IPv6:2001:db8::1]", HeloKind.IP_LITERAL),
        ("Bob-PC", HeloKind.BARE_WORD),
        ("localhost", HeloKind.BARE_WORD),
        ("192.0.2.1", HeloKind.INVALID),
        ("[192.0.2]", HeloKind.INVALID),
        ("bad_name.example", HeloKind.INVALID),
        ("-lead.example", HeloKind.INVALID),
        ("", HeloKind.INVALID),
    ],
)
def test_helo_kinds(name: str, kind: HeloKind) -> None:
    assert parse_helo_kind(name) is kind
    assert helo_kind_text(name) == kind.value and helo_kind_text(name) == kind.value  # memo


def test_helo_memo_stays_bounded() -> None:
    for i in range(commands.HELO_MEMO_ENTRIES + 10):
        assert helo_kind_text(f"h{i}.example") == "fqdn"
    assert len(commands._helo_memo) <= commands.HELO_MEMO_ENTRIES
    assert helo_kind_text("h0.example") == "fqdn" and helo_kind_text("bad_x") == "invalid"


@pytest.mark.parametrize(
    ("arg", "want"),
    [
        (b"100", (100, False)),
        (b"0 LAST", (0, True)),
        (b"86 last", (86, True)),
        (b"", None),
        (b"-1 LAST", None),
        (b"1234 SCRAMBLE", None),
        (b"SCRAMBLE", None),
        (b"155555555577777777777777", None),
        (b"1 LAST extra", None),
    ],
)
def test_parse_bdat(arg: bytes, want: tuple[int, bool] | None) -> None:
    assert parse_bdat(arg) == want


def test_parse_auth_and_split_command() -> None:
    assert parse_auth(b"plain AGEAYg==") == ("PLAIN", b"AGEAYg==")
    assert parse_auth(b"LOGIN") == ("LOGIN", None)
    assert parse_auth(b"") == ("", None)
    assert split_command(b"mail FROM:<a@b>") == ("MAIL", b"FROM:<a@b>")
    assert split_command(b"QUIT") == ("QUIT", b"")


def _split_command_by_find(line: bytes) -> tuple[str, bytes]:
    """split_command as first written: the first space by bytes.find."""
    sp = line.find(b" ")
    verb_b, arg = (line, b"") if sp < 0 else (line[:sp], line[sp + 1 :])
    return verb_b[:32].decode("latin-1").upper(), arg


@given(st.binary(max_size=40) | st.lists(st.sampled_from([b"MAIL", b" ", b"x", b"\xe9"]),
                                         max_size=20).map(b"".join))
@settings(max_examples=500)
def test_split_command_finds_the_first_space_anywhere(line: bytes) -> None:
    """The byte loop covers the first 16 bytes, find the rest: a space at any position."""
    assert split_command(line) == _split_command_by_find(line)
    for at in (0, 15, 16, 17, 40):
        spaced = b"A" * at + b" " + line
        assert split_command(spaced) == _split_command_by_find(spaced)


def test_non_smtp_detection() -> None:
    assert is_non_smtp(b"GET / HTTP/1.1", "GET")
    assert is_non_smtp(b"\x16\x03\x01\x00\xa5\x01", split_command(b"\x16\x03\x01\x00\xa5\x01")[0])
    assert is_non_smtp(b"SSH-2.0-OpenSSH_9.6", "SSH-2.0-OPENSSH_9.6")
    assert not is_non_smtp(b"EHLO x", "EHLO")


def test_an_smtp_verb_is_never_a_non_smtp_opening() -> None:
    """The client half skips is_non_smtp for SMTP verbs: this is why it may."""
    assert SMTP_VERBS.isdisjoint(NON_SMTP_VERBS)
    for verb in SMTP_VERBS:
        for line in (verb.encode(), verb.encode() + b" x", verb.lower().encode() + b" x"):
            got = split_command(line)[0]
            assert got == verb and not is_non_smtp(line, got)


def _first_word_may_end_resync(line: bytes) -> bool:
    """The verb test of resync as first written: split the line, look the upper-cased verb up,
    then ask the word as sent to be in one case throughout."""
    verb, _ = split_command(line)
    if verb not in SMTP_VERBS:
        return False
    raw = line[: len(verb)]
    return raw.isupper() or raw.islower()


_WORDS = st.sampled_from(sorted(SMTP_VERBS | NON_SMTP_VERBS)) | st.text(
    st.sampled_from("AaLlIiQqUuTtxX-2 \xdf\xe9\t"), max_size=9
)


@given(
    word=_WORDS,
    case=st.sampled_from(["upper", "lower", "swapcase", "title", "asis"]),
    rest=st.binary(max_size=40) | st.sampled_from([b"", b" ", b" FROM:<a@b.example>", b" x y"]),
)
def test_resync_verb_set_agrees_with_the_split_and_case_test(
    word: str, case: str, rest: bytes
) -> None:
    """Most lines of message text after a gap fail on their first word, unsplit; a line the
    first-word test passes is judged on its argument as before."""
    shaped = getattr(word, case)() if case != "asis" else word
    line = shaped.encode("latin-1", "replace") + rest
    if not _first_word_may_end_resync(line):
        assert not is_command_line(line)
    elif line.split(b" ", 1)[0] in (b"QUIT", b"quit", b"DATA", b"data") and b" " not in line:
        assert is_command_line(line)  # a bare verb alone on its line: always a command


def test_resync_accepts_verbs_in_one_case_only() -> None:
    assert is_command_line(b"QUIT") and is_command_line(b"quit")
    assert not is_command_line(b"Quit")
    assert is_command_line(b"mail FROM:<a@b.example>")
    assert not is_command_line(b"Mail FROM:<a@b.example>")
    assert is_command_line(b"X-LINK2STATE") and not is_command_line(b"x-link2state")
    assert not is_command_line(b"QUITE")


# MAIL/RCPT arguments made of the pieces that steer the parse, hostile ones included
PATH_PIECES = [b"FROM:", b"TO:", b":", b"<", b">", b"@", b"@r,@s:", b"a@b.example", b" ", b"\t",
               b"SIZE=10", b"size=", b"=", b"x", b"\xff", b"\xe9=\xc3\xa9", b"\r", b"\x0b",
               b"\xc3", b"\xdf=1", b"K" * 70 + b"=v"]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PATH_PIECES), max_size=14).map(b"".join))
def test_native_path_parse_equals_its_python_reading(arg: bytes) -> None:
    assert commands._c_parse_path is not None  # the suite runs on the native build
    got = commands._c_parse_path(arg, commands._MAX_PARAMS)
    want = parse_path_ex_py(arg)
    assert got == want
    if got is not None and want is not None:  # the same parameters in the same order
        assert list(got[1].items()) == list(want[1].items())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_native_path_parse_on_random_bytes(arg: bytes) -> None:
    assert commands._c_parse_path is not None
    for whole in (arg, b"TO:" + arg, b"FROM:<a@b> " + arg):
        assert commands._c_parse_path(whole, commands._MAX_PARAMS) == parse_path_ex_py(whole)


def test_native_path_parse_keeps_the_first_parameters() -> None:
    arg = b"FROM:<a@b> " + b" ".join(b"K%d=%d" % (i, i) for i in range(40))
    assert commands._c_parse_path is not None
    parsed = commands._c_parse_path(arg, 3)
    assert parsed is not None and list(parsed[1]) == ["K0", "K1", "K2"]
    want = parse_path_ex_py(arg)
    assert want is not None and len(want[1]) == commands._MAX_PARAMS
    assert commands._c_parse_path(arg, commands._MAX_PARAMS) == want
