"""The bounded MIME walk: compat32's results on well-formed mail, bounded work on hostile mail."""

from __future__ import annotations

import hashlib
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.limits import SmtpLimits
from sensor.smtp.message import clean, walk_message
from sensor.smtp.mime import params, parse_headers, split_parts

# ------------------------------------------------------------------ header blocks

FIELD_STARTS = [b"Subject:", b"X-a: ", b"To:", b" ", b"\t", b"From ", b"", b":", b"a b:",
                b"\xe9:", b"Content-Type: "]  # fmt: skip
FIELD_PIECES = [b"v", b" ", b"\t", b":", b"=?utf-8?q?x?=", b"\xe9", b"\x0b", b"\x00"]
BREAKS = [b"\r\n", b"\r\n", b"\n", b"\r"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FIELD_STARTS),
                          st.lists(st.sampled_from(FIELD_PIECES), max_size=5),
                          st.sampled_from(BREAKS)), max_size=8),
       st.sampled_from([b"\r\n", b"\n", b"body\r\n", b""]))  # fmt: skip
def test_header_fields_equal_the_email_package(
    lines: list[tuple[bytes, list[bytes], bytes]], end: bytes
) -> None:
    """Same fields, values and folding as compat32's parse of the same bytes."""
    data = b"".join(s + b"".join(v) + br for s, v, br in lines) + end + b"rest\r\n"
    hb = parse_headers(data, 0, len(data), True, SmtpLimits())
    ref = BytesHeaderParser(policy=compat32).parsebytes(data)
    assert hb.items == list(ref.raw_items())
    assert hb.body >= 0 and not hb.too_large


def test_header_block_bounds_are_counted() -> None:
    many = b"".join(b"X-%d: v\r\n" % i for i in range(50)) + b"\r\nbody"
    hb = parse_headers(many, 0, len(many), True, SmtpLimits(max_mime_headers=10))
    assert len(hb.items) == 10 and hb.dropped == 40 and many[hb.body :] == b"body"
    big = b"Subject: s\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\nbody"
    hb = parse_headers(big, 0, len(big), True, SmtpLimits(max_header_bytes=1024))
    assert hb.too_large and hb.items[0] == ("Subject", "s") and hb.body == -1
    partial = b"Subject: s\r\nTo: x"  # more may come: no conclusion
    assert parse_headers(partial, 0, len(partial), False, SmtpLimits()).body == -1


# ------------------------------------------------------------------ parameters


def test_parameters_quoted_continued_and_extended() -> None:
    assert params('text/plain; charset="utf-8"; name=a.txt', 64)[0] == {
        "charset": "utf-8", "name": "a.txt"}  # fmt: skip
    assert params('attachment; filename="a;b \\"c\\".pdf"', 64)[0] == {"filename": 'a;b "c".pdf'}
    assert params("attachment; filename*=utf-8''%E2%82%AC%20rates.pdf", 64)[0] == {
        "filename": "€ rates.pdf"}  # fmt: skip
    cont = "attachment; filename*1=\"part2.txt\"; filename*0*=utf-8''%C3%A9t%C3%A9-"
    assert params(cont, 64)[0] == {"filename": "été-part2.txt"}
    assert params("x; filename=plain; filename*=utf-8''other", 64)[0]["filename"] == "plain"


def test_parameter_caps_and_hostile_values() -> None:
    found, limited = params("x" + "; a=b" * 100, 64)
    assert limited and found == {"a": "b"}
    assert params("x; filename*=undefined''a", 64)[0] == {"filename": "a"}  # read as Latin-1
    assert params("x; filename*=idna''%ff", 64)[0] == {"filename": "\xff"}
    digits = "x; name*" + "0" * 4301 + "=a"
    assert params(digits, 64)[0] == {"name*" + "0" * 4301: "a"}  # no continuation number
    found, _ = params('x; filename="a' + ";" * 400_000, 64)  # never closed: one long value
    assert found["filename"].startswith('"a;;;')  # the quote stays, as in compat32


# ------------------------------------------------------------------ the walk against compat32


def _reference(data: bytes, max_parts: int) -> list[tuple[str | None, str, str | None, int, str]]:
    """The attachments the previous walk, on the email package, found in a well-formed message."""
    msg = BytesParser(policy=compat32).parsebytes(data)
    out = []
    stack: list[Message] = [msg]
    leaves: list[Message] = []
    while stack and len(leaves) < max_parts:
        part = stack.pop()
        if part.is_multipart():
            stack.extend(reversed([c for c in part.get_payload() if isinstance(c, Message)]))
            continue
        leaves.append(part)
    for part in leaves:
        name = part.get_filename()
        disp = part.get_content_disposition()
        ctype = part.get_content_type()
        if name is None and disp != "attachment" and ctype.startswith("text/"):
            continue
        payload = part.get_payload(decode=True)
        body = payload if isinstance(payload, bytes) else b""
        out.append((name, ctype, disp, len(body), hashlib.sha256(body).hexdigest()))
    return out


LEAF_TYPES = [
    b"Content-Type: text/plain\r\n",
    b"Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n",
    b"Content-Type: text/html\r\nContent-Disposition: attachment; filename=p.html\r\n",
    b"Content-Type: image/png\r\nContent-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Type: application/zip\r\nContent-Disposition: attachment;\r\n"
    b" filename*=utf-8''z%C3%A9.zip\r\n",
    b"Content-Type: text/plain; name==?utf-8?b?w6l0w6kudHh0?=\r\n",
]  # fmt: skip
BODIES = [b"", b"hello\r\n", b"QUJDRA==\r\n", b"QUJD\r\nREVG\r\n", b"a=3Db=\r\nc\r\n", b"\r\n\r\n",
          b"line\r\n--notb\r\n", b"x"]  # fmt: skip


@st.composite
def mime_tree(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A well-formed MIME entity: a leaf, a multipart of entities or a message/rfc822."""
    kind = draw(st.sampled_from(["leaf", "leaf", "multi", "rfc822"] if depth < 4 else ["leaf"]))
    if kind == "leaf":
        return draw(st.sampled_from(LEAF_TYPES)) + b"\r\n" + draw(st.sampled_from(BODIES))
    if kind == "rfc822":
        return b"Content-Type: message/rfc822\r\n\r\nSubject: in\r\n" + draw(mime_tree(depth + 1))
    bound = b"b%d" % depth
    sub = draw(st.sampled_from([b"mixed", b"alternative", b"related"]))
    parts = draw(st.lists(mime_tree(depth + 1), min_size=1, max_size=3))
    body = b"".join(b"--" + bound + b"\r\n" + p + b"\r\n" for p in parts)
    return (b"Content-Type: multipart/" + sub + b"; boundary=\"" + bound + b"\"\r\n\r\npreamble\r\n"
            + body + b"--" + bound + b"--\r\nepilogue\r\n")


@settings(max_examples=300, deadline=None)
@given(mime_tree())
def test_walk_finds_what_the_email_package_finds(entity: bytes) -> None:
    data = b"From: a@b\r\nSubject: s\r\n" + entity
    info = walk_message(data, False, SmtpLimits())
    ours = [(a.filename, a.content_type, a.disposition, a.size, a.sha256) for a in info.attachments]
    ref = [(None if r[0] is None else clean(r[0]), *r[1:]) for r in _reference(data, 1000)]
    assert ours == ref
    assert not info.limited


def test_delimiters_only_at_line_starts_and_runs_of_them() -> None:
    body = b"pre\r\n--q\r\nA\r\nx--q\r\n--q\r\n--q \t\r\nB\r\n--q--\r\nepi"
    parts = split_parts(body, 0, len(body), "q", 10)
    assert parts is not None
    assert [body[s:e] for s, e in parts] == [b"A\r\nx--q\r\n", b"B\r\n"]
    assert split_parts(b"no delimiter\r\n", 0, 14, "q", 10) is None
    assert split_parts(b"--q--\r\nA\r\n", 0, 10, "q", 10) is None  # closed before opening


def test_lookalikes_inside_lines_switch_to_the_line_anchored_search() -> None:
    body = b"--q\r\n" + b"x--q\r\n" * 1000 + b"--q\r\nlast\r\n--q--\r\n"
    parts = split_parts(body, 0, len(body), "q", 10)
    assert parts is not None and len(parts) == 2
    assert body[parts[1][0] : parts[1][1]] == b"last\r\n"
