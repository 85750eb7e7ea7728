"""Bounded line framing of one direction of an SMTP stream, plus raw DATA/BDAT content takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from mypy_extensions import i64

try:  # the C loop (sensor/smtp/_scan.c), built beside the compiled modules
    from sensor.smtp import _scan

    _c_skip: Callable[[bytes, int, int, int], int] | None = _scan.skip_text
except ImportError:  # pure-Python install: resync pops every line
    _c_skip = None

_CR: Final = 13
_LF: Final = 10
_COMPILED: Final = not __file__.endswith(".py")  # mypyc compiled this module (a C extension)


class LineBuffer:
    """Buffers one direction's bytes and hands out lines (CRLF or bare LF) and raw content.

    The buffer holds at most ``max_line`` bytes of an unfinished line plus the payload of the
    current ``feed`` call: a longer line is cut at ``max_line`` (counted in ``truncated``) and the
    rest of it is discarded up to the next LF.  ``bare_lf`` and ``bare_cr`` count lines ended by
    LF alone and lines containing a CR that is not part of CRLF.
    """

    __slots__ = (
        "_buf", "_discard", "_marks", "_pos", "_scan", "bare_cr", "bare_lf", "max_line",
        "per_byte", "truncated",
    )  # fmt: skip

    def __init__(self, max_line: int) -> None:
        self._buf = b""  # immutable: a payload is kept as is while its lines are read
        self._pos = 0  # start of the unread bytes in _buf
        self._scan = 0  # bytes before this offset are known to hold no LF
        self._discard = False  # dropping the tail of a truncated line up to its LF
        self.max_line = max_line
        self.bare_lf = 0
        self.bare_cr = 0
        self.truncated = 0
        self._marks = (0, 0, 0)  # bare_lf, bare_cr, truncated at the last checkpoint()
        self.per_byte = _COMPILED
        """Split whole lines with one loop over the bytes (fast compiled) or with bytes
        methods (fast interpreted); both give the same lines."""

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append bytes received in order."""
        if self._discard:
            i = data.find(b"\n")
            if i < 0:
                return
            self._discard = False
            data = data[i + 1 :]
        if type(data) is not bytes:  # a mutable buffer must not be kept by reference
            data = bytes(data)
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):  # nothing unread: the payload becomes the buffer, uncopied
            self._buf = data
            self._pos = self._scan = 0
            return
        self._buf = buf[pos:] + data
        self._scan = max(0, self._scan - pos)
        self._pos = 0

    def whole_lines(self, data: bytes) -> list[bytes] | None:
        """The lines of ``data`` if nothing is buffered and ``data`` is only whole CRLF lines.

        Otherwise None and nothing is consumed.  The lines are what ``feed(data)`` then
        ``pop_line`` until None would return, with no bare CR or LF and none truncated.
        """
        if self._pos < len(self._buf) or self._discard or type(data) is not bytes:
            return None
        if self.per_byte:
            return self._split_bytes(data)
        if data[-2:] != b"\r\n":
            return None
        lines = data[:-2].split(b"\r\n")
        n = len(lines)
        if data.count(b"\n") != n or data.count(b"\r") != n:  # a bare LF or CR somewhere
            return None
        if (len(lines[0]) if n == 1 else max(map(len, lines))) > self.max_line:
            return None
        return lines

    def _split_bytes(self, data: bytes) -> list[bytes] | None:
        """``whole_lines`` in one pass over the bytes, for the compiled module."""
        n: i64 = len(data)
        if n < 2 or data[n - 1] != _LF or data[n - 2] != _CR:
            return None
        limit: i64 = self.max_line
        lines: list[bytes] = []
        start: i64 = 0
        i: i64 = 0
        while i < n:
            c: i64 = data[i]
            if c == _CR:
                if data[i + 1] != _LF or i - start > limit:  # a bare CR, or a line too long
                    return None  # (i + 1 < n: the last byte is an LF)
                lines.append(data[start:i])
                i += 2
                start = i
            elif c == _LF:  # a bare LF
                return None
            else:
                i += 1
        return lines

    def pop_line(self) -> bytes | None:
        """Return the next complete line without its terminator, or None if none is buffered."""
        buf = self._buf
        pos = self._pos
        scan = self._scan
        i = buf.find(b"\n", scan if scan > pos else pos)
        if i < 0:
            if len(buf) - pos > self.max_line:
                line = buf[pos : pos + self.max_line]
                self.truncated += 1
                self._discard = True
                self._buf = b""
                self._pos = self._scan = 0
                return line
            self._scan = len(buf)
            return None
        self._pos = self._scan = i + 1
        if i > pos and buf[i - 1] == 13:  # CR LF
            end = i - 1
        else:
            end = i
            self.bare_lf += 1
        if end - pos > self.max_line:
            self.truncated += 1
            end = pos + self.max_line
        line = buf[pos:end]
        if b"\r" in line:
            self.bare_cr += 1
        return line

    def skip_text(self, word_lengths: int) -> None:
        """Pass over the complete lines that cannot end a resync: what ``pop_line`` would
        return one by one for the parser to reject and ``rollback`` (so no counter moves).

        A line is passed over unless it is incomplete, longer than ``max_line``, ".", the start
        of a TLS handshake record, or its first word's length has its bit set in
        ``word_lengths``; those ``pop_line`` returns next.  Without the C module nothing is
        passed over, and ``pop_line`` returns every line, with the same outcome.
        """
        skip = _c_skip
        if skip is None or self._discard:
            return
        pos = skip(self._buf, self._pos, self.max_line, word_lengths)
        if pos > self._pos:
            self._pos = pos
            if self._scan < pos:
                self._scan = pos

    def peek(self, offset: int, n: int) -> bytes:
        """Up to ``n`` unread bytes from ``offset`` on, left in the buffer."""
        start = self._pos + offset
        return self._buf[start : start + n]

    def checkpoint(self) -> None:
        """Remember the line counters (bare LF, bare CR, truncated) as they are now."""
        self._marks = (self.bare_lf, self.bare_cr, self.truncated)

    def rollback(self) -> None:
        """Forget what lines counted since ``checkpoint``: they were skipped, not parsed."""
        self.bare_lf, self.bare_cr, self.truncated = self._marks

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` raw bytes (BDAT chunk content)."""
        pos = self._pos
        chunk = self._buf[pos : pos + n]
        self._pos = pos + len(chunk)
        return chunk

    def take_all(self) -> bytes:
        """Remove and return every unread byte (DATA content goes to the message body)."""
        rest = self._buf[self._pos :]
        self._buf = b""
        self._pos = self._scan = 0
        return rest

    def drain(self) -> int:
        """Drop everything buffered (TLS took over, or a gap broke the line); return its size."""
        n = len(self._buf) - self._pos
        self._buf = b""
        self._pos = self._scan = 0
        self._discard = False
        return n
