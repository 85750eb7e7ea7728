"""One message's content as it arrives: exact size, dot-unstuffing, bare LF, a capped copy."""

from __future__ import annotations

from sensor.smtp.limits import RFC_TEXT_LINE

_STUFFED = b"\r\n.."  # RFC 5321 4.5.2: a line starting with "." is sent with an extra "."
_CRLF = b"\r\n"
_CR = b"\r"
_LF = 0x0A  # "\n" as an int, the type of an indexed byte
_LINE_START = b"\r\n"  # content begins at a line start, as if preceded by CRLF
TEXT_LINE_MAX = RFC_TEXT_LINE - 1  # octets before the LF: 998 of text, then CR (RFC 5321 4.5.3.1.6)


class MessageBody:
    """The content of one DATA (dot-stuffed) or BDAT (raw) transfer, seen chunk by chunk.

    ``size`` counts every byte seen after unstuffing; only the first ``cap`` bytes are kept for
    the MIME walk (``truncated`` then), and a gap stops the copy (``broken``).  Chunks are kept
    as received and joined once, when the message is asked for.
    """

    __slots__ = ("_chunks", "_in_long", "_kept", "_run", "_tail", "bare_lf", "broken", "cap",
                 "dot_stuffed", "long_lines", "raw", "stuffed", "truncated")  # fmt: skip

    def __init__(self, cap: int, dot_stuffed: bool) -> None:
        self._chunks: list[bytes] = []
        self._kept = 0  # bytes in _chunks
        self._tail = _LINE_START  # last bytes of the content (at most 3): a split pattern's start
        self.cap = cap
        self.dot_stuffed = dot_stuffed
        self.raw = 0
        self.stuffed = 0
        self.bare_lf = 0
        self.long_lines = 0  # text lines over RFC 5321's 1000 octets (DATA content only)
        self._run = 0  # octets of the unfinished last line seen so far
        self._in_long = False  # that line is already counted in long_lines
        self.truncated = False
        self.broken = False

    @property
    def size(self) -> int:
        """Message bytes after dot-unstuffing."""
        return self.raw - self.stuffed

    def add(self, chunk: bytes, plain_from: int = -1) -> None:
        """Content bytes in order (DATA still dot-stuffed, BDAT as sent).

        ``plain_from`` >= 0 promises that no ``CRLF "."`` starts at or after that offset.
        """
        n = len(chunk)
        if not n:
            return
        self.raw += n
        if self.dot_stuffed:
            tail = self._tail
            # Patterns straddling the previous chunk: the tail is shorter than _STUFFED, so
            # every match in tail + head involves the head; CRLF straddles as "\r" | "\n".
            if plain_from < 0:
                self.stuffed += chunk.count(_STUFFED) + (tail + chunk[:3]).count(_STUFFED)
            else:
                self.stuffed += (tail + chunk[: plain_from + 3]).count(_STUFFED)
            crlf = chunk.count(_CRLF)
            if chunk[0] == _LF and tail[-1:] == _CR:
                crlf += 1
            self.bare_lf += chunk.count(b"\n") - crlf
            self._tail = chunk[-3:] if n >= 3 else (tail + chunk)[-3:]
            self._scan_lines(chunk, n)
        if self.broken or self.truncated:
            return
        room = self.cap - self._kept
        if n > room:
            if room:
                self._chunks.append(chunk[:room])
                self._kept += room
            self.truncated = True
        else:
            self._chunks.append(chunk)
            self._kept += n

    def _scan_lines(self, chunk: bytes, n: int) -> None:
        """Count the lines longer than TEXT_LINE_MAX octets before their LF, across chunks.

        Each step looks for the last LF within the octets the current line may still take:
        found, every line up to it is short; not found, the line is over the limit.
        """
        start = 0
        if self._in_long:  # the rest of a line already counted
            i = chunk.find(b"\n")
            if i < 0:
                return
            self._in_long = False
            self._run = 0
            start = i + 1
        run = self._run
        while True:
            window_end = start + TEXT_LINE_MAX - run + 1  # the LF must come before this offset
            if window_end > n:  # the chunk ends before the line can be too long
                i = chunk.rfind(b"\n", start)
                self._run = run + n - start if i < 0 else n - i - 1
                return
            i = chunk.rfind(b"\n", start, window_end)
            if i >= 0:
                start = i + 1
                run = 0
                continue
            self.long_lines += 1
            i = chunk.find(b"\n", window_end)
            if i < 0:
                self._in_long = True
                return
            start = i + 1
            run = 0

    def gap(self) -> None:
        """Bytes of the content were lost: the copy ends here."""
        self.broken = True
        self._tail = b""
        self._run = 0  # line lengths restart after the hole (a line cut by it is not judged)
        self._in_long = False

    def message(self) -> bytes:
        """The copied message, dot-unstuffed."""
        return self._unstuff(b"".join(self._chunks))

    def head(self, n: int) -> tuple[bytes, bool]:
        """The start of ``message()`` (about ``n`` bytes or more), and whether it is all of it."""
        chunks = self._chunks
        got = k = 0
        while k < len(chunks) and got < n:
            got += len(chunks[k])
            k += 1
        if k == len(chunks):
            return self.message(), True
        # Unstuffing a prefix of the copy gives a prefix of the unstuffed copy: a "\r\n.." cut
        # at the end leaves its first bytes, which unstuffing the whole keeps too.
        return self._unstuff(b"".join(chunks[:k])), False

    def _unstuff(self, copy: bytes) -> bytes:
        if not self.dot_stuffed or not self.stuffed:  # none in the content, so none in the copy
            return copy
        if copy.startswith(b".."):
            copy = copy[1:]
        return copy.replace(_STUFFED, b"\r\n.")
