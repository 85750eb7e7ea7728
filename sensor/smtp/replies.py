"""Server reply assembly (RFC 5321 4.2), enhanced status codes (RFC 3463) and EHLO extensions."""

from __future__ import annotations

from typing import Final

# RFC 5321 4.1.1.1: "250-keyword params" lines after the greeting line of an EHLO reply.
STARTTLS_KEYWORD: Final = "STARTTLS"  # RFC 3207 4
_MASK_CHAR: Final = "X"  # middleboxes overwrite STARTTLS with X's (Cisco PIX/ASA "XXXXXXXA")


class Reply:
    """One complete (possibly multi-line) server reply (a plain class: one is made per reply)."""

    __slots__ = ("code", "enhanced", "lines", "malformed")

    def __init__(
        self, code: int, lines: list[str] | None = None, enhanced: str | None = None
    ) -> None:
        self.code = code
        self.lines: list[str] = [] if lines is None else lines
        """Text after "ddd[ -]" of each line, at most max_reply_lines."""
        self.enhanced = enhanced
        self.malformed = False

    @property
    def last_text(self) -> str:
        """Text of the last line, as Zeek's last_reply shows it."""
        return self.lines[-1] if self.lines else ""

    def zeek_form(self) -> str:
        """``"250 2.0.0 Ok"``: the code and the last line's text."""
        return f"{self.code} {self.last_text}"


def parse_reply_line(line: bytes) -> tuple[int, bool, bytes] | None:
    """Split ``ddd[ -]text`` into (code, is_last_line, text); None if it is not a reply line."""
    digits = line[:3]
    if len(digits) < 3 or not digits.isdigit():
        return None
    sep = line[3:4]
    if sep == b" " or not sep:
        return int(digits), True, line[4:]
    if sep == b"-":
        return int(digits), False, line[4:]
    return None


# RFC 3463 2: the class digit of an enhanced code, and the reply classes that may carry one.
_ENHANCED_CLASS: Final = {2: "2.", 4: "4.", 5: "5."}


def parse_enhanced(code: int, text: str) -> str | None:
    """The RFC 3463 2 ``class.subject.detail`` code at the start of ``text`` if it fits ``code``."""
    prefix = _ENHANCED_CLASS.get(code // 100)
    if prefix is None or not text.startswith(prefix):
        return None
    word = text.partition(" ")[0]
    parts = word.split(".")
    if len(parts) != 3:
        return None
    subject, detail = parts[1], parts[2]
    if 0 < len(subject) <= 3 and subject.isdigit() and 0 < len(detail) <= 3 and detail.isdigit():
        return word
    return None


REPLY_MEMO_ENTRIES: Final = 4096  # distinct one-line replies remembered ("250 2.1.5 Ok" repeats)
REPLY_MEMO_LINE: Final = 128  # longer reply lines are parsed every time
_reply_memo: Final[dict[bytes, tuple[int, str, str | None]]] = {}


def parse_single(line: bytes) -> tuple[int, str, str | None]:
    """(code, text, enhanced code) of a line known to be a reply line (``ddd`` then " " or -)."""
    hit = _reply_memo.get(line)
    if hit is not None:
        return hit
    code = int(line[:3])
    text = line[4:].decode("utf-8", "replace")
    parsed = (code, text, parse_enhanced(code, text))
    if len(line) <= REPLY_MEMO_LINE:
        if len(_reply_memo) >= REPLY_MEMO_ENTRIES:
            _reply_memo.clear()
        _reply_memo[line] = parsed
    return parsed


class ReplyAssembler:
    """Gathers reply lines until the last line (``ddd text``) of a reply arrives."""

    __slots__ = ("current", "max_lines")

    def __init__(self, max_lines: int) -> None:
        self.current: Reply | None = None  # the multi-line reply being gathered
        self.max_lines = max_lines

    @property
    def in_progress(self) -> bool:
        """True while a multi-line reply has started and not ended."""
        return self.current is not None

    def add(self, code: int, last: bool, raw_text: bytes) -> Reply | None:
        """Add one parsed reply line; return the reply when this line completes it."""
        text = raw_text.decode("utf-8", "replace")
        cur = self.current
        if cur is None:
            cur = Reply(code, [], parse_enhanced(code, text))
        elif cur.code != code:
            cur.malformed = True
            cur.code = code
        if len(cur.lines) < self.max_lines:
            cur.lines.append(text)
        if last:
            self.current = None
            return cur
        self.current = cur
        return None

    def reset(self) -> None:
        """Drop a partial reply (after a gap)."""
        self.current = None


EHLO_MEMO_ENTRIES: Final = 1024  # distinct EHLO keyword lists remembered (one per server, mostly)
EHLO_MEMO_CHARS: Final = 2048  # longer keyword lists are parsed every time
_ehlo_memo: Final[dict[tuple[str, ...], tuple[tuple[str, ...], bool, frozenset[str]]]] = {}


def ehlo_keywords(reply: Reply) -> tuple[tuple[str, ...], bool, frozenset[str]]:
    """``ehlo_extensions`` as a tuple, plus the set of keywords; remembered for frequent replies."""
    key = tuple(reply.lines[1:])
    hit = _ehlo_memo.get(key)
    if hit is not None:
        return hit
    exts, stripped = ehlo_extensions(reply)
    found = (tuple(exts), stripped, frozenset(e.partition(" ")[0] for e in exts))
    if sum(map(len, key)) <= EHLO_MEMO_CHARS:
        if len(_ehlo_memo) >= EHLO_MEMO_ENTRIES:
            _ehlo_memo.clear()
        _ehlo_memo[key] = found
    return found


def ehlo_extensions(reply: Reply) -> tuple[list[str], bool]:
    """Extensions advertised by an EHLO reply (``"AUTH PLAIN LOGIN"``...) and a stripped flag.

    The first line is the server's greeting, the others keyword lines (RFC 5321 4.1.1.1); the
    flag is True when a keyword looks like STARTTLS masked by a middlebox.
    """
    exts: list[str] = []
    stripped = False
    for line in reply.lines[1:]:
        words = line.split()
        if not words:
            continue
        keyword = words[0].upper()
        if (
            len(keyword) == len(STARTTLS_KEYWORD)
            and keyword.count(_MASK_CHAR) >= len(STARTTLS_KEYWORD) - 1
        ):
            stripped = True
        words[0] = keyword
        exts.append(" ".join(words))
    return exts, stripped
