"""Escaping and value rendering for the syslog formats: one-line text, RFC 5424 names, CEF, LEEF.

Attacker-chosen text (HELO names, subjects, addresses, summaries that quote them) is escaped,
never dropped: a backslash becomes ``\\\\``, LF/CR/TAB become ``\\n``/``\\r``/``\\t``, every
other C0 or C1 control, DEL and a lone surrogate become ``\\uXXXX``; each format then adds its
own escapes (RFC 5424 PARAM-VALUE: ``\\"`` and ``\\]``; CEF and LEEF header: ``\\|``; CEF
extension: ``\\=``). The result is valid UTF-8 on one line, and reads back exactly with those
rules. Header fields (HOSTNAME, APP-NAME, PROCID, MSGID, SD-ID and PARAM-NAMEs) allow
printable US-ASCII only (RFC 5424 6): anything else becomes ``_`` (non-ASCII ``?``), cut at
the RFC's length limits.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import ip_address
from typing import Final

import orjson

from sensor import __version__

VENDOR: Final = "port25"
PRODUCT: Final = "port25-sensor"
NILVALUE: Final = "-"  # RFC 5424 6
SD_NAME_MAX: Final = 32  # SD-ID and PARAM-NAME (RFC 5424 6.3)
LEEF_DELIMITER: Final = "x09"  # LEEF 2.0 header field 6: the tab, in its hex form


def _table(extra: str) -> dict[int, str]:
    """A str.translate table: every ASCII character listed (a miss costs an exception inside
    translate), controls, DEL, C1 and surrogates escaped, and backslash plus `extra` escaped."""
    table = {c: chr(c) for c in range(0x80)}
    table.update({c: f"\\u{c:04x}" for c in (*range(0x20), *range(0x7F, 0xA0),
                                            *range(0xD800, 0xE000))})  # fmt: skip
    table.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"})
    table.update({ord(c): "\\" + c for c in extra})
    return table


_TEXT: Final = _table("")  # free text (MSG) and LEEF values
_SD_VALUE: Final = _table('"]')  # RFC 5424 6.3.3
_CEF_HEAD: Final = _table("|")  # CEF header fields (also LEEF's)
_CEF_EXT: Final = _table("=")  # CEF extension values


# A string that is printable (no control, separator other than space, or surrogate) and has
# none of its escaped characters is its own escape: most values are, and skip translate.
def text(s: str) -> str:
    """Free text on one line: controls, DEL, lone surrogates and backslashes escaped."""
    return s if s.isprintable() and "\\" not in s else s.translate(_TEXT)


def sd_value(s: str) -> str:
    """An RFC 5424 PARAM-VALUE: text() plus `\\"` and `\\]` (6.3.3)."""
    if s.isprintable() and "\\" not in s and '"' not in s and "]" not in s:
        return s
    return s.translate(_SD_VALUE)


def cef_head(s: str) -> str:
    """A CEF or LEEF header field: text() plus `\\|`."""
    return s if s.isprintable() and "\\" not in s and "|" not in s else s.translate(_CEF_HEAD)


def cef_ext(s: str) -> str:
    """A CEF extension value: text() plus `\\=`."""
    return s if s.isprintable() and "\\" not in s and "=" not in s else s.translate(_CEF_EXT)


_PRINTUSASCII: Final = bytes(c if 33 <= c <= 126 else 0x5F for c in range(256))
_SD_NAME: Final = bytes(0x5F if c in b'= ]"' else _PRINTUSASCII[c] for c in range(256))


def header_field(s: str, limit: int, table: bytes = _PRINTUSASCII) -> str:
    """A header field: printable US-ASCII, at most ``limit`` characters, never empty."""
    out = s.encode("ascii", "replace").translate(table)[:limit].decode("ascii")
    return out or NILVALUE


def sd_name(s: str) -> str:
    """An SD-ID or PARAM-NAME (RFC 5424 6.3.2): printable US-ASCII but ``= ]"``, 1-32 chars."""
    return header_field(s, SD_NAME_MAX, _SD_NAME)


def number(x: object) -> str:
    """A number as text: integers without a fraction, floats as their shortest repr."""
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isfinite(x) and x.is_integer() and abs(x) < 1e18:
            return str(int(x))
        return repr(x)
    return str(x)


def utc(ts: float) -> datetime | None:
    """Packet time as an aware UTC datetime, None when it is not a date."""
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def rfc3339(ts: float) -> str:
    """Packet time as RFC 3339 UTC with milliseconds (as the alert's ``time``), "-" if none."""
    dt = utc(ts)
    if dt is None:
        return NILVALUE
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")  # fmt: skip


def epoch_ms(ts: float) -> int | None:
    """Packet time in milliseconds since the epoch, None when not finite."""
    return int(ts * 1000) if math.isfinite(ts) and abs(ts) < 1e15 else None


def one_line_json(obj: object) -> str:
    """Compact JSON on one line (control characters escaped; a lone surrogate as \\udcXX)."""
    try:
        return orjson.dumps(obj).decode("utf-8")
    except orjson.JSONEncodeError:
        out = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
        return out.encode("utf-8", "backslashreplace").decode("utf-8")


@lru_cache(maxsize=4096)  # the same clients and servers come back session after session
def is_ip(s: str) -> bool:
    """True for an IPv4 or IPv6 address (SIEM address fields take nothing else)."""
    try:
        ip_address(s)
    except ValueError:
        return False
    return True


def cef_body(event_id: str, name: str, severity: int, ext: list[tuple[str, str]]) -> str:
    """A CEF:0 body (severity already on CEF's 0-10 scale); header and extension escaped."""
    head = "|".join(cef_head(s) for s in (VENDOR, PRODUCT, __version__, event_id, name))
    return (f"CEF:0|{head}|{severity}|"
            + " ".join(f"{k}={cef_ext(v)}" for k, v in ext))


def leef_body(event_id: str, attrs: list[tuple[str, str]]) -> str:
    """A LEEF 2.0 body with tab-delimited attributes, values escaped so a tab cannot split them."""
    head = "|".join(cef_head(s) for s in (VENDOR, PRODUCT, __version__, event_id))
    return (f"LEEF:2.0|{head}|{LEEF_DELIMITER}|"
            + "\t".join(f"{k}={text(v)}" for k, v in attrs))
