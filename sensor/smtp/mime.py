"""The MIME structure of a message copy, walked within bounds: header blocks, parameters, parts.

Our own reading of RFC 2045/2046/2231 rather than the standard library's ``email`` package,
which recurses per nesting level, compares every line with every enclosing boundary and has
quadratic paths in parameter and encoded-word handling: with hostile input it raised
RecursionError or ran for minutes. Here every bound (header bytes and fields per entity,
parameters per header, nesting depth, parts) is checked while scanning, each byte of the copy is
read by Python code at most once per nesting level and delimiters are found by the regex engine,
so the cost stays linear in the copy's size times the depth limit. Where the input is
well-formed the results are those of ``email``'s compat32 parser: the same header items, the
same parts and the same decoded payloads.
"""

from __future__ import annotations

import binascii
import re
from typing import Final

from sensor.smtp.encoded import decode_extended
from sensor.smtp.limits import SmtpLimits

# RFC 5322 2.2: a field name is printable ASCII but colon; a continuation starts with WSP. An
# mbox "From " line is no field (compat32 skips it).
_HEADER_LINE: Final = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_LINE: Final = re.compile(rb"[^\r\n]*(\r\n|\r|\n)?")
# RFC 2231 3-4: name*N (a continuation), name*N* and name* (extended); more digits are no number
_CONTINUATION: Final = re.compile(r"(\w+)\*(?:([0-9]{1,3})(\*)?)?", re.ASCII)
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/]*={0,2}")  # RFC 4648 4, strictly
MAX_BOUNDARY: Final = 200  # RFC 2046 5.1.1 allows 70 characters; longer ones are not followed
_LITERAL_MISSES: Final = 32  # delimiter-like text not at a line start before the slower search
TEXT_PLAIN: Final = "text/plain"
RFC822: Final = "message/rfc822"


class HeaderBlock:
    """The header fields of one entity and where its body starts."""

    __slots__ = ("body", "dropped", "items", "too_large")

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.body = -1  # offset of the body; -1: the block did not end within the data
        self.too_large = False  # no end within SmtpLimits.max_header_bytes
        self.dropped = 0  # fields beyond SmtpLimits.max_mime_headers


def parse_headers(
    data: bytes, start: int, stop: int, whole: bool, limits: SmtpLimits
) -> HeaderBlock:
    """The header block of the entity at ``data[start:stop]`` (``whole``: no more data follows).

    The block ends at an empty line (the body follows it) or at the first line that is neither a
    field nor a continuation (the body starts there), as in compat32. Values keep their folding
    line breaks. A block that runs past ``max_header_bytes`` is cut there (``too_large``).
    """
    hb = HeaderBlock()
    limit = min(stop, start + limits.max_header_bytes)
    max_fields = limits.max_mime_headers
    items = hb.items
    name = ""
    parts: list[bytes] = []
    pos = start
    while True:
        if pos >= stop:  # the data ended within the block
            if whole:
                hb.body = stop
            break
        if pos >= limit:
            hb.too_large = True
            break
        m = _LINE.match(data, pos, limit)
        end = m.end() if m is not None else limit  # the pattern matches anywhere, even empty
        if m is None or m.group(1) is None:  # a line without its break
            if end < stop:  # cut at the limit: its start still counts
                hb.too_large = True
            elif not whole:  # more of it may come
                break
        first = data[pos]
        if first == 13 or first == 10:  # the empty line: the body follows
            hb.body = end
            break
        if _HEADER_LINE.match(data, pos, end) is None:  # no field: the body starts here
            hb.body = pos
            break
        if first == 32 or first == 9:  # a continuation of the field before, if any
            if name:
                parts.append(data[pos:end])
        else:
            if name:
                _add(items, name, parts, max_fields, hb)
            name = ""
            parts = []
            if not data.startswith(b"From ", pos):  # an mbox From_ line is skipped
                colon = data.find(b":", pos, end)
                if colon > pos:
                    name = data[pos:colon].decode("ascii")
                    parts.append(data[colon + 1 : end])
        if hb.too_large:
            break
        pos = end
    if name:
        _add(items, name, parts, max_fields, hb)
    return hb


def _add(
    items: list[tuple[str, str]], name: str, parts: list[bytes], cap: int, hb: HeaderBlock
) -> None:
    if len(items) >= cap:
        hb.dropped += 1
        return
    value = b"".join(parts).lstrip(b" \t").rstrip(b"\r\n")
    items.append((name, value.decode("ascii", "surrogateescape")))


def first_value(items: list[tuple[str, str]], lname: str) -> str | None:
    """The first value of a field (``lname`` in lower case), as ``Message.get`` picks it."""
    for name, value in items:
        if len(name) == len(lname) and name.lower() == lname:
            return value
    return None


def content_type(items: list[tuple[str, str]], default: str) -> str:
    """The entity's type/subtype in lower case; ``default`` when absent, text/plain when invalid."""
    raw = first_value(items, "content-type")
    if raw is None:
        return default
    ctype = raw.partition(";")[0].strip().lower()
    return ctype if ctype.count("/") == 1 else TEXT_PLAIN


def disposition(items: list[tuple[str, str]]) -> str | None:
    """The Content-Disposition type in lower case, or None."""
    raw = first_value(items, "content-disposition")
    return None if raw is None else raw.partition(";")[0].strip().lower()


def params(value: str, cap: int) -> tuple[dict[str, str], bool]:
    """The parameters of a Content-Type or Content-Disposition value (RFC 2045 5.1), with RFC
    2231 continuations joined and extended values decoded; and whether ``cap`` cut them short.

    Names are lower case; the first occurrence of a name wins. A quoted string may hold ``;``
    and backslash escapes.
    """
    found: list[tuple[str, str]] = []
    n = len(value)
    i = value.find(";")
    limited = False
    while 0 <= i < n:
        if len(found) >= cap:
            limited = True
            break
        j = i + 1
        eq = -1
        quoted = False
        start = j
        while j < n:  # one parameter: up to a ";" outside quotes
            c = value[j]
            if c == '"':
                quoted = not quoted
            elif c == "\\" and quoted:
                j += 1
            elif c == ";" and not quoted:
                break
            elif c == "=" and eq < 0 and not quoted:
                eq = j
            j += 1
        if eq > 0:
            name = value[start:eq].strip().lower()
            raw = value[eq + 1 : j].strip()
            if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':  # a quoted string, unquoted
                raw = raw[1:-1].replace("\\\\", "\\").replace('\\"', '"')
            if name:
                found.append((name, raw))
        i = j if j < n else -1
    return _join_rfc2231(found), limited


def _join_rfc2231(found: list[tuple[str, str]]) -> dict[str, str]:
    """Plain parameters as they are; RFC 2231 ``name*``, ``name*N``, ``name*N*`` joined and
    decoded into ``name``."""
    out: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, str, bool]]] = {}
    for name, value in found:
        m = _CONTINUATION.fullmatch(name)
        if m is None:
            if name not in out:
                out[name] = value
            continue
        base = m.group(1)
        number = m.group(2)
        extended = number is None or m.group(3) is not None
        pieces.setdefault(base, []).append((int(number) if number else 0, value, extended))
    for base, segs in pieces.items():
        if base in out:
            continue
        segs.sort(key=lambda s: s[0])
        if any(ext for _n, _v, ext in segs):
            # The first segment carries charset'language'; later extended ones are %-encoded.
            first = segs[0]
            text = first[1] if first[2] else "''" + first[1]
            rest = "".join(v if ext else _percent_escape(v) for _n, v, ext in segs[1:])
            out[base] = decode_extended(text + rest)
        else:
            out[base] = "".join(v for _n, v, _e in segs)
    return out


def _percent_escape(text: str) -> str:
    """A plain continuation segment, escaped so that decoding the joined value leaves it as is."""
    return text.replace("%", "%25")


def filename(items: list[tuple[str, str]], cap: int) -> tuple[str | None, bool]:
    """Content-Disposition's filename, else Content-Type's name (compat32's get_filename), and
    whether a parameter cap was hit."""
    limited = False
    for field, key in (("content-disposition", "filename"), ("content-type", "name")):
        raw = first_value(items, field)
        if raw is None:
            continue
        found, cut = params(raw, cap)
        limited = limited or cut
        value = found.get(key)
        if value is not None:
            return value.strip(), limited
    return None, limited


def boundary(items: list[tuple[str, str]], cap: int) -> str | None:
    """The multipart boundary parameter, or None."""
    raw = first_value(items, "content-type")
    if raw is None:
        return None
    found, _cut = params(raw, cap)
    value = found.get("boundary")
    return None if value is None else value.rstrip()


class Delimiters:
    """Finds the delimiter lines of one boundary (RFC 2046 5.1.1) in a range of a copy."""

    __slots__ = ("line_pat", "literal")

    def __init__(self, bound: bytes) -> None:
        sep = re.escape(b"--" + bound)
        tail = rb"(--)?[ \t]*(?:\r\n|\r|\n|\Z)"
        self.literal = re.compile(sep + tail)
        self.line_pat = re.compile(rb"[\r\n]" + sep + tail)

    def find(self, data: bytes, start: int, stop: int, limit: int) -> list[tuple[int, int, bool]]:
        """Up to ``limit`` delimiter lines in ``data[start:stop]``: (line start, line end,
        closing). A delimiter at a line start only: the regex engine rejects lookalikes inside
        lines once more than a few were seen, so hostile text costs no Python loop per line."""
        out: list[tuple[int, int, bool]] = []
        misses = 0
        pos = start
        literal = True
        while len(out) < limit:
            if literal:
                m = self.literal.search(data, pos, stop)
                if m is None:
                    break
                at = m.start()
                if at != start and data[at - 1] not in b"\r\n":
                    misses += 1
                    pos = at + 1
                    if misses > _LITERAL_MISSES:
                        literal = False
                    continue
                out.append((at, m.end(), m.group(1) is not None))
                pos = m.end()
            else:
                m = self.literal.match(data, pos, stop) if pos == start else None
                if m is None:
                    m = self.line_pat.search(data, max(pos - 1, start), stop)
                    if m is None:
                        break
                    out.append((m.start() + 1, m.end(), m.group(1) is not None))
                else:
                    out.append((m.start(), m.end(), m.group(1) is not None))
                pos = m.end()
            if pos >= stop:
                break
        return out


def split_parts(
    data: bytes, start: int, stop: int, bound: str, limit: int
) -> list[tuple[int, int]] | None:
    """The (start, end) of each part of a multipart body, at most ``limit``; None when no
    delimiter opens it (compat32 then keeps the body as one payload).

    Each part ends where the next delimiter line starts: the line break before it belongs to
    the delimiter (RFC 2046 5.1.1), and ``strip_break`` takes it off the content of the leaf
    that ends there. Delimiter lines that follow one another start one part, as in compat32;
    the closing delimiter ends the parts and the epilogue is ignored.
    """
    raw = bound.encode("ascii", "surrogateescape")
    if not raw or len(raw) > MAX_BOUNDARY:
        return None
    lines = Delimiters(raw).find(data, start, stop, limit + 1)
    if not lines or lines[0][2]:  # no delimiter, or the first one closes: no part opened
        return None
    parts: list[tuple[int, int]] = []
    open_at = -1
    prev_end = -1
    for line_start, line_end, closing in lines:
        if open_at >= 0 and line_start == prev_end:  # delimiters in a row start one part
            open_at = line_end
            prev_end = line_end
            continue
        if open_at >= 0:
            parts.append((open_at, line_start))
            if len(parts) >= limit:
                return parts
        if closing:
            return parts
        open_at = line_end
        prev_end = line_end
    if open_at >= 0 and len(lines) <= limit:  # no closing delimiter: the last part runs on
        parts.append((open_at, stop))
    return parts


def strip_break(data: bytes, start: int, end: int) -> int:
    """``end`` less one trailing CRLF, LF or CR within ``data[start:end]``."""
    if end > start and data[end - 1] == 10:
        end -= 1
        if end > start and data[end - 1] == 13:
            end -= 1
    elif end > start and data[end - 1] == 13:
        end -= 1
    return end


def decode_payload(payload: bytes, cte: str | None) -> bytes:
    """A leaf's content decoded per Content-Transfer-Encoding (RFC 2045 6), as compat32's
    ``get_payload(decode=True)``: undecodable content comes back as it is."""
    enc = "" if cte is None else cte.lower()
    if enc == "quoted-printable":
        return binascii.a2b_qp(payload)
    if enc == "base64":
        return _base64(b"".join(payload.splitlines()))
    if enc in ("x-uuencode", "uuencode", "uue", "x-uue"):
        decoded = _uudecode(payload)
        return payload if decoded is None else decoded
    return payload


def _base64(data: bytes) -> bytes:
    """Base64 with missing padding added and stray characters skipped; raw if it cannot be."""
    padded = data + b"==="[: (4 - len(data) % 4) % 4]
    if _BASE64.fullmatch(padded) is not None:
        try:
            return binascii.a2b_base64(padded)
        except binascii.Error:
            pass
    for extra in (b"", b"=="):
        try:
            return binascii.a2b_base64(data + extra)
        except binascii.Error:
            continue
    return data


def _uudecode(data: bytes) -> bytes | None:
    """uuencoded content from its ``begin`` line to ``end``; None without a begin line."""
    lines = data.splitlines()
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        i += 1
        if line.startswith(b"begin "):
            mode = line[6:].partition(b" ")[0]
            if mode and all(48 <= c <= 55 for c in mode):
                break
    else:
        return None
    out: list[bytes] = []
    while i < n:
        line = lines[i]
        i += 1
        if not line:
            return None
        if line.strip(b" \t\r\n\f") == b"end":
            break
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            try:  # a broken encoder's overlong line: decode the length it announces
                out.append(binascii.a2b_uu(line[: (((line[0] - 32) & 63) * 4 + 5) // 3]))
            except binascii.Error:
                return None
    return b"".join(out)
