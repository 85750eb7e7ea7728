"""Headers, Received chain and MIME attachments of a message copy, within SmtpLimits.

Hostile messages are the norm here: nothing in this module hands a message to the standard
library's ``email`` package (see sensor.smtp.mime for why), and every cap hit is reported.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from typing import Final

from sensor.records import Attachment
from sensor.smtp.encoded import decode_words
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.mime import (
    RFC822,
    TEXT_PLAIN,
    HeaderBlock,
    boundary,
    content_type,
    decode_payload,
    disposition,
    filename,
    first_value,
    parse_headers,
    split_parts,
    strip_break,
)

# Header name (lower case) -> key in MailTransaction.headers; Zeek smtp.log names where it has them.
HEADER_KEYS: Final[dict[str, str]] = {
    "date": "date",
    "from": "from",
    "to": "to",
    "cc": "cc",
    "reply-to": "reply_to",
    "subject": "subject",
    "message-id": "msg_id",
    "in-reply-to": "in_reply_to",
    "x-originating-ip": "x_originating_ip",
    "x-mailer": "user_agent",
    "user-agent": "user_agent",
    "x-user-agent": "user_agent",
}
# repeated headers are joined, others: the last one wins
_LIST_HEADERS: Final = frozenset({"to", "cc"})
_IPV4: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
"""A dotted quad not followed by a digit or dot; `_dotted_quads` leaves out one that follows a
digit or dot (a lookbehind here would cost the engine its quick scan for a first digit)."""
_RUN_TABLE: Final = bytes(c if c == 0x2E or 0x30 <= c <= 0x39 else 0x20 for c in range(256))
"""ASCII digits and dots kept, every other byte a space: split() then gives the runs."""
_IPV6: Final = re.compile(r"IPv6:([0-9A-Fa-f:.]+)", re.IGNORECASE)
DEFAULT_ENCODED_WORDS: Final = SmtpLimits().max_encoded_words

_c_split: Callable[[bytes], list[tuple[str, str]] | None] | None
_c_header_end: Callable[[bytes, int], int] | None
try:  # the C scans (sensor/smtp/_scan.c), built beside the compiled modules
    from sensor.smtp import _scan

    _c_split = _scan.split_header_block
    _c_header_end = _scan.header_end
except ImportError:  # pure-Python install: the _py readings, the same results, slower
    _c_split = None
    _c_header_end = None


class MessageInfo:
    """What the walk of one message found (a plain class: one is made per message)."""

    __slots__ = (
        "attachments", "error", "header_too_large", "headers", "limited", "mime_parts",
        "received_count", "received_ips",
    )  # fmt: skip

    def __init__(self, mime_parts: int = 0, header_too_large: bool = False) -> None:
        self.headers: dict[str, str | None] = {}
        self.received_count = 0
        self.received_ips: list[str] = []
        self.mime_parts = mime_parts
        self.attachments: list[Attachment] = []
        self.header_too_large = header_too_large
        self.limited = False  # a MIME cap (depth, parts, fields, parameters, words) was hit
        self.error: str | None = None  # the exception type that stopped the analysis


def clean(value: str, max_words: int = DEFAULT_ENCODED_WORDS) -> str:
    """Header text: raw 8-bit bytes read as UTF-8 (RFC 6532), unfolded (line breaks dropped),
    RFC 2047 words decoded (at most ``max_words``)."""
    return clean_counted(value, max_words)[0]


def clean_counted(value: str, max_words: int) -> tuple[str, bool]:
    """``clean`` and whether ``max_words`` cut the decoding short."""
    if not value.isascii():  # 8-bit bytes arrive as surrogate escapes
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = value.replace("\r", "").replace("\n", "").strip()
    if "=?" not in value:
        return value, False
    return decode_words(value, max_words)


def _dotted_quads(value: str) -> list[str]:
    """The dotted quads of `value`: what the pattern ``(?<![\\d.])\\d{1,3}(?:\\.\\d{1,3}){3}
    (?![\\d.])`` matches, i.e. each maximal run of digits and dots that is four groups of one to
    three digits."""
    if value.isascii():  # most headers: the runs in C (translate, split), no regex engine
        runs = value.encode("ascii").translate(_RUN_TABLE).split()
        return [r.decode("ascii") for r in runs if r.count(b".") == 3 and _quad_groups(r)]
    quads: list[str] = []
    for m in _IPV4.finditer(value):  # \d is any decimal digit here (Unicode Nd)
        start = m.start()
        if start and (value[start - 1] == "." or value[start - 1].isdecimal()):
            # Within a longer run of digits and dots: every later start in the run follows a
            # digit or dot too, and the scan goes on after the run, where the lookbehind
            # form of the pattern would find its next match as well.
            continue
        quads.append(m.group())
    return quads


def _quad_groups(run: bytes) -> bool:
    """A run of digits and three dots is a dotted quad: no group empty or over three digits."""
    a, b, c, d = run.split(b".")
    return 0 < len(a) <= 3 and 0 < len(b) <= 3 and 0 < len(c) <= 3 and 0 < len(d) <= 3


def received_ip(value: str) -> str | None:
    """The sending hop's IP in a Received header: the second address if several, else the first."""
    found: list[str] = []
    for addr in _dotted_quads(value):
        # What ipaddress.IPv4Address accepts (ASCII octets <= 255, no leading zero) is already
        # in its canonical text form.
        octets = addr.split(".")
        if addr.isascii() and all(int(o) <= 255 and (o[0] != "0" or len(o) == 1) for o in octets):
            found.append(addr)
    for m in _IPV6.finditer(value) if "6:" in value else ():  # every "IPv6:" holds a "6:"
        try:
            found.append(str(ipaddress.IPv6Address(m.group(1).rstrip(":."))))
        except ValueError:  # not an address after all
            continue
    if not found:
        return None
    return found[1] if len(found) > 1 else found[0]


def _headers(items: list[tuple[str, str]], info: MessageInfo, max_words: int) -> None:
    received: list[str] = []
    headers = info.headers
    for name, raw in items:
        lname = name.lower()
        if lname == "received":
            value, cut = clean_counted(raw, max_words)
            info.limited = info.limited or cut
            received.append(value)
            ip = received_ip(value)
            if ip is not None:
                info.received_ips.append(ip)
            continue
        key = HEADER_KEYS.get(lname)
        if key is None:
            continue
        value, cut = clean_counted(raw, max_words)
        info.limited = info.limited or cut
        if lname in _LIST_HEADERS:
            prev = headers.get(key)
            if prev:
                value = f"{prev}, {value}"
        headers[key] = value
    info.received_count = len(received)
    # Zeek's first_received is the last Received header (the earliest hop), then the one above it.
    headers["first_received"] = received[-1] if received else None
    headers["second_received"] = received[-2] if len(received) > 1 else None


def header_end(copy: bytes, endpos: int) -> int:
    """`header_end_py`, in C where it is built (sensor/smtp/_scan.c): one memchr per line."""
    if _c_header_end is not None:
        return _c_header_end(copy, endpos)
    return header_end_py(copy, endpos)


def header_end_py(copy: bytes, endpos: int) -> int:
    """End of the first blank line (``LF [CR] LF``) lying within ``copy[:endpos]``, or -1.

    Same answer as searching ``\\r?\\n\\r?\\n``: the blank line is found after the first LF
    followed by ``LF`` or ``CRLF``; ``bytes.find`` does it without the regex engine's cost.
    """
    crlf = copy.find(b"\n\r\n", 0, endpos)
    lf = copy.find(b"\n\n", 0, endpos if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def split_header_block(block: bytes) -> list[tuple[str, str]] | None:
    """`split_header_block_py`, in C where it is built (sensor/smtp/_scan.c)."""
    if _c_split is not None:
        return _c_split(block)
    return split_header_block_py(block)


def split_header_block_py(block: bytes) -> list[tuple[str, str]] | None:
    """The (name, value) items of a plain header block, as ``parse_headers`` (and the email
    package's compat32 parse) give them, in one pass of str methods; None if it is not plain.

    Plain: ASCII, every line ended by CRLF, the block ended by an empty line, and each line
    either ``name: value`` (a name of printable characters without space or colon) or a
    continuation starting with space or tab after such a line.  Anything else (bare CR or LF,
    8-bit bytes, an mbox ``From `` line, a line that is no header) goes to ``parse_headers``.
    As there, a value keeps its folding line breaks.
    """
    # RFC 5322 2.2: a field is a name (printable ASCII but colon, no space), a colon and a
    # value, continued on lines starting with white space (2.2.3); an empty line ends the block.
    if not block.isascii() or not block.endswith(b"\r\n\r\n"):
        return None
    text = block.decode("ascii")
    lines = text[:-4].split("\r\n")
    breaks = len(lines) + 1  # every line ends with CRLF, and so does the empty one
    if text.count("\n") != breaks or text.count("\r") != breaks:  # a bare CR or LF
        return None
    items: list[tuple[str, str]] = []
    for line in lines:
        first = line[:1]
        if first == " " or first == "\t":  # a continuation keeps its line break, as compat32
            if not items:
                return None
            name, value = items[-1]
            items[-1] = (name, f"{value}\r\n{line}")
            continue
        colon = line.find(":")
        name = line[:colon]
        if colon <= 0 or " " in name or not name.isprintable():
            return None
        items.append((name, line[colon + 1 :].lstrip(" \t")))
    return items


def _text_shape(items: list[tuple[str, str]], limits: SmtpLimits) -> bool:
    """True if an entity with these fields is one text leaf carrying no file: then the message
    walks to exactly one leaf and no attachment, whatever its body."""
    if limits.max_mime_parts < 1:
        return False
    ctype = content_type(items, TEXT_PLAIN)
    if not ctype.startswith("text/") or disposition(items) == "attachment":
        return False
    if first_value(items, "content-disposition") is None:
        raw = first_value(items, "content-type")
        if raw is None or "name" not in raw.lower():  # no parameter can name a file
            return True
    return filename(items, limits.max_mime_params)[0] is None


def _top_headers(prefix: bytes, whole: bool, limits: SmtpLimits) -> HeaderBlock:
    """The message's own header block: split in one pass when plain, else line by line."""
    end = header_end(prefix, min(len(prefix), limits.max_header_bytes))
    if end > 0 and len(prefix) > 0:
        plain = split_header_block(prefix[:end])
        if plain is not None and len(plain) <= limits.max_mime_headers:
            hb = HeaderBlock()
            hb.items = plain
            hb.body = end
            return hb
    return parse_headers(prefix, 0, len(prefix), whole, limits)


def analyze_head(prefix: bytes, whole: bool, limits: SmtpLimits) -> MessageInfo | None:
    """What ``analyze_message`` finds, from a prefix of the message when that suffices.

    It suffices for a header block over the limit and for a single text part whose header
    block ends within ``prefix`` (``whole``: the prefix is the entire message); otherwise None:
    the whole message must be walked.
    """
    hb = _top_headers(prefix, whole, limits)
    if hb.too_large:
        info = MessageInfo(header_too_large=True)
    elif hb.body < 0 or not _text_shape(hb.items, limits):
        return None
    else:
        info = MessageInfo(mime_parts=1)
    _headers(hb.items, info, limits.max_encoded_words)
    info.limited = info.limited or hb.dropped > 0
    return info


def analyze_message(copy: bytes, cut: bool, limits: SmtpLimits) -> MessageInfo:
    """Headers, Received chain and attachments of a message copy (``cut``: only a prefix)."""
    info = analyze_head(copy, True, limits)
    return info if info is not None else walk_message(copy, cut, limits)


class _Leaf:
    """A part without children: its fields and where its content lies in the copy."""

    __slots__ = ("ctype", "end", "items", "start")

    def __init__(self, items: list[tuple[str, str]], ctype: str, start: int, end: int) -> None:
        self.items = items
        self.ctype = ctype
        self.start = start
        self.end = end


def walk_message(copy: bytes, cut: bool, limits: SmtpLimits) -> MessageInfo:
    """Headers and attachments of a message copy, its MIME tree walked within the limits.

    Depth-first in document order, as the parts appear; past ``max_mime_depth`` a container's
    children and past ``max_mime_parts`` the remaining parts are not walked (``limited``).
    """
    info = MessageInfo()
    top = _top_headers(copy, True, limits)
    _headers(top.items, info, limits.max_encoded_words)
    if top.too_large:
        info.header_too_large = True
        return info
    leaves = _walk(copy, top, limits, info)
    info.mime_parts = len(leaves)
    last = len(leaves) - 1
    for i, leaf in enumerate(leaves):
        att = _attachment(copy, leaf, cut and i == last, limits, info)
        if att is not None:
            info.attachments.append(att)
    return info


def _walk(copy: bytes, top: HeaderBlock, limits: SmtpLimits, info: MessageInfo) -> list[_Leaf]:
    max_parts = limits.max_mime_parts
    max_depth = limits.max_mime_depth
    cap = limits.max_mime_params
    leaves: list[_Leaf] = []
    # (fields and body start, end, depth, default type, strip the break before a delimiter)
    stack: list[tuple[HeaderBlock, int, int, str, bool]] = [(top, len(copy), 0, TEXT_PLAIN, False)]
    while stack:
        if len(leaves) >= max_parts:
            info.limited = True
            break
        hb, stop, depth, default, strip = stack.pop()
        info.limited = info.limited or hb.dropped > 0 or hb.too_large
        body = hb.body if hb.body >= 0 else stop
        ctype = content_type(hb.items, default)
        main = ctype.partition("/")[0]
        if main == "multipart" or main == "message":
            if depth >= max_depth:  # its children are not followed
                info.limited = True
                continue
            if ctype == "message/delivery-status":  # RFC 3464: blocks of fields, no body
                _status_blocks(copy, body, stop, depth + 1, limits, stack)
                continue
            if main == "message":  # one message inside (rfc822, global, partial...)
                child = parse_headers(copy, body, stop, True, limits)
                stack.append((child, stop, depth + 1, TEXT_PLAIN, strip))
                continue
            bound = boundary(hb.items, cap)
            parts = None
            if bound is not None:
                parts = split_parts(copy, body, stop, bound, max_parts - len(leaves))
            if parts is not None:
                child_default = RFC822 if ctype == "multipart/digest" else TEXT_PLAIN
                for start, end in reversed(parts):
                    child = parse_headers(copy, start, end, True, limits)
                    stack.append((child, end, depth + 1, child_default, True))
                continue
            # no boundary, or none opens a part: the body is one payload, as compat32 keeps it
        start = min(body, stop)
        end = strip_break(copy, start, stop) if strip else stop
        leaves.append(_Leaf(hb.items, ctype, start, end))
    return leaves


def _status_blocks(
    copy: bytes, start: int, stop: int, depth: int, limits: SmtpLimits,
    stack: list[tuple[HeaderBlock, int, int, str, bool]],
) -> None:
    """The field blocks of a delivery-status body, each a part without content."""
    blocks: list[HeaderBlock] = []
    pos = start
    while pos < stop and len(blocks) < limits.max_mime_parts:
        hb = parse_headers(copy, pos, stop, True, limits)
        if hb.body < 0 or hb.body <= pos:
            break
        if hb.items:  # content: none, it ends where the fields end
            blocks.append(hb)
        pos = hb.body
    for hb in reversed(blocks):
        stack.append((hb, hb.body, depth, TEXT_PLAIN, False))


def _attachment(
    copy: bytes, leaf: _Leaf, cut: bool, limits: SmtpLimits, info: MessageInfo
) -> Attachment | None:
    """An attachment record for a leaf carrying a file (named, attached or not text)."""
    name, limited = filename(leaf.items, limits.max_mime_params)
    info.limited = info.limited or limited
    disp = disposition(leaf.items)
    ctype = leaf.ctype
    if name is None and disp != "attachment" and ctype.startswith("text/"):
        return None
    cte = first_value(leaf.items, "content-transfer-encoding")
    data = decode_payload(copy[leaf.start : leaf.end], cte)
    if name is not None:
        name, cut_words = clean_counted(name, limits.max_encoded_words)
        info.limited = info.limited or cut_words
    return Attachment(
        filename=name,
        content_type=ctype,
        disposition=disp,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        truncated=cut,
    )
