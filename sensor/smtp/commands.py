"""Pure parsers of SMTP command lines and arguments (RFC 5321 4.1, RFC 3030 BDAT, RFC 4954 AUTH)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Final

# Verbs of RFC 5321 4.1 and the common extensions (RFC 3030, 3207, 4954, 1985, 4468, Postfix X*).
SMTP_VERBS: Final = frozenset(
    {
        "HELO", "EHLO", "LHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "EXPN",
        "HELP", "QUIT", "STARTTLS", "AUTH", "XCLIENT", "XFORWARD", "ETRN", "ATRN", "TURN",
        "BURL", "SEND", "SOML", "SAML", "VERB", "ONEX", "XEXCH50", "X-EXPS", "X-LINK2STATE",
    }
)  # fmt: skip
# Verbs of other protocols seen on port 25: HTTP (RFC 9110 9.3), proxy CONNECT, POP3/IMAP probes.
NON_SMTP_VERBS: Final = frozenset(
    {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT", "USER",
     "PASS", "CAPA", "STAT", "LOGIN", "SELECT", "LOGOUT"}
)  # fmt: skip
# HTTP methods (RFC 9110 9.3): a request line is followed by header lines up to an empty line.
HTTP_METHODS: Final = frozenset(
    {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT"}
)
_VERB_STR: Final = {v.encode(): v for v in SMTP_VERBS | NON_SMTP_VERBS}  # bytes form -> verb
# RFC 8446 5.1: ContentType handshake(22), legacy version 3.x
_TLS_RECORD_HANDSHAKE: Final = b"\x16\x03"
_SSH_BANNER: Final = b"SSH-"  # RFC 4253 4.2
_MAX_PARAMS: Final = 32  # ESMTP parameters kept per MAIL/RCPT (RFC 5321 4.1.2 esmtp-param list)
_MAX_VERB: Final = 32  # characters of an unknown verb kept in SmtpSession.commands
# beyond this the size argument is junk (Zeek: "BDAT argument bad length")
_MAX_BDAT_DIGITS: Final = 20

_c_parse_path: Callable[[bytes, int], tuple[str, dict[str, str], bool] | None] | None
try:  # the C parse (sensor/smtp/_scan.c), built beside the compiled modules
    from sensor.smtp import _scan

    _c_parse_path = _scan.parse_path
except ImportError:  # pure-Python install: parse_path_ex_py, the same result, slower
    _c_parse_path = None

# RFC 4422 3.1: a SASL mechanism name is 1-20 upper-case letters, digits, hyphens, underscores
_SASL_MECH: Final = re.compile(rb"[A-Za-z0-9_-]{1,20}")


class HeloKind(StrEnum):
    """Shape of the HELO/EHLO argument (RFC 5321 4.1.1.1 Domain / address-literal)."""

    FQDN = "fqdn"
    IP_LITERAL = "ip_literal"
    BARE_WORD = "bare_word"
    INVALID = "invalid"


def split_command(line: bytes) -> tuple[str, bytes]:
    """Split a command line into its upper-cased verb and the argument after one space."""
    n = len(line)
    sp = 0
    # Compiled, a byte compared per step: every verb is shorter than _SCAN_SP, and bytes.find
    # parses its arguments into a tuple (900 instructions a command line).
    while sp < n and sp < _SCAN_SP and line[sp] != _SP:
        sp += 1
    if sp == _SCAN_SP:
        sp = line.find(b" ", _SCAN_SP)
    elif sp == n:
        sp = -1
    if sp < 0:
        verb_b, arg = line, b""
    else:
        verb_b, arg = line[:sp], line[sp + 1 :]
    verb = _VERB_STR.get(verb_b)  # the common case: a known verb in capitals
    if verb is not None:
        return verb, arg
    if len(verb_b) > _MAX_VERB:
        verb_b = verb_b[:_MAX_VERB]
    return verb_b.decode("latin-1").upper(), arg


def is_non_smtp(line: bytes, verb: str) -> bool:
    """True if the line is another protocol's opening: HTTP, proxy, POP3/IMAP, TLS, SSH."""
    return (
        verb in NON_SMTP_VERBS
        or line.startswith(_TLS_RECORD_HANDSHAKE)
        or line.startswith(_SSH_BANNER)
        or line.startswith(b"\x80")  # SSLv2-compatible ClientHello
    )


_BARE_VERBS: Final = frozenset({"DATA", "RSET", "QUIT", "STARTTLS", "TURN"})  # no argument
_ONE_WORD_VERBS: Final = frozenset({"HELO", "EHLO", "LHLO"})  # RFC 5321 4.1.1.1: one domain
_FREE_VERBS: Final = frozenset({"NOOP", "HELP", "VRFY", "EXPN", "ETRN", "ATRN"})  # <= one word
_ATTR_VERBS: Final = frozenset({"XCLIENT", "XFORWARD"})  # Postfix: attribute=value pairs
_MAX_RESYNC_LINE: Final = 510  # RFC 5321 4.5.3.1.4: 512 octets with CRLF
_RESYNC_VERBS: Final = frozenset(
    {v.encode() for v in SMTP_VERBS} | {v.lower().encode() for v in SMTP_VERBS}
)
"""The first words that may end a resync: an SMTP verb in capitals or in lower case throughout
(message text after a gap is tested line by line, most lines failing here, unsplit)."""
_VERB_LENGTHS: Final = frozenset(len(v) for v in SMTP_VERBS)
_LONGEST_VERB: Final = max(_VERB_LENGTHS)
RESYNC_WORD_LENGTHS: Final = sum(1 << n for n in _VERB_LENGTHS)
"""The lengths of the SMTP verbs as a bit mask: a line whose first word has none of them is
message text to a resync (sensor.smtp.lines.LineBuffer.skip_text)."""
_SP: Final = 32
_SCAN_SP: Final = 16  # split_command's byte loop: beyond, bytes.find


def is_command_line(line: bytes) -> bool:
    """True if ``line`` parses as an SMTP command, argument shape included: where resync ends.

    Stricter than the parser's own reading, since after a gap or a mid-stream pick-up the line
    may be message text ("Quit smoking", "Data follows"): the verb must be upper- or lower-case
    throughout, and its argument must have the form RFC 5321 4.1 (or its extension) gives it.
    """
    if len(line) > _MAX_RESYNC_LINE:
        return False
    n = len(line)
    k = 0  # the first word's length, read up to one byte past the longest verb's
    while k < n and k <= _LONGEST_VERB and line[k] != _SP:
        k += 1
    if k not in _VERB_LENGTHS:
        return False
    raw = line[:k]
    if raw not in _RESYNC_VERBS:
        return False
    verb, arg = split_command(line)
    arg = arg.strip()
    if verb == "MAIL":
        return arg[:5].upper() == b"FROM:" and parse_path_ex(arg) is not None
    if verb == "RCPT":
        return arg[:3].upper() == b"TO:" and parse_path_ex(arg) is not None
    if verb in _BARE_VERBS:
        return not arg
    if verb in _ONE_WORD_VERBS:
        return bool(arg) and len(arg.split()) == 1
    if verb in _FREE_VERBS:
        return len(arg.split()) <= 1
    if verb == "BDAT":
        return parse_bdat(arg) is not None
    if verb == "AUTH":
        words = arg.split()
        return 1 <= len(words) <= 2 and _SASL_MECH.fullmatch(words[0]) is not None
    if verb in _ATTR_VERBS:
        return bool(arg) and all(b"=" in w for w in arg.split())
    return raw.isupper()


def text(raw: bytes) -> str:
    """Decode protocol text as UTF-8 (RFC 6531 allows it), replacing anything undecodable."""
    return raw.decode("utf-8", "replace")


def parse_path_ex(arg: bytes) -> tuple[str, dict[str, str], bool] | None:
    """`parse_path_ex_py`, in C where it is built (sensor/smtp/_scan.c)."""
    if _c_parse_path is not None:
        return _c_parse_path(arg, _MAX_PARAMS)
    return parse_path_ex_py(arg)


def parse_path_ex_py(arg: bytes) -> tuple[str, dict[str, str], bool] | None:
    """Parse ``FROM:<addr> params`` / ``TO:<addr> params``; return (addr, params, sloppy) or None.

    ``sloppy`` is True for forms RFC 5321 4.1.2 does not allow but servers accept:
    a space after the colon, a missing angle bracket pair.  A source route
    (``<@a,@b:u@c>``) is dropped; the null path ``<>`` gives the empty address.
    """
    colon = arg.find(b":")
    if colon < 0:
        return None
    rest = arg[colon + 1 :]
    sloppy = False
    if rest[:1] in (b" ", b"\t"):
        rest = rest.lstrip(b" \t")
        sloppy = True
    if rest[:1] == b"<":
        close = rest.find(b">")
        if close < 0:
            return None
        addr_b = rest[1:close]
        tail = rest[close + 1 :]
        if tail and tail[:1] != b" ":
            sloppy = True
    else:
        sp = rest.find(b" ")
        addr_b, tail = (rest, b"") if sp < 0 else (rest[:sp], rest[sp:])
        if not addr_b:
            return None
        sloppy = True
    if addr_b[:1] == b"@":  # RFC 5321 4.1.2 obsolete source route: "@a,@b:user@c"
        route_end = addr_b.find(b":")
        addr_b = addr_b[route_end + 1 :] if route_end >= 0 else b""
    if b" " in addr_b or b"<" in addr_b:
        return None
    params: dict[str, str] = {}
    for word in tail.split()[:_MAX_PARAMS]:
        key, _eq, value = word.partition(b"=")
        params[key.decode("latin-1").upper()] = text(value)
    return text(addr_b), params, sloppy


def parse_path(arg: bytes) -> tuple[str, dict[str, str]] | None:
    """Parse a MAIL/RCPT argument (``FROM:<a@b> SIZE=10``) into (address, ESMTP params) or None."""
    parsed = parse_path_ex(arg)
    if parsed is None:
        return None
    return parsed[0], parsed[1]


# RFC 5321 4.1.2 sub-domain: ASCII letters, digits, hyphens, not starting or ending with a
# hyphen, at most 63 characters (RFC 1035 2.3.4); a domain is such labels joined by dots.
_LDH_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LDH_DOMAIN: Final = re.compile(rf"{_LDH_LABEL}(?:\.{_LDH_LABEL})*")


HELO_MEMO_ENTRIES: Final = 4096  # distinct HELO names remembered (a client repeats its own)
_helo_memo: Final[dict[str, str]] = {}


def helo_kind_text(name: str) -> str:
    """``parse_helo_kind(name).value``, remembered for the names seen lately."""
    kind = _helo_memo.get(name)
    if kind is None:
        kind = _helo_kind(name)
        if len(_helo_memo) >= HELO_MEMO_ENTRIES:
            _helo_memo.clear()
        _helo_memo[name] = kind
    return kind


def parse_helo_kind(name: str) -> HeloKind:
    """Classify a HELO/EHLO argument as FQDN, address literal, bare word or invalid."""
    return HeloKind(_helo_kind(name))


# HeloKind's values as plain str: a member's .value is an interpreted property, and each
# client with a name of its own misses the memo.
_FQDN: Final = "fqdn"
_IP_LITERAL: Final = "ip_literal"
_BARE_WORD: Final = "bare_word"
_INVALID: Final = "invalid"


def _helo_kind(name: str) -> str:
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        try:
            if inner[:5].upper() == "IPV6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError:  # the documented signal of a malformed address literal
            return _INVALID
        return _IP_LITERAL
    host = name[:-1] if name.endswith(".") else name
    if not host or len(host) > 255:
        return _INVALID
    if _LDH_DOMAIN.fullmatch(host) is None:
        return _INVALID
    labels = host.split(".")
    if len(labels) == 1:
        return _BARE_WORD
    if labels[-1].isdigit():  # a bare dotted IP address is not a domain (RFC 5321 2.3.5)
        return _INVALID
    return _FQDN


def parse_bdat(arg: bytes) -> tuple[int, bool] | None:
    """Parse ``BDAT size [LAST]`` (RFC 3030 2) into (size, last), or None when invalid."""
    words = arg.split()
    if not words or len(words) > 2:
        return None
    size_b = words[0]
    if not size_b.isdigit() or len(size_b) > _MAX_BDAT_DIGITS:
        return None
    last = False
    if len(words) == 2:
        if words[1].upper() != b"LAST":
            return None
        last = True
    return int(size_b), last


def parse_auth(arg: bytes) -> tuple[str, bytes | None]:
    """Parse ``AUTH mechanism [initial-response]`` (RFC 4954 4) into (MECHANISM, response)."""
    words = arg.split()
    if not words:
        return "", None
    mech = words[0][:_MAX_VERB].decode("latin-1").upper()
    return mech, (words[1] if len(words) > 1 else None)
