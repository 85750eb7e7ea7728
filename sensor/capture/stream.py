"""Captures read as streams (stdin, FIFOs): opened without blocking, never waited on for good."""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import select
import stat
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterator

from sensor.capture.common import (
    GZIP_MAGIC,
    PCAPNG_MIN_SHB_LEN,
    Cut,
    FileFormat,
    Frame,
    Streamable,
)
from sensor.capture.linktypes import to_dlt
from sensor.capture.pcapfile import read_pcap
from sensor.capture.pcapng import read_pcapng
from sensor.records import CaptureStats

_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError

STDIN = "-"
"""The input name that means standard input."""
STREAM_WAIT_S = 10.0
"""Longest wait (seconds) for the first bytes of the streams (stdin, FIFOs) among the inputs;
all streams share one wait. A stream with nothing by then is reported and skipped."""
STREAM_POLL_S = 0.2
"""Longest a read of a stream blocks before the stop event is checked again."""
STREAM_SMALL_READ = 4096
"""Reads of a stream up to this size wait for all their bytes (headers); larger reads return
what has arrived, so frames are handed on as a live writer sends them."""


Classifier = Callable[[bytes, bool, str], "tuple[FileFormat, bool] | str"]
"""(first bytes, gzip-compressed, "file" or "stream") -> (format, compressed) or why not."""
Probed = tuple[float, bool, FileFormat, bool, "Stream"]
"""(first packet time, first record late, format, compressed, the opened stream)."""


def is_stream(path: str) -> bool:
    """True for inputs that can only be read once, front to back: "-" (stdin) and FIFOs."""
    if path == STDIN:
        return True
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


class StreamStopped(Exception):
    """The stop event was set while a stream was being read (not an OSError: never counted as
    a read error or truncation)."""


class Stream:
    """A pipe, FIFO or stdin read without ever blocking the run for good.

    Each read polls with a timeout; it raises StreamStopped once the stop event is set, and
    returns b"" when, while probing, the deadline has passed. Bytes read while probing are
    recorded and replayed when the stream is read for real.
    """

    __slots__ = (
        "_buf",
        "_poll",
        "_pos",
        "_recording",
        "deadline",
        "eof",
        "fd",
        "name",
        "own_fd",
        "stop",
        "timed_out",
    )

    def __init__(self, name: str, fd: int, own_fd: bool, stop: threading.Event | None) -> None:
        self.name = name
        self.fd = fd
        self.own_fd = own_fd
        self.stop = stop
        self.deadline: float | None = None
        self.timed_out = False
        self.eof = False
        self._buf = bytearray()
        self._pos = 0
        self._recording = True
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def rewind(self) -> None:
        """Read again from the first byte (only while recording)."""
        self._pos = 0

    def replay(self) -> None:
        """End the probe: the recorded bytes come first, then the rest, with no deadline."""
        self._pos = 0
        self._recording = False
        self.deadline = None
        self.timed_out = False

    def ready(self) -> bool:
        """True when a read would return at once."""
        if self._pos < len(self._buf) or self.eof:
            return True
        return bool(self._poll.poll(0))

    def read(self, n: int = -1, /) -> bytes:
        """Up to n bytes: at least one unless the stream ended, was stopped or timed out."""
        if n < 0:
            n = STREAM_SMALL_READ
        if self._pos < len(self._buf):
            out = bytes(self._buf[self._pos : self._pos + n])
            self._pos += len(out)
            if not self._recording and self._pos >= len(self._buf):
                self._buf = bytearray()
                self._pos = 0
            return out
        data = self._fetch(n)
        if self._recording and data:
            self._buf += data
            self._pos += len(data)
        return data

    read1 = read

    def seek(self, n: int, /) -> int:
        """Streams cannot seek (gzip only asks when told to rewind, which we never do)."""
        raise OSError("a stream cannot seek")

    def _fetch(self, n: int) -> bytes:
        while not self.eof:
            if self.stop is not None and self.stop.is_set():
                raise StreamStopped
            wait = STREAM_POLL_S
            left = math.inf
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                wait = max(0.0, min(wait, left))
            if not self._poll.poll(wait * 1000):
                if left <= wait:
                    self.timed_out = True
                    return b""
                continue
            try:
                data = os.read(self.fd, n)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:  # the writer closed its end (or never came and went)
                self.eof = True
            return data
        return b""

    def close(self) -> None:
        """Close the descriptor if this stream opened it."""
        if self.own_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class StreamReader:
    """Reads of a stream for the capture readers: small reads are filled completely, large ones
    return what has arrived; a read error ends the stream (counted as truncation by the caller)."""

    __slots__ = ("_fh", "_raw", "error", "failed", "got")

    def __init__(self, raw: Stream, fh: Streamable) -> None:
        self._raw = raw
        self._fh = fh
        self.failed = False
        self.got = 0  # bytes handed to the reader
        self.error = ""  # what ended the stream early

    def read(self, n: int, /) -> bytes:
        """Up to n bytes (all n for n <= STREAM_SMALL_READ unless the stream ends)."""
        if self.failed:
            return b""
        parts: list[bytes] = []
        got = 0
        try:
            while got < n:
                if got and n > STREAM_SMALL_READ and not self._raw.ready():
                    break
                part = self._fh.read1(n - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except _READ_ERRORS as exc:
            self.failed = True
            self.error = str(exc) or type(exc).__name__
        self.got += got
        return b"".join(parts)


def open_stream(path: str, stop: threading.Event | None) -> Stream | str:
    """Open stdin or a FIFO for reading without blocking, or say why not."""
    if path == STDIN:
        try:
            os.fstat(0)
        except OSError:
            return "standard input is closed"
        if os.isatty(0):
            return "standard input is a terminal, not a capture stream"
        return Stream(path, 0, False, stop)
    try:  # O_NONBLOCK: opening a FIFO would otherwise wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return Stream(path, fd, True, stop)


def _layers(raw: Stream, compressed: bool) -> tuple[StreamReader, gzip.GzipFile | None]:
    gz = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else None
    return StreamReader(raw, gz if gz is not None else raw), gz


def probe_stream(
    path: str, deadline: float, wait: float, stop: threading.Event | None, classify: Classifier
) -> Probed | str:
    """Open a stream and read its header and first record (kept for replay) by `deadline`.

    `classify` tells the format from the first PCAPNG_MIN_SHB_LEN bytes (or why they are not a
    capture's). Returns the first packet's time (+inf if none), whether that record was late
    (not there by the deadline), the format, compression and the opened stream; or why not.
    """
    raw = open_stream(path, stop)
    if isinstance(raw, str):
        return raw
    raw.deadline = deadline
    try:
        return _probe_opened(raw, path, wait, classify)
    except StreamStopped:
        raw.close()
        return "stopped by a signal before its first packet"


def _probe_opened(raw: Stream, path: str, wait: float, classify: Classifier) -> Probed | str:
    what = "standard input" if path == STDIN else "FIFO"
    head = StreamReader(raw, raw).read(PCAPNG_MIN_SHB_LEN)
    if not head and not raw.eof:
        raw.close()
        return f"no data within {wait:g} s (no writer?)"
    compressed = head[:2] == GZIP_MAGIC
    if compressed:
        raw.rewind()
        reader, _gz = _layers(raw, True)
        head = reader.read(PCAPNG_MIN_SHB_LEN)
        if reader.failed and not raw.timed_out:
            raw.close()
            return f"corrupt gzip stream on {what}"
    probed = classify(head, compressed, "stream")
    if isinstance(probed, str):
        raw.close()
        return f"no complete capture header within {wait:g} s" if raw.timed_out else probed
    fmt = probed[0]
    raw.rewind()
    reader, _gz = _layers(raw, compressed)
    first = next(_read_frames(reader, fmt, CaptureStats(), Cut()), None)
    late = first is None and raw.timed_out
    raw.replay()
    return (first[0] if first is not None else math.inf, late, fmt, compressed, raw)


def _read_frames(
    reader: StreamReader, fmt: FileFormat, stats: CaptureStats, cut: Cut
) -> Iterator[Frame]:
    read = read_pcap if fmt is FileFormat.PCAP else read_pcapng
    for ts, linktype, data in read(reader, stats, cut=cut):
        yield (ts, to_dlt(linktype), data)


def stream_frames(
    raw: Stream, fmt: FileFormat, compressed: bool, stats: CaptureStats
) -> Generator[Frame, None, None]:
    """Every frame of a stream, from its recorded first bytes on; read errors count as
    truncation and a stream not read to its end as records is named in stats.truncated_files;
    the stream is closed at the end."""
    try:
        reader, gz = _layers(raw, compressed)
        before = stats.files_truncated
        cut = Cut()
        try:
            yield from _read_frames(reader, fmt, stats, cut)
        except StreamStopped:  # a signal: the input was cut short, not damaged
            return
        what = cut.what
        if reader.failed:
            kind = "gzip stream" if compressed else "stream"
            what = f"the {kind} could not be read past byte {reader.got} ({reader.error})" + (
                f"; {what}" if what else "")
            if stats.files_truncated == before:
                stats.truncated += 1
                stats.files_truncated += 1
        if what is not None:
            stats.truncated_files[raw.name] = what
        if gz is not None:
            with contextlib.suppress(*_READ_ERRORS):
                gz.close()
    finally:
        raw.close()
