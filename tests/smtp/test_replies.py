"""Reply lines, multi-line assembly, RFC 3463 enhanced codes, EHLO extension parsing."""

from __future__ import annotations

from sensor.smtp.replies import (
    Reply,
    ReplyAssembler,
    ehlo_extensions,
    ehlo_keywords,
    parse_enhanced,
    parse_reply_line,
    parse_single,
)


def test_reply_line_forms() -> None:
    assert parse_reply_line(b"250-PIPELINING") == (250, False, b"PIPELINING")
    assert parse_reply_line(b"250 OK") == (250, True, b"OK")
    assert parse_reply_line(b"250") == (250, True, b"")
    assert parse_reply_line(b"HTTP/1.0 200 OK") is None
    assert parse_reply_line(b"25") is None
    assert parse_reply_line(b"250x") is None


def test_enhanced_codes_must_match_the_class() -> None:
    assert parse_enhanced(250, "2.1.5 Ok") == "2.1.5"
    assert parse_enhanced(550, "5.7.1 relay denied") == "5.7.1"
    assert parse_enhanced(550, "2.1.5 mismatched") is None
    assert parse_enhanced(250, "OK id=1") is None
    assert parse_enhanced(354, "3.0.0 go") is None


def test_multiline_reply_assembly() -> None:
    asm = ReplyAssembler(max_lines=3)
    assert asm.add(250, False, b"mx Hello") is None
    assert asm.in_progress
    assert asm.add(250, False, b"SIZE 10") is None
    assert asm.add(250, False, b"PIPELINING") is None
    reply = asm.add(250, True, b"CHUNKING")
    assert reply is not None
    assert reply.lines == ["mx Hello", "SIZE 10", "PIPELINING"]  # capped at max_lines
    assert not reply.malformed
    assert reply.zeek_form() == "250 PIPELINING"


def test_mixed_codes_are_malformed() -> None:
    asm = ReplyAssembler(max_lines=10)
    asm.add(250, False, b"a")
    reply = asm.add(251, True, b"b")
    assert reply is not None and reply.malformed and reply.code == 251


def test_ehlo_extensions_and_stripped_starttls() -> None:
    reply = Reply(250, ["mx Hello", "size 1000", "AUTH PLAIN LOGIN", "STARTTLS"])
    assert ehlo_extensions(reply) == (["SIZE 1000", "AUTH PLAIN LOGIN", "STARTTLS"], False)
    masked = Reply(250, ["mx Hello", "PIPELINING", "XXXXXXXA"])
    assert ehlo_extensions(masked)[1] is True
    masked2 = Reply(250, ["mx Hello", "XXXXXXXX"])
    assert ehlo_extensions(masked2)[1] is True


def test_parse_single_matches_the_line_parsers_and_repeats() -> None:
    for line in (b"250 2.1.5 Ok", b"250", b"550 5.7.1 \xff denied", b"421 4.3.2 bye " * 20):
        code, _last, raw = parse_reply_line(line) or (0, True, b"")
        text = raw.decode("utf-8", "replace")
        want = (code, text, parse_enhanced(code, text))
        assert parse_single(line) == want
        assert parse_single(line) == want  # a remembered answer is the same


def test_ehlo_keywords_is_ehlo_extensions_remembered() -> None:
    reply = Reply(250, ["mx Hello", "size 1000", "AUTH PLAIN LOGIN", "XXXXXXXA"])
    exts, stripped = ehlo_extensions(reply)
    for _ in range(2):
        want = (tuple(exts), stripped, frozenset({"SIZE", "AUTH", "XXXXXXXA"}))
        assert ehlo_keywords(reply) == want
