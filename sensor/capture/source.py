"""Public entry of the capture stage: validate capture files and read them as one frame stream."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import math
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence

from sensor.capture import bpf as bpfmod
from sensor.capture.common import (
    DEFAULT_MAX_CAPLEN,
    GZIP_MAGIC,
    PCAP_HEADER_LEN,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_MIN_SHB_LEN,
    PCAPNG_SHB_TYPE,
    Cut,
    FileFormat,
    Frame,
    Streamable,
)
from sensor.capture.fast import LibpcapRefused, Outcome, open_handle, read_libpcap
from sensor.capture.linktypes import to_dlt
from sensor.capture.pcapfile import read_pcap
from sensor.capture.pcapng import read_pcapng
from sensor.capture.stream import (
    STDIN,
    STREAM_WAIT_S,
    Stream,
    is_stream,
    probe_stream,
    stream_frames,
)
from sensor.errors import CaptureError
from sensor.records import CaptureStats

ErrorHandler = Callable[[str, str], None]
"""Called with (path, one-line reason) for every file that cannot be read."""

_PCAP_MAGICS = {struct.pack(o + "I", m) for o in "<>" for m in (PCAP_MAGIC_US, PCAP_MAGIC_NS)}
_SHB_MAGIC = struct.pack("<I", PCAPNG_SHB_TYPE)
_BOMS = {struct.pack(o + "I", PCAPNG_BYTE_ORDER_MAGIC) for o in "<>"}
_STREAM_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError

STOP_CHECK_FRAMES = 1024
"""Frames read between two checks of the stop event: a signal ends the reading within this
many frames, without a check per frame."""


class _SafeStream:
    """Wraps a file or gzip stream so that a read error ends the stream instead of raising."""

    __slots__ = ("_fh", "error", "failed", "got")

    def __init__(self, fh: Streamable) -> None:
        self._fh = fh
        self.failed = False
        self.got = 0
        """Bytes returned so far (decompressed bytes for a gzip stream)."""
        self.error = ""
        """The read error that ended the stream, when it failed."""

    def read(self, n: int, /) -> bytes:
        """Up to n bytes; what was decoded before an error is still returned."""
        if self.failed:
            return b""
        parts: list[bytes] = []
        got = 0
        try:
            while got < n:
                part = self._fh.read1(n - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except _STREAM_ERRORS as exc:
            self.failed = True
            self.error = _describe(exc)
        self.got += got
        return b"".join(parts)


def _describe(exc: BaseException) -> str:
    """One line for a stream error (a cut gzip stream says only "Compressed file ended ...")."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")


def _probe(path: str) -> tuple[FileFormat, bool] | str:
    """(format, gzip-compressed) of a capture file, or a one-line reason why it is not one."""
    if not os.path.exists(path):
        return "no such file"
    if os.path.isdir(path):
        return "is a directory"
    if is_stream(path):  # opening it here would wait for a writer
        return "is a FIFO (a stream: open_files reads it as one)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(PCAPNG_MIN_SHB_LEN)
            compressed = head[:2] == GZIP_MAGIC
            if compressed:
                fh.seek(0)
                with gzip.open(fh, "rb") as gz:
                    head = gz.read(PCAPNG_MIN_SHB_LEN)
    except _STREAM_ERRORS as exc:
        corrupt = isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error))
        what = "corrupt gzip file" if corrupt else "cannot read"
        return f"{what}: {getattr(exc, 'strerror', None) or exc}"
    return _classify(head, compressed, "file")


def _classify(head: bytes, compressed: bool, what: str) -> tuple[FileFormat, bool] | str:
    """(format, compressed) from the first PCAPNG_MIN_SHB_LEN bytes, or why they are not a
    capture's."""
    inside = " (inside gzip)" if compressed else ""
    if not head:
        return f"empty {what}{inside}"
    if head[:4] in _PCAP_MAGICS:
        if len(head) < PCAP_HEADER_LEN:
            return f"truncated pcap {what} header ({len(head)} of {PCAP_HEADER_LEN} bytes){inside}"
        return (FileFormat.PCAP, compressed)
    if head[:4] == _SHB_MAGIC:
        if len(head) < PCAPNG_MIN_SHB_LEN:
            return f"truncated pcapng section header ({len(head)} bytes){inside}"
        if head[8:12] not in _BOMS:
            return f"not a pcapng file (byte-order magic 0x{head[8:12].hex()}){inside}"
        return (FileFormat.PCAPNG, compressed)
    magic = head[:4].hex() if len(head) >= 4 else head.hex()
    return f"not a pcap or pcapng file (magic 0x{magic}){inside}"


def check_file(path: str) -> str | None:
    """None when `path` looks like a readable capture file, else a one-line reason."""
    probed = _probe(path)
    return probed if isinstance(probed, str) else None


def _pure_frames(
    path: str, fmt: FileFormat, compressed: bool, stats: CaptureStats
) -> Generator[Frame, None, None]:
    """Every frame of a file through the pure-Python readers; stream errors count as truncation.

    A file whose end was not read as records is named in stats.truncated_files.
    """
    with contextlib.ExitStack() as closing:
        raw = closing.enter_context(open(path, "rb"))
        fh: Streamable = closing.enter_context(gzip.open(raw, "rb")) if compressed else raw
        stream = _SafeStream(fh)
        before = stats.files_truncated
        cut = Cut()
        if fmt is FileFormat.PCAP:
            frames = read_pcap(stream, stats, cut=cut)
        else:
            frames = read_pcapng(stream, stats, cut=cut)
        for ts, linktype, data in frames:
            yield (ts, to_dlt(linktype), data)
        what = cut.what
        if stream.failed:
            kind = "gzip stream" if compressed else "file"
            what = f"the {kind} could not be read past byte {stream.got} ({stream.error})" + (
                f"; {what}" if what else ""
            )
            if stats.files_truncated == before:
                stats.truncated += 1
                stats.files_truncated += 1
        if what is not None:
            stats.truncated_files[path] = what


def _first_ts(path: str, fmt: FileFormat, compressed: bool) -> float:
    """Packet time of the first frame of a file (+inf when it has none)."""
    frames = _pure_frames(path, fmt, compressed, CaptureStats())
    try:
        return next(frames)[0]
    except StopIteration:
        return math.inf
    finally:
        frames.close()


def _filtered(
    frames: Iterator[Frame], expr: str, stats: CaptureStats, skip: int
) -> Iterator[Frame]:
    """Apply `expr` per frame (compiled once per link type); drop the first `skip` matches."""
    filters: dict[int, bpfmod.FilterFn | None] = {}
    for frame in frames:
        linktype = frame[1]
        try:
            match = filters[linktype]
        except KeyError:
            try:
                match = bpfmod.compile_filter(linktype, expr)
            except CaptureError:  # libpcap cannot filter this link type: the decoder counts it
                match = None
            filters[linktype] = match
        if match is not None and not match(frame[2]):
            stats.filtered_out += 1
            continue
        if skip:
            skip -= 1
            continue
        stats.packets += 1
        stats.bytes += len(frame[2])
        yield frame


def _libpcap_cut(path: str, fmt: FileFormat) -> int:
    """The snap length libpcap silently cuts this file's records to, when smaller than the
    largest record it reads (then a record that long may have been longer, and the pure-Python
    reader takes over to read it whole); else 0.

    Only classic pcap files: libpcap refuses a pcapng packet longer than its interface's snap
    length with an error, which hands over to the pure-Python reader anyway.
    """
    if fmt is not FileFormat.PCAP:
        return 0
    try:
        with open(path, "rb") as fh:
            head = fh.read(PCAP_HEADER_LEN)
    except OSError:
        return 0
    if len(head) < PCAP_HEADER_LEN:
        return 0
    order = "<" if head[:4] in _PCAP_LE else ">"
    (snaplen,) = struct.unpack_from(order + "I", head, 16)
    return snaplen if 0 < snaplen < DEFAULT_MAX_CAPLEN else 0


_PCAP_LE = {struct.pack("<I", m) for m in (PCAP_MAGIC_US, PCAP_MAGIC_NS)}


def _file_parts(
    path: str, fmt: FileFormat, compressed: bool, expr: str, stats: CaptureStats, use_libpcap: bool
) -> Iterator[Iterator[Frame]]:
    """One file's frame iterators, in order: libpcap when it can read the file, then (or only)
    pure Python from where libpcap stopped. Each is asked for once the previous is exhausted."""
    stats.files += 1
    skip = 0
    if use_libpcap and not compressed:
        try:
            handle = open_handle(path, expr)
        except LibpcapRefused:
            pass
        else:
            outcome = Outcome()
            yield read_libpcap(handle, stats, outcome, snaplen=_libpcap_cut(path, fmt))
            if outcome.stopped_after is None:
                if expr.strip():
                    stats.files_filtered_by_libpcap += 1
                return
            skip = outcome.stopped_after
    yield _filtered(_pure_frames(path, fmt, compressed, stats), expr, stats, skip)


class CutAgreement:
    """How readers of the same frames (flow-split workers) agree on where to stop after a signal.

    This base class agrees at once: a lone reader stops at the first slice boundary after the
    stop event is set.
    """

    def reached(self, position: int) -> bool:
        """At a slice boundary `position` (frames read), with the stop event set: stop here?"""
        return True

    def finished(self) -> None:
        """The frames ran out: this reader's cut is the end of the input."""


_Input = tuple[float, int, str, FileFormat, bool, Stream | None]
"""(first packet time, order key, path, format, compressed, the opened stream of a stream)."""


def open_files(
    paths: Sequence[str],
    bpf: str,
    stats: CaptureStats,
    on_error: ErrorHandler,
    use_libpcap: bool = True,
    *,
    stop: threading.Event | None = None,
    stream_wait: float = STREAM_WAIT_S,
    cut: CutAgreement | None = None,
) -> Iterator[Frame]:
    """Validate `paths` now, then return the frames of the readable ones matching `bpf`.

    Files are read one after the other in the order of their first packet's time. A file that is
    not a capture is reported through `on_error` and counted in stats.files_failed; an invalid
    `bpf` raises CaptureError before anything is read. stats.filtered_out only counts frames
    rejected on the pure-Python path (libpcap does not report what its filter dropped).

    Streams ("-" for stdin, FIFOs) are opened without blocking and given `stream_wait` seconds
    in all for their first bytes; their header and first record are read and kept (replayed when
    the stream's turn comes), so a stream takes its place by its first packet's time like a file.
    A stream whose first record has not arrived by then is read after every file; one with no
    bytes at all is reported through `on_error`. Streams are read by the pure-Python readers.
    Once `stop` is set, waiting ends, and reading at the next multiple of STOP_CHECK_FRAMES
    frames that `cut` agrees to (by default the first).
    """
    bpfmod.validate(bpf)
    readable: list[_Input] = []
    streams: list[tuple[int, str]] = []
    for index, path in enumerate(paths):
        if is_stream(path):
            streams.append((index, path))
            continue
        probed = _probe(path)
        if isinstance(probed, str):
            stats.files_failed += 1
            on_error(path, probed)
            continue
        fmt, compressed = probed
        readable.append((_first_ts(path, fmt, compressed), index, path, fmt, compressed, None))
    if streams:
        deadline = time.monotonic() + stream_wait
        stdin_seen = False
        for index, path in streams:
            if path == STDIN:
                if stdin_seen:
                    stats.files_failed += 1
                    on_error(path, "standard input given more than once")
                    continue
                stdin_seen = True
            probed_stream = probe_stream(path, deadline, stream_wait, stop, _classify)
            if isinstance(probed_stream, str):
                stats.files_failed += 1
                on_error(path, probed_stream)
                continue
            ts, late, fmt, compressed, stream = probed_stream
            # A stream whose first record is late (a quiet live writer) is read after every file.
            order = len(paths) + index if late else index
            readable.append((ts, order, path, fmt, compressed, stream))
    readable.sort(key=lambda r: (r[0], r[1]))
    frames = _chain(readable, bpf, stats, use_libpcap)
    if stop is None:
        return frames
    return itertools.chain.from_iterable(_until(frames, stop, cut or CutAgreement()))


def _until(
    frames: Iterator[Frame], stop: threading.Event, cut: CutAgreement
) -> Iterator[Iterable[Frame]]:
    """`frames` in slices of STOP_CHECK_FRAMES, ending at a slice boundary once `stop` is set and
    `cut` agrees: chained, the frames still pass through C code only."""
    position = 0
    while not (stop.is_set() and cut.reached(position)):
        first = next(frames, None)
        if first is None:
            cut.finished()
            return
        yield (first,)
        yield itertools.islice(frames, STOP_CHECK_FRAMES - 1)
        position += STOP_CHECK_FRAMES


def _chain(
    readable: list[_Input],
    expr: str,
    stats: CaptureStats,
    use_libpcap: bool,
) -> Iterator[Frame]:
    """The files' frames as one stream; per frame only C code (itertools.chain) stands between
    the reader and the pipeline."""
    return itertools.chain.from_iterable(
        part
        for _ts, _index, path, fmt, compressed, stream in readable
        for part in (
            _file_parts(path, fmt, compressed, expr, stats, use_libpcap)
            if stream is None
            else _stream_parts(stream, fmt, compressed, expr, stats)
        )
    )


def _stream_parts(
    raw: Stream, fmt: FileFormat, compressed: bool, expr: str, stats: CaptureStats
) -> Iterator[Iterator[Frame]]:
    """A stream's frame iterator (pure Python: libpcap cannot replay the probed bytes)."""
    stats.files += 1
    yield _filtered(stream_frames(raw, fmt, compressed, stats), expr, stats, 0)
