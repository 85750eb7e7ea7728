"""Bounded line framing of one direction of an SMTP stream, plus raw DATA/BDAT content takes."""

from __future__ import annotations

_CRLF_DOT_CRLF = b"\r\n.\r\n"  # RFC 5321 4.1.1.4: end of mail data
_DOT_CRLF = b".\r\n"  # the terminator when the message is empty (it follows DATA's 354 directly)
_CRLF_DOT = b"\r\n."  # a line starting with ".": the marker or a dot-stuffed one (RFC 5321 4.5.2)
_TERMINATOR_TAIL = 4  # bytes kept back while scanning content: a split terminator's longest prefix


class LineBuffer:
    """Buffers one direction's bytes and hands out lines (CRLF or bare LF) and raw content.

    The buffer holds at most ``max_line`` bytes of an unfinished line plus the payload of the
    current ``feed`` call: a longer line is cut at ``max_line`` (counted in ``truncated``) and the
    rest of it is discarded up to the next LF.  ``bare_lf`` and ``bare_cr`` count lines ended by
    LF alone and lines containing a CR that is not part of CRLF.
    """

    __slots__ = ("_buf", "_discard", "_pos", "_scan", "bare_cr", "bare_lf", "max_line", "truncated")

    def __init__(self, max_line: int) -> None:
        self._buf = b""  # immutable: a payload is kept as is while its lines are read
        self._pos = 0  # start of the unread bytes in _buf
        self._scan = 0  # bytes before this offset are known to hold no LF
        self._discard = False  # dropping the tail of a truncated line up to its LF
        self.max_line = max_line
        self.bare_lf = 0
        self.bare_cr = 0
        self.truncated = 0

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
        if data[-2:] != b"\r\n":
            return None
        lines = data[:-2].split(b"\r\n")
        n = len(lines)
        if data.count(b"\n") != n or data.count(b"\r") != n:  # a bare LF or CR somewhere
            return None
        if (len(lines[0]) if n == 1 else max(map(len, lines))) > self.max_line:
            return None
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

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` raw bytes (BDAT chunk content)."""
        pos = self._pos
        chunk = self._buf[pos : pos + n]
        self._pos = pos + len(chunk)
        return chunk

    def take_data(self, at_start: bool) -> tuple[bytes, bool]:
        """Remove DATA content up to the end-of-data marker; return (content, marker_seen).

        Content includes the CRLF before the final dot and is still dot-stuffed.  Until the
        marker is seen, the last four bytes stay buffered in case they begin it.  ``at_start``
        says no content byte was taken yet, where a bare ``.CRLF`` ends an empty message.
        """
        buf = self._buf
        pos = self._pos
        if at_start:
            head = buf[pos : pos + 3]
            if head == _DOT_CRLF:
                self._pos = pos + 3
                return b"", True
            if _DOT_CRLF.startswith(head):
                return b"", False
        i = buf.find(_CRLF_DOT_CRLF, pos)
        if i >= 0:
            chunk = buf[pos : i + 2]
            self._pos = i + 5
            return chunk, True
        end = len(buf) - _TERMINATOR_TAIL
        if end <= pos:
            return b"", False
        chunk = buf[pos:end]
        self._pos = end
        return chunk, False

    def feed_content(self, data: bytes) -> tuple[bytes, bool, int]:
        """``feed(data)`` then ``take_data(False)``, without copying ``data`` through the buffer.

        Returns (content, marker_seen, plain_from): when ``plain_from`` >= 0 the content holds
        no ``CRLF "."`` starting at or after that offset (no dot-stuffing to look for there).
        The common case inside DATA content: at most the held-back tail is buffered, so the
        marker is searched in that tail joined to the start of ``data``, then in ``data``.
        """
        buf = self._buf
        pos = self._pos
        held_n = len(buf) - pos
        if held_n > _TERMINATOR_TAIL or self._discard:
            self.feed(data)
            chunk, ended = self.take_data(False)
            return chunk, ended, -1
        held = buf[pos:] if held_n else b""
        if held:
            j = (held + data[:_TERMINATOR_TAIL]).find(_CRLF_DOT_CRLF)
            if j >= 0:  # the marker starts in the held bytes (it cannot end past data[:4])
                end = j + 2
                chunk = held[:end] if end <= held_n else held + data[: end - held_n]
                self._buf = data[j + 5 - held_n :]
                self._pos = self._scan = 0
                return chunk, True, -1
        i = data.find(_CRLF_DOT)  # one scan rules out both the marker and dot-stuffing
        if i >= 0:
            i = data.find(_CRLF_DOT_CRLF, i)
            if i >= 0:
                self._buf = data[i + 5 :]
                self._pos = self._scan = 0
                return (held + data[: i + 2] if held else data[: i + 2]), True, -1
            plain = -1
        else:
            plain = held_n
        n = len(data)
        if n >= _TERMINATOR_TAIL:
            self._buf = data[n - _TERMINATOR_TAIL :]
            self._pos = self._scan = 0
            if n == _TERMINATOR_TAIL:
                return held, False, plain
            chunk = held + data[:-_TERMINATOR_TAIL] if held else data[:-_TERMINATOR_TAIL]
            return chunk, False, plain
        joined = held + data
        cut = max(0, len(joined) - _TERMINATOR_TAIL)
        self._keep(joined, cut)
        return joined[:cut], False, -1

    def _keep(self, data: bytes, start: int) -> None:
        """Make ``data[start:]`` the whole buffer."""
        self._buf = data[start:]
        self._pos = self._scan = 0

    def drain(self) -> int:
        """Drop everything buffered (TLS took over, or a gap broke the line); return its size."""
        n = len(self._buf) - self._pos
        self._buf = b""
        self._pos = self._scan = 0
        self._discard = False
        return n
