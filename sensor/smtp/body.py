"""One message's content as it arrives: exact size, dot-unstuffing, bare LF, a capped copy."""

from __future__ import annotations

_STUFFED = b"\r\n.."  # RFC 5321 4.5.2: a line starting with "." is sent with an extra "."
_CRLF = b"\r\n"
_LINE_START = b"\r\n"  # content begins at a line start, as if preceded by CRLF


def _count_across(tail: bytes, chunk: bytes, pattern: bytes) -> int:
    """Occurrences of ``pattern`` in ``chunk`` or straddling ``tail`` (< len(pattern)) + chunk."""
    head = chunk[: len(pattern) - 1]
    return chunk.count(pattern) + (tail + head).count(pattern) - tail.count(pattern)


class MessageBody:
    """The content of one DATA (dot-stuffed) or BDAT (raw) transfer, seen chunk by chunk.

    ``size`` counts every byte seen after unstuffing; only the first ``cap`` bytes are copied for
    the MIME walk (``truncated`` then), and a gap stops the copy (``broken``).
    """

    __slots__ = ("_copy", "_tail", "bare_lf", "broken", "cap", "dot_stuffed", "raw", "stuffed",
                 "truncated")  # fmt: skip

    def __init__(self, cap: int, dot_stuffed: bool) -> None:
        self._copy = bytearray()
        self._tail = _LINE_START
        self.cap = cap
        self.dot_stuffed = dot_stuffed
        self.raw = 0
        self.stuffed = 0
        self.bare_lf = 0
        self.truncated = False
        self.broken = False

    @property
    def size(self) -> int:
        """Message bytes after dot-unstuffing."""
        return self.raw - self.stuffed

    def add(self, chunk: bytes) -> None:
        """Content bytes in order (DATA still dot-stuffed, BDAT as sent)."""
        if not chunk:
            return
        self.raw += len(chunk)
        if self.dot_stuffed:
            tail = self._tail
            self.stuffed += _count_across(tail, chunk, _STUFFED)
            self.bare_lf += chunk.count(b"\n") - _count_across(tail, chunk, _CRLF)
            self._tail = (tail + chunk[-3:])[-3:]
        if self.broken or self.truncated:
            return
        room = self.cap - len(self._copy)
        if len(chunk) > room:
            self._copy += chunk[:room]
            self.truncated = True
        else:
            self._copy += chunk

    def gap(self) -> None:
        """Bytes of the content were lost: the copy ends here."""
        self.broken = True
        self._tail = b""

    def message(self) -> bytes:
        """The copied message, dot-unstuffed."""
        copy = bytes(self._copy)
        if not self.dot_stuffed:
            return copy
        if copy.startswith(b".."):
            copy = copy[1:]
        return copy.replace(_STUFFED, b"\r\n.")
