"""Header extraction (folding, RFC 2047, Received chain) and the MIME walk for attachments."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp import message as message_module
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.message import (
    MessageInfo,
    analyze_head,
    analyze_message,
    clean,
    header_end,
    header_end_py,
    received_ip,
    split_header_block,
    split_header_block_py,
    walk_message,
)

from .dialogues import ATTACHMENT_BYTES, MESSAGE
from .hostile_mail import CRASHERS, attachment, nested_multipart, nested_rfc822, with_header

UNSTUFFED = MESSAGE.replace(b"\r\n..", b"\r\n.")


def test_headers_of_a_real_looking_message() -> None:
    info = analyze_message(UNSTUFFED, False, SmtpLimits())
    h = info.headers
    assert h["from"] == "Alice Example <alice@example.org>"
    assert h["to"] == "Bob <bob@example.net>, carol@example.net"
    assert h["cc"] == "dave@example.net"
    assert h["subject"] == "Quarterly résumé"
    assert h["msg_id"] == "<20251006100000.1234@example.org>"
    assert h["in_reply_to"] == "<prev@example.net>"
    assert h["user_agent"] == "Thunderbird 128.3"
    assert h["date"] == "Mon, 6 Oct 2025 10:00:00 +0200"
    assert info.received_count == 2
    # Zeek's order: first_received is the bottom-most Received header.
    assert h["first_received"] == (
        "from [10.1.2.3] (host.internal [10.1.2.3]) by relay.example.org; "
        "Mon, 6 Oct 2025 10:00:00 +0200"
    )
    assert h["second_received"] is not None and h["second_received"].startswith(
        "from relay.example.org (relay.example.org [203.0.113.7])\tby mx"
    )
    assert info.received_ips == ["203.0.113.7", "10.1.2.3"]


def test_attachments_with_hash_and_body_parts_counted() -> None:
    info = analyze_message(UNSTUFFED, False, SmtpLimits())
    assert info.mime_parts == 2
    [att] = info.attachments
    assert att.filename == "report.pdf"
    assert att.content_type == "application/pdf"
    assert att.disposition == "attachment"
    assert att.size == len(ATTACHMENT_BYTES)
    assert att.sha256 == hashlib.sha256(ATTACHMENT_BYTES).hexdigest()
    assert not att.truncated


def test_cut_message_marks_last_attachment_truncated() -> None:
    cut = UNSTUFFED[: UNSTUFFED.index(b"JVBERi0x") + 8]
    info = analyze_message(cut, True, SmtpLimits())
    assert [a.truncated for a in info.attachments] == [True]


def test_header_block_over_limit_is_flagged() -> None:
    big = b"Subject: s\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\nbody"
    info = analyze_message(big, False, SmtpLimits(max_header_bytes=1024))
    assert info.header_too_large
    assert info.headers["subject"] == "s"


def test_clean_handles_bad_encodings() -> None:
    for garbage in ("=?utf-8?b?!!!?=", "=?utf-8?b?A?=", "=?utf-8?q?=ZZ?=", "=?", "=?x?y?z?="):
        assert isinstance(clean(garbage), str)
    assert clean("=?x-unknown?q?abc?=") == "abc"
    assert clean("a\r\n\tb") == "a\tb"
    assert clean("caf\udce9") == "caf\ufffd"


def test_received_ip_rule() -> None:
    assert received_ip("from a (b [192.0.2.1]) by c") == "192.0.2.1"
    assert received_ip("from 10.0.0.1 (x [192.0.2.9]) by c") == "192.0.2.9"
    assert received_ip("from a ([IPv6:2001:db8::5]) by c") == "2001:db8::5"
    assert received_ip("from a by b; 999.1.1.1") is None
    assert received_ip("id 1.192.0.2.1 and 192.0.2.7.5 from [198.51.100.3]") == "198.51.100.3"
    assert received_ip("x\u0663192.0.2.1 y") is None  # after a non-ASCII decimal digit (\d)


_IPV4_LOOKBEHIND = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def _received_ipv4_reference(value: str) -> str | None:
    """received_ip's IPv4 reading as it was written with a lookbehind (no IPv6 in the input)."""
    found = [
        m.group(1) for m in _IPV4_LOOKBEHIND.finditer(value)
        if m.group(1).isascii()
        and all(int(o) <= 255 and (o[0] != "0" or len(o) == 1) for o in m.group(1).split("."))
    ]  # fmt: skip
    if not found:
        return None
    return found[1] if len(found) > 1 else found[0]


_OCTET = st.sampled_from(["0", "1", "7", "25", "192", "255", "256", "010", "1234", "\u0663"])
_DOTTED_RUN = st.lists(_OCTET, min_size=1, max_size=6).map(".".join)  # 1.2, 1.2.3.4.5, ...
_SEPARATOR = st.sampled_from(["", " ", ".", "[", "]", "a", "\u0663", "\u00b2", "9"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(_SEPARATOR, _DOTTED_RUN), max_size=4)
       .map(lambda parts: "".join(sep + run for sep, run in parts)))  # fmt: skip
def test_received_ipv4_as_the_lookbehind_pattern_reads_it(value: str) -> None:
    assert received_ip(value) == _received_ipv4_reference(value)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(data: bytes) -> None:
    analyze_message(data, False, SmtpLimits(max_mime_parts=50))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    b"Content-Type: multipart/mixed; boundary=q\r\n", b"--q\r\n", b"--q--\r\n", b"\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: x-uuencode\r\n",
    b"Content-Disposition: attachment; filename*=bogus''%ff%fe\r\n", b"begin 644 f\r\n",
    b"Content-Type: message/rfc822\r\n", b"=?utf-8?b?w6k=?=\r\n", b"AAAA\r\n", b"=ZZ\r\n",
    b"Subject: =?iso-2022-jp?b?GyRC?=\r\n",
]), max_size=40))  # fmt: skip
def test_hostile_mime_structures_never_raise(lines: list[bytes]) -> None:
    analyze_message(b"".join(lines), True, SmtpLimits(max_mime_parts=20, max_mime_depth=5))


BLANK_LINE = re.compile(rb"\r?\n\r?\n")  # the header/body separator as a regular expression


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b": "]), max_size=30), st.integers(0, 40))
def test_header_end_agrees_with_the_regex(parts: list[bytes], endpos: int) -> None:
    data = b"".join(parts)
    m = BLANK_LINE.search(data, 0, endpos)
    assert header_end(data, endpos) == header_end_py(data, endpos) == (m.end() if m else -1)
    assert message_module._c_header_end is not None  # the suite runs on the native build
    for end in (-1, -3, -len(data) - 5, len(data) + 7):  # as bytes.find reads a slice's end
        assert header_end(data, end) == header_end_py(data, end)


MIME_LINES = [
    b"Content-Type: text/plain\r\n", b"Content-Type: text/html; name=a.html\r\n",
    b"Content-Type: multipart/mixed; boundary=q\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: application/pdf\r\n", b"Content-Type: multipart/alternative\r\n",
    b"Content-Type: text\r\n", b"Content-Disposition: attachment\r\n",
    b"Content-Disposition: inline; filename=x.txt\r\n", b"Subject: =?utf-8?q?r=C3=A9?=\r\n",
    b"From: a@b\r\n", b"To: c@d\r\n", b"Received: from x ([192.0.2.7]) by y\r\n",
    b" folded\r\n", b"\r\n", b"\n", b"\r", b"--q\r\n", b"--q--\r\n", b"body line\r\n",
    b"not a header\r\n", b"From nobody\r\n", b"Content-Transfer-Encoding: base64\r\n",
    b"QUJD\r\n", b"\xe9t\xe9: x\r\n", b"X-Name: \xff\r\n",
]  # fmt: skip


def _fields(info: MessageInfo | None) -> tuple[object, ...] | None:
    """Everything a MessageInfo holds, comparable."""
    if info is None:
        return None
    return (info.headers, info.received_count, info.received_ips, info.mime_parts,
            info.attachments, info.header_too_large)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(MIME_LINES), max_size=30), st.booleans())
def test_header_only_analysis_equals_the_full_walk(lines: list[bytes], cut: bool) -> None:
    data = b"".join(lines)
    limits = SmtpLimits(max_header_bytes=200)
    quick = analyze_head(data, True, limits)
    if quick is not None and not quick.header_too_large:
        assert _fields(quick) == _fields(walk_message(data, cut, limits))
    whole = analyze_message(data, cut, limits)
    assert _fields(whole) == _fields(quick or walk_message(data, cut, limits))


# Mostly what a plain block is made of (control characters included: they are no line breaks
# to the email package), and now and then what makes a block not plain.
PLAIN_STARTS = [b"Subject:", b"X-a: ", b"To:", b" ", b"\t"]
PLAIN_PIECES = [b"v", b" ", b"\t", b":", b"=?utf-8?q?x?=", b"\x0b", b"\x0c", b"\x1c", b"\x00"]
LINE_STARTS = PLAIN_STARTS * 6 + [b"From ", b"", b":", b"\xe9:", b"a b:"]
VALUE_PIECES = PLAIN_PIECES * 8 + [b"\r", b"\n", b"\xe9"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINE_STARTS),
                          st.lists(st.sampled_from(VALUE_PIECES), max_size=6)), max_size=8))
def test_plain_header_split_equals_the_email_package(
    lines: list[tuple[bytes, list[bytes]]],
) -> None:
    """Wherever the fast split answers, it answers exactly what compat32's parse gives."""
    data = b"".join(start + b"".join(value) + b"\r\n" for start, value in lines) + b"\r\n"
    block = data[: header_end(data, len(data))]
    fast = split_header_block(block)
    if fast is not None:
        parsed = BytesHeaderParser(policy=compat32).parsebytes(block)
        assert fast == list(parsed.raw_items())
        assert not parsed.defects


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LINE_STARTS),
                          st.lists(st.sampled_from(VALUE_PIECES), max_size=6)), max_size=8),
       st.sampled_from([b"\r\n", b"", b"\r", b"\n", b"\r\n\r\n", b"\r\r\n\r\n"]))
def test_native_header_split_equals_its_python_reading(
    lines: list[tuple[bytes, list[bytes]]], end: bytes
) -> None:
    """sensor/smtp/_scan.c against split_header_block_py on every block, plain or not."""
    block = b"".join(start + b"".join(value) + b"\r\n" for start, value in lines) + end
    assert message_module._c_split is not None  # the suite runs on the native build
    assert message_module._c_split(block) == split_header_block_py(block)
    for cut in range(len(block)):  # every prefix: truncated blocks, a CR LF split in two
        assert message_module._c_split(block[:cut]) == split_header_block_py(block[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_native_header_split_on_random_bytes(data: bytes) -> None:
    for block in (data, data + b"\r\n\r\n"):
        assert message_module._c_split is not None
        assert message_module._c_split(block) == split_header_block_py(block)


def test_plain_header_split_accepts_folding_and_refuses_the_unusual() -> None:
    folded = b"Subject: a\r\n b\r\n\tc\r\nTo:x\r\n\r\n"
    assert split_header_block(folded) == [("Subject", "a\r\n b\r\n\tc"), ("To", "x")]
    for odd in (b"From nobody\r\nTo: x\r\n\r\n", b" lead: x\r\n\r\n", b"To: x\n\n",
                b"To: \xe9\r\n\r\n", b"To: a\rb\r\n\r\n", b"not a header\r\n\r\n"):
        assert split_header_block(odd) is None, odd


def test_single_text_message_skips_the_walk_but_attachments_do_not() -> None:
    plain = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    quick = analyze_head(plain, True, SmtpLimits())
    assert _fields(quick) == _fields(walk_message(plain, False, SmtpLimits()))
    assert analyze_head(UNSTUFFED, True, SmtpLimits()) is None  # multipart: walked
    named = b"Content-Type: text/plain; name=notes.txt\r\n\r\nhello\r\n"
    assert analyze_head(named, True, SmtpLimits()) is None  # a named text part is a file
    assert analyze_head(plain[:20], False, SmtpLimits()) is None  # no blank line seen yet


# ------------------------------------------------------------------ hostile messages (issue 13)


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_inputs_that_crashed_the_email_package_are_analysed(name: str) -> None:
    info = analyze_message(CRASHERS[name], False, SmtpLimits())
    assert info.error is None
    assert info.headers["from"] == "a@example.org"


def test_nesting_beyond_the_depth_cap_is_cut_and_flagged() -> None:
    for data in (nested_multipart(1000), nested_rfc822(980)):
        info = analyze_message(data, False, SmtpLimits())
        assert info.limited and info.mime_parts == 0
    shallow = analyze_message(nested_multipart(5), False, SmtpLimits())
    assert not shallow.limited and shallow.mime_parts == 1


def test_hostile_charsets_decode_as_latin_1_or_stay_as_written() -> None:
    assert clean("=?undefined?q?abc?=") == "abc"
    assert clean("=?punycode?q?=FF?=") == "\xff"
    assert clean("=?idna?q?=FF=FE?=") == "\xff\xfe"
    assert clean("=?utf\x00-8?q?abc?=") == "abc"
    assert clean("=?hex?b?QUJD?=") == "ABC"  # a codec that is no text codec is never used
    assert clean("=?utf-8?q?caf=C3=A9?= =?utf-8?b?IGF1?= lait") == "café au lait"
    assert clean("=?utf-8?q?=C3?= =?utf-8?q?=A9?=") == "é"  # split character rejoined


def test_encoded_words_past_the_cap_stay_as_written() -> None:
    value = "=?utf-8?q?a?= " * 300
    info = analyze_message(with_header(b"Subject: " + value.encode()), False, SmtpLimits())
    subject = info.headers["subject"]
    assert subject is not None and subject.startswith("a" * 256 + " =?utf-8?q?a?=")
    assert info.limited


def test_raw_utf8_headers_are_read_as_utf8() -> None:
    """SMTPUTF8 mail (RFC 6532) carries 8-bit header values; each was one U+FFFD per byte."""
    msg = ("From: Renée Müller <renée@example.org>\r\nTo: b@example.net\r\n"
           "Subject: Grüße aus Köln ✓\r\n\r\nHallo\r\n").encode()  # fmt: skip
    info = analyze_message(msg, False, SmtpLimits())
    assert info.headers["subject"] == "Grüße aus Köln ✓"
    assert info.headers["from"] == "Renée Müller <renée@example.org>"
    multi = msg.replace(b"\r\n\r\nHallo", b"\r\nContent-Type: multipart/mixed; boundary=q"
                        b"\r\n\r\n--q\r\n\r\nHallo\r\n--q--")  # fmt: skip
    walked = analyze_message(multi, False, SmtpLimits())
    assert walked.headers["subject"] == "Grüße aus Köln ✓"


def test_an_error_inside_the_analysis_is_reported_not_raised(monkeypatch: Any) -> None:
    """The session boundary holds even for a bug of ours: here a walk made to fail.

    Compiled code calls the walk directly, so the module's source is loaded as interpreted
    Python, where the walk is looked up by name and can be replaced.
    """
    from sensor.smtp.body import MessageBody

    spec = importlib.util.spec_from_file_location(
        "session_interpreted", Path(message_module.__file__ or "").with_name("session.py"))
    assert spec is not None and spec.loader is not None
    session = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(session)

    def broken(copy: bytes, cut: bool, limits: SmtpLimits) -> MessageInfo:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(session, "walk_message", broken)
    body = MessageBody(1 << 20, True)
    body.feed_dot(attachment(b"attachment; filename=a.bin") + b".\r\n")
    info = session.message_info(body, SmtpLimits())
    assert info.error == "RecursionError" and not info.attachments
