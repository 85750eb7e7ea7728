"""One message's content as it arrives: end of data, exact size, dot-unstuffing, bare LF, long
lines, and a capped copy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from mypy_extensions import i64

from sensor.smtp.limits import RFC_TEXT_LINE

_Scan = Callable[[bytes, bytes, int, bool], tuple[int, int, int, int, int, bool]]
try:  # the C scan (sensor/smtp/_scan.c), built beside the compiled modules
    from sensor.smtp import _scan

    _c_scan: _Scan | None = _scan.dot_content
except ImportError:  # pure-Python install: the two readings below
    _c_scan = None

# RFC 5321 4.1.1.4: end of mail data; the CRLF before the dot is content
_MARKER: Final = b"\r\n.\r\n"
_MARKER_OWN: Final = 3  # the marker's bytes that are not content: "." CR LF
_STUFFED: Final = b"\r\n.."  # RFC 5321 4.5.2: a line starting with "." is sent with an extra "."
_UNSTUFFED: Final = b"\r\n."
_CONTEXT: Final = 4  # bytes kept across calls: the marker's start before a split point
_LINE_START: Final = b"\r\n"  # content begins at a line start, as if preceded by CRLF
_CR: Final = 13
_LF: Final = 10
_DOT: Final = 46
TEXT_LINE_MAX: Final = RFC_TEXT_LINE - 1  # octets before the LF: 998 of text, then CR (4.5.3.1.6)

_COMPILED: Final = not __file__.endswith(".py")  # mypyc compiled this module (a C extension)
NATIVE_SCAN: Final = _c_scan is not None
"""Whether DATA content is read by the C scan (one memchr per line) rather than in Python."""


class MessageBody:
    """The content of one DATA (dot-stuffed) or BDAT (raw) transfer, seen chunk by chunk.

    ``size`` counts every content byte after unstuffing; only the first ``cap`` bytes are kept
    for the MIME walk (``truncated`` then), and a gap stops the copy (``broken``).  Chunks are
    kept as received and joined once, when the message is asked for.
    """

    __slots__ = (
        "_chunks", "_in_long", "_kept", "_run", "_tail", "bare_lf", "broken", "cap",
        "dot_stuffed", "long_lines", "native", "per_byte", "raw", "stuffed", "truncated",
    )  # fmt: skip

    def __init__(self, cap: int, dot_stuffed: bool) -> None:
        self._chunks: list[bytes] = []
        self._kept = 0  # bytes in _chunks
        self._tail = _LINE_START  # the last bytes seen (at most _CONTEXT): a split pattern's start
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
        self.per_byte = _COMPILED
        """Read DATA content with one loop over its bytes (fast compiled) or with bytes methods
        (fast interpreted); both give the same results."""
        self.native = NATIVE_SCAN
        """Read DATA content with the C scan instead (the same results again, several times
        faster than either): set when it is built."""

    @property
    def size(self) -> int:
        """Message bytes after dot-unstuffing."""
        return self.raw - self.stuffed

    def feed_dot(self, data: bytes) -> int:
        """DATA content in order, still dot-stuffed, up to the end-of-data marker.

        Returns the offset in ``data`` just past the marker, or -1 when no marker ends in
        ``data`` (every byte of it is content then).  The marker may begin in an earlier call;
        its dot and CR were counted as content there and are taken back.  Bytes after the
        marker are not looked at.
        """
        if self.native:
            end = self._scan_native(data)
        elif self.per_byte:
            end = self._scan_bytes(data)
        else:
            end = self._scan_counting(data)
        if end < 0:
            self.raw += len(data)
            self._keep(data)
            tail = self._tail
            self._tail = data[-_CONTEXT:] if len(data) >= _CONTEXT else (tail + data)[-_CONTEXT:]
            return -1
        content = end - _MARKER_OWN
        if content > 0:
            self.raw += content
            self._keep(data[:content])
        elif content < 0:
            self._take_back(-content)
        return end

    def add(self, chunk: bytes) -> None:
        """BDAT content bytes in order, as sent (no dot-stuffing, no marker)."""
        self.raw += len(chunk)
        self._keep(chunk)

    def gap(self) -> None:
        """Bytes of the content were lost: the copy ends here."""
        self.broken = True
        self._tail = b""  # no pattern straddles the hole
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

    # ----------------------------------------------------------------------------------------
    # the ways of reading dot-stuffed content: in C, one pass compiled, bytes methods interpreted

    def _scan_native(self, data: bytes) -> int:
        """``_scan_bytes`` in C, with the state it carries across calls."""
        scan = _c_scan
        if scan is None:  # not built: never chosen then (see ``native``)
            return self._scan_bytes(data)
        end, bare, stuffed, long, run, in_long = scan(data, self._tail, self._run, self._in_long)
        return self._counted(end, bare, stuffed, long, run, in_long)

    def _counted(
        self, end: int, bare: int, stuffed: int, long: int, run: int, in_long: bool
    ) -> int:
        """Keep what a scan of dot-stuffed content counted and, when no marker ended it, the
        unfinished line it leaves for the next call; return ``end``."""
        if end < 0:
            self._run = run
            self._in_long = in_long
        self.bare_lf += bare
        self.stuffed += stuffed
        self.long_lines += long
        return end

    def _scan_bytes(self, data: bytes) -> i64:
        """Count stuffed dots, bare LFs and long lines up to the marker in one pass over
        ``data``; return the offset past the marker or -1.  For the compiled module."""
        tail = self._tail
        n: i64 = len(data)
        bare: i64 = 0
        stuffed: i64 = 0
        long: i64 = 0
        last_lf: i64 = -1 - self._run  # where the last LF was, relative to data
        in_long = self._in_long
        end: i64 = -1
        i: i64 = 0
        while i < n:
            c: i64 = data[i]
            if c == _LF:
                if (data[i - 1] if i >= 1 else _before(tail, i - 1)) != _CR:
                    bare += 1
                elif (
                    (data[i - 2] if i >= 2 else _before(tail, i - 2)) == _DOT
                    and (data[i - 3] if i >= 3 else _before(tail, i - 3)) == _LF
                    and (data[i - 4] if i >= 4 else _before(tail, i - 4)) == _CR
                ):
                    end = i + 1
                    break
                if in_long:
                    in_long = False
                elif i - last_lf > TEXT_LINE_MAX + 1:  # more than TEXT_LINE_MAX octets before it
                    long += 1
                last_lf = i
            elif (
                c == _DOT
                and (data[i - 1] if i >= 1 else _before(tail, i - 1)) == _DOT
                and (data[i - 2] if i >= 2 else _before(tail, i - 2)) == _LF
                and (data[i - 3] if i >= 3 else _before(tail, i - 3)) == _CR
            ):
                stuffed += 1
            i += 1
        run: i64 = n - 1 - last_lf
        if end < 0 and run > TEXT_LINE_MAX and not in_long:  # counted once, before its LF
            long += 1
            in_long = True
        return self._counted(end, bare, stuffed, long, run, in_long)

    def _scan_counting(self, data: bytes) -> int:
        """``_scan_bytes`` with bytes methods (each a C loop): for the interpreted module."""
        tail = self._tail
        j = (tail + data[: len(_MARKER) - 1]).find(_MARKER)  # a marker begun in the tail
        if j >= 0:
            end = j + len(_MARKER) - len(tail)
        else:
            j = data.find(_MARKER)
            end = -1 if j < 0 else j + len(_MARKER)
        region = data if end < 0 else data[:end]
        if not region:
            return end
        crlf = region.count(b"\r\n")
        if region[0] == _LF and tail[-1:] == b"\r":
            crlf += 1
        self.bare_lf += region.count(b"\n") - crlf
        self.stuffed += region.count(_STUFFED) + (tail[-3:] + region[:3]).count(_STUFFED)
        self._scan_lines(region, len(region))
        return end

    def _scan_lines(self, chunk: bytes, n: int) -> None:
        """Count the lines longer than TEXT_LINE_MAX octets before their LF, across chunks.

        One find() per line, forward: each looks at the line's own bytes only, so a chunk is
        read once (a window search backwards from the longest allowed line end read up to
        TEXT_LINE_MAX octets per short line).
        """
        start = 0
        run = self._run
        in_long = self._in_long
        long = 0
        while True:
            i = chunk.find(b"\n", start)
            if i < 0:
                run += n - start
                if run > TEXT_LINE_MAX and not in_long:  # counted once, before its LF arrives
                    long += 1
                    in_long = True
                break
            if in_long:  # the rest of a line already counted
                in_long = False
            elif run + i - start > TEXT_LINE_MAX:
                long += 1
            run = 0
            start = i + 1
        self._run = run
        self._in_long = in_long
        self.long_lines += long

    # ----------------------------------------------------------------------------------------
    # the copy

    def _keep(self, chunk: bytes) -> None:
        if self.broken or self.truncated or not chunk:
            return
        n = len(chunk)
        room = self.cap - self._kept
        if n > room:
            if room:
                self._chunks.append(chunk[:room])
                self._kept += room
            self.truncated = True
        else:
            self._chunks.append(chunk)
            self._kept += n

    def _take_back(self, k: int) -> None:
        """The last ``k`` content bytes were the start of the marker: not content after all."""
        self.raw -= k
        excess = self._kept - self.raw  # never positive after a gap: the marker follows it
        chunks = self._chunks
        while excess > 0:
            last = chunks[-1]
            if len(last) > excess:
                chunks[-1] = last[:-excess]
                self._kept -= excess
                break
            chunks.pop()
            self._kept -= len(last)
            excess -= len(last)
        if not self.broken:
            self.truncated = self.raw > self.cap

    def _unstuff(self, copy: bytes) -> bytes:
        if not self.dot_stuffed or not self.stuffed:  # none in the content, so none in the copy
            return copy
        if copy.startswith(b".."):
            copy = copy[1:]
        # split and join: the same bytes as copy.replace(_STUFFED, b"\r\n.") in one search
        # pass instead of two (a count, then the copy): 0.6x the time on a text message
        return _UNSTUFFED.join(copy.split(_STUFFED))


def _before(tail: bytes, j: i64) -> i64:
    """The byte ``-j`` places before the current call's data (from the tail), or -1."""
    k: i64 = len(tail) + j
    return tail[k] if k >= 0 else -1
