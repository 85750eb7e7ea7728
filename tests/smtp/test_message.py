"""Header extraction (folding, RFC 2047, Received chain) and the MIME walk for attachments."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.limits import SmtpLimits
from sensor.smtp.message import analyze_message, clean, received_ip

from .dialogues import ATTACHMENT_BYTES, MESSAGE

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
