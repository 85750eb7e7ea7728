"""Text in hostile headers: charsets through an allow-list, RFC 2047 encoded words, RFC 2231 values.

Written for attacker-chosen input: every function is linear in its input, never raises, and
decodes only with real text codecs. Python's codec registry also holds codecs that are not text
(base64, zlib, rot13), that raise on any input (``undefined``), or that parse domain names
(``idna``, ``punycode``); a charset name in a message never reaches those.
"""

from __future__ import annotations

import binascii
import re
from encodings import aliases, normalize_encoding
from typing import Final

# The codec modules of Python's ``encodings`` package that decode a MIME charset to text.
TEXT_CODECS: Final = frozenset({
    "ascii", "latin_1", "utf_8", "utf_8_sig", "utf_7", "utf_16", "utf_16_be", "utf_16_le",
    "utf_32", "utf_32_be", "utf_32_le",
    "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5", "iso8859_6", "iso8859_7", "iso8859_8",
    "iso8859_9", "iso8859_10", "iso8859_11", "iso8859_13", "iso8859_14", "iso8859_15",
    "iso8859_16",
    "cp037", "cp273", "cp424", "cp437", "cp500", "cp720", "cp737", "cp775", "cp850", "cp852",
    "cp855", "cp856", "cp857", "cp858", "cp860", "cp861", "cp862", "cp863", "cp864", "cp865",
    "cp866", "cp869", "cp874", "cp875", "cp932", "cp949", "cp950", "cp1006", "cp1026", "cp1125",
    "cp1140", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257",
    "cp1258",
    "koi8_r", "koi8_t", "koi8_u", "kz1048", "ptcp154", "tis_620", "hp_roman8",
    "mac_cyrillic", "mac_greek", "mac_iceland", "mac_latin2", "mac_roman", "mac_turkish",
    "mac_arabic", "mac_croatian", "mac_farsi", "mac_romanian",
    "big5", "big5hkscs", "gb2312", "gbk", "gb18030", "hz", "johab",
    "euc_jp", "euc_jis_2004", "euc_jisx0213", "euc_kr",
    "shift_jis", "shift_jis_2004", "shift_jisx0213",
    "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3",
    "iso2022_jp_ext", "iso2022_kr",
})  # fmt: skip
_ALIASES: Final[dict[str, str]] = dict(aliases.aliases)
MAX_CHARSET_NAME: Final = 40  # longer names are no charset (IANA's longest is 45 with x-)
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")

# RFC 2047 2: =?charset?encoding?encoded-text?=, the charset optionally with *language
# (RFC 2231 5). Neither part holds "?" or white space, so a failed attempt scans only up to the
# next "?" and the search stays linear on any input.
_WORD: Final = re.compile(r"=\?([^?\s]{1,40})\?([QqBb])\?([^?\s]*)\?=")  # 40: MAX_CHARSET_NAME
# RFC 2231 4: charset'language'percent-encoded value
_EXTENDED: Final = re.compile(r"([^']*)'[^']*'(.*)", re.DOTALL)


def text_codec(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or None unless it is an allowed text codec."""
    if not charset or len(charset) > MAX_CHARSET_NAME or not charset.isascii():
        return None
    name = normalize_encoding(charset.strip()).lower()
    name = _ALIASES.get(name, name)
    return name if name in TEXT_CODECS else None


def decode_text(data: bytes, charset: str) -> str:
    """``data`` as text in ``charset``; an unknown or disallowed charset reads as Latin-1."""
    codec = text_codec(charset)
    if codec is None:
        return data.decode("latin-1")
    try:
        return data.decode(codec, "replace")
    except Exception:  # a text codec should not raise with "replace"; never let it end a run
        return data.decode("latin-1")


def _unescape(raw: bytes, mark: int) -> bytes:
    """``raw`` with each ``mark`` followed by two hex digits turned into that byte; any other
    ``mark`` stays as it is."""
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        j = raw.find(mark, i)
        if j < 0:
            out += raw[i:]
            break
        out += raw[i:j]
        if j + 2 < n and raw[j + 1] in _HEX and raw[j + 2] in _HEX:
            out.append(int(raw[j + 1 : j + 3], 16))
            i = j + 3
        else:
            out.append(mark)
            i = j + 1
    return bytes(out)


def _q_decode(text: str) -> bytes:
    """RFC 2047 4.2 "Q": ``_`` is a space, ``=XX`` a byte; anything malformed stays as it is."""
    raw = text.replace("_", " ").encode("utf-8", "surrogateescape")
    return _unescape(raw, 61) if b"=" in raw else raw


def _b_decode(text: str) -> bytes | None:
    """RFC 2047 4.1 "B" with missing padding added; None when it is not base64."""
    pad = len(text) % 4
    if pad == 1:
        return None
    try:
        return binascii.a2b_base64(text + "=" * ((4 - pad) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def decode_words(value: str, max_words: int) -> tuple[str, bool]:
    """``value`` with its RFC 2047 encoded words decoded, and whether ``max_words`` cut it short.

    White space between two encoded words is dropped (RFC 2047 6.2); adjacent words in one
    charset are joined before decoding, so a character split across words survives. A word
    that does not decode is kept as written. Past ``max_words`` words the rest stays as written.
    """
    out: list[str] = []
    run: list[bytes] = []  # decoded bytes of adjacent words in run_charset
    run_charset = ""
    pos = 0
    limited = False
    for words, m in enumerate(_WORD.finditer(value)):
        if words >= max_words:
            limited = True
            break
        charset = m.group(1).partition("*")[0]  # RFC 2231 5: drop the language
        text = m.group(3)
        data = _q_decode(text) if m.group(2) in "Qq" else _b_decode(text)
        between = value[pos : m.start()]
        adjacent = pos > 0 and run and not between.strip(" \t")
        if data is None:  # not decodable: the word stays as written
            if run:
                out.append(decode_text(b"".join(run), run_charset))
                run = []
            out.append(between)
            out.append(m.group(0))
        elif adjacent and charset.lower() == run_charset.lower():
            run.append(data)
        else:
            if run:
                out.append(decode_text(b"".join(run), run_charset))
                run = []
            if not adjacent:
                out.append(between)
            run.append(data)
            run_charset = charset
        pos = m.end()
    if run:
        out.append(decode_text(b"".join(run), run_charset))
    out.append(value[pos:])
    return "".join(out), limited


def percent_decode(text: str) -> bytes:
    """RFC 2231 4 / RFC 3986 2.1 percent-encoding; a ``%`` not followed by two hex digits stays."""
    raw = text.encode("utf-8", "surrogateescape")
    return _unescape(raw, 37) if b"%" in raw else raw


def decode_extended(text: str) -> str:
    """An RFC 2231 extended value ``charset'language'%XX...`` as text."""
    m = _EXTENDED.fullmatch(text)
    if m is None:  # no charset part: percent-decoded ASCII
        return percent_decode(text).decode("ascii", "replace")
    return decode_text(percent_decode(m.group(2)), m.group(1) or "us-ascii")
