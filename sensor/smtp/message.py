"""Headers and MIME attachments of a message copy, read with the standard library's email."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from email.errors import HeaderParseError
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from typing import Final

from sensor.records import Attachment
from sensor.smtp.limits import SmtpLimits

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
_IPV4: Final = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
# stateless: a FeedParser per parsebytes call
_HEADER_PARSER: Final = BytesHeaderParser(policy=compat32)
_IPV6: Final = re.compile(r"IPv6:([0-9A-Fa-f:.]+)", re.IGNORECASE)


class MessageInfo:
    """What the walk of one message found (a plain class: one is made per message)."""

    __slots__ = (
        "attachments", "header_too_large", "headers", "mime_parts", "received_count",
        "received_ips",
    )  # fmt: skip

    def __init__(self, mime_parts: int = 0, header_too_large: bool = False) -> None:
        self.headers: dict[str, str | None] = {}
        self.received_count = 0
        self.received_ips: list[str] = []
        self.mime_parts = mime_parts
        self.attachments: list[Attachment] = []
        self.header_too_large = header_too_large


def clean(value: str) -> str:
    """Header text: undo surrogate escapes, unfold (drop line breaks), decode RFC 2047 words."""
    if not value.isascii():  # undecodable bytes arrive as surrogate escapes
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    value = value.replace("\r", "").replace("\n", "").strip()
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except HeaderParseError:  # malformed encoded word: keep the raw text
        return value
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        try:
            out.append(chunk.decode(charset or "ascii", "replace"))
        except LookupError:  # unknown charset name
            out.append(chunk.decode("latin-1"))
    return "".join(out)


def received_ip(value: str) -> str | None:
    """The sending hop's IP in a Received header: the second address if several, else the first."""
    found: list[str] = []
    for m in _IPV4.finditer(value):
        addr = m.group(1)
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


def _str_items(msg: Message) -> list[tuple[str, str]]:
    """``msg.items()`` with values as text: what ``str(value)`` of each item gives.

    compat32 hands back a stored value unchanged unless it carries undecodable bytes (then a
    Header object), so only non-ASCII values go through the policy's fetch.
    """
    # Typed as returning object: compat32 returns a Header where the stubs say str.
    fetch: Callable[[str, str], object] = msg.policy.header_fetch_parse
    return [
        (name, raw if raw.isascii() else str(fetch(name, raw))) for name, raw in msg.raw_items()
    ]


def _headers(items: list[tuple[str, str]], info: MessageInfo) -> None:
    received: list[str] = []
    headers = info.headers
    for name, raw in items:
        lname = name.lower()
        if lname == "received":
            value = clean(raw)
            received.append(value)
            ip = received_ip(value)
            if ip is not None:
                info.received_ips.append(ip)
            continue
        key = HEADER_KEYS.get(lname)
        if key is None:
            continue
        value = clean(raw)
        if lname in _LIST_HEADERS:
            prev = headers.get(key)
            if prev:
                value = f"{prev}, {value}"
        headers[key] = value
    info.received_count = len(received)
    # Zeek's first_received is the last Received header (the earliest hop), then the one above it.
    headers["first_received"] = received[-1] if received else None
    headers["second_received"] = received[-2] if len(received) > 1 else None


def _leaf(part: Message, cut: bool) -> Attachment | None:
    """An attachment record for a leaf part carrying a file (named, attached or not text)."""
    filename = part.get_filename()
    disposition = part.get_content_disposition()
    ctype = part.get_content_type()
    if filename is None and disposition != "attachment" and ctype.startswith("text/"):
        return None
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    return Attachment(
        filename=clean(filename) if filename is not None else None,
        content_type=ctype,
        disposition=disposition,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        truncated=cut,
    )


def header_end(copy: bytes, endpos: int) -> int:
    """End of the first blank line (``LF [CR] LF``) lying within ``copy[:endpos]``, or -1.

    Same answer as searching ``\\r?\\n\\r?\\n``: the blank line is found after the first LF
    followed by ``LF`` or ``CRLF``; ``bytes.find`` does it without the regex engine's cost.
    """
    crlf = copy.find(b"\n\r\n", 0, endpos)
    lf = copy.find(b"\n\n", 0, endpos if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def _first(items: list[tuple[str, str]], lname: str) -> str | None:
    """The first value of a header, as ``Message.get`` picks it."""
    for name, value in items:
        if len(name) == len(lname) and name.lower() == lname:
            return value
    return None


def split_header_block(block: bytes) -> list[tuple[str, str]] | None:
    """The (name, value) items the email package's compat32 parse gives for a plain header
    block; None if the block is not plain.

    Plain: ASCII, every line ended by CRLF, the block ended by an empty line, and each line
    either ``name: value`` (a name of printable characters without space or colon) or a
    continuation starting with space or tab after such a line.  Anything else (bare CR or LF,
    8-bit bytes, an mbox ``From `` line, a line that is no header) goes to the email package,
    whose defect handling then decides.  As there, a value keeps its folding line breaks.
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


def _text_shape(items: list[tuple[str, str]]) -> bool | None:
    """``_single_text_part`` decided from the header items alone, or None if it needs the
    email package (a disposition or a name parameter to read)."""
    ctype_raw = _first(items, "content-type")
    if _first(items, "content-disposition") is not None or (
        ctype_raw is not None and "name" in ctype_raw.lower()
    ):
        return None
    # No disposition and no name parameter mean no file name; the type is read as
    # Message.get_content_type reads it (text/plain when absent or not "type/subtype").
    if ctype_raw is None:
        return True
    ctype = ctype_raw.partition(";")[0].strip().lower()
    return ctype.count("/") != 1 or ctype.startswith("text/")


def _single_text_part(head: Message, items: list[tuple[str, str]], limits: SmtpLimits) -> bool:
    """True if the message, judged on its headers alone, is one text leaf carrying no file.

    Such a message walks to exactly one leaf and no attachment record whatever its body, so
    the body need not be parsed.  Multipart and message/* types have children; a file name,
    an attachment disposition or a non-text type make the leaf an attachment.
    """
    if limits.max_mime_parts < 1:
        return False
    shape = _text_shape(items)
    if shape is not None:
        return shape
    ctype = head.get_content_type()
    return (
        ctype.startswith("text/")  # never a container type, and no attachment by type
        and head.get_content_disposition() != "attachment"
        and head.get_filename() is None
    )


def analyze_head(prefix: bytes, whole: bool, limits: SmtpLimits) -> MessageInfo | None:
    """What ``analyze_message`` finds, from a prefix of the message when that suffices.

    It suffices for a header block over the limit and for a single text part whose header
    block ends within ``prefix`` (``whole``: the prefix is the entire message); otherwise None:
    the whole message must be walked.
    """
    end = header_end(prefix, limits.max_header_bytes + 4)
    if end < 0:
        if whole and len(prefix) > limits.max_header_bytes:
            info = MessageInfo(header_too_large=True)
            head = prefix[: limits.max_header_bytes]
            _headers(_str_items(_HEADER_PARSER.parsebytes(head)), info)
            return info
        return None
    # The email parser ends the header block at this blank line or before it, so parsing the
    # block gives the same headers as parsing the whole message.
    block = prefix[:end]
    plain = split_header_block(block) if limits.max_mime_parts >= 1 else None
    if plain is not None and _text_shape(plain):
        items = plain  # the common message, read without the email package's per-line cost
    else:
        top = _HEADER_PARSER.parsebytes(block)
        items = _str_items(top)
        if not _single_text_part(top, items, limits):
            return None
    info = MessageInfo(mime_parts=1)
    _headers(items, info)
    return info


def analyze_message(copy: bytes, cut: bool, limits: SmtpLimits) -> MessageInfo:
    """Headers, Received chain and attachments of a message copy (``cut``: only a prefix)."""
    info = analyze_head(copy, True, limits)
    return info if info is not None else walk_message(copy, cut, limits)


def walk_message(copy: bytes, cut: bool, limits: SmtpLimits) -> MessageInfo:
    """Headers and attachments of a message copy parsed whole by the email package."""
    info = MessageInfo()
    msg = BytesParser(policy=compat32).parsebytes(copy)
    _headers(_str_items(msg), info)
    stack: list[tuple[Message, int]] = [(msg, 0)]
    leaves: list[Message] = []
    while stack and len(leaves) < limits.max_mime_parts:
        part, depth = stack.pop()
        if part.is_multipart():
            children = part.get_payload()
            if depth < limits.max_mime_depth and isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
            continue
        leaves.append(part)
    info.mime_parts = len(leaves)
    for i, part in enumerate(leaves):
        att = _leaf(part, cut and i == len(leaves) - 1)
        if att is not None:
            info.attachments.append(att)
    return info
