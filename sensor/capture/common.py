"""Shared definitions of the file readers: the frame tuple, magic numbers and named bounds."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from enum import Enum
from typing import Protocol

from sensor.records import CaptureStats

Frame = tuple[float, int, bytes]
"""One captured frame: (packet time in seconds since the epoch, link type, captured bytes)."""


class BatchedFrames(Iterator[Frame]):
    """Frames that arrive in libpcap batches (a live capture): iterated, one by one; read with
    `batches()`, as pcapy's next_batch returns them, (packets, meta) of `linktype`, which
    Pipeline.run decodes and feeds in one C loop per batch (sensor.decode.batch)."""

    linktype: int

    def __iter__(self) -> BatchedFrames:
        return self

    @abstractmethod
    def batches(self) -> Iterator[tuple[bytes, bytes]]:
        """The (packets, meta) batches: the frames back to back, and per frame four native
        uint32 (sec, usec, offset in packets, caplen)."""

DEFAULT_MAX_CAPLEN = 262144
"""A record claiming more captured bytes than this is corrupt (libpcap's MAXIMUM_SNAPLEN)."""
DEFAULT_MAX_BLOCK_BYTES = 4 * 1024 * 1024
"""A pcapng block longer than this is corrupt (bounds the bytes buffered for one block)."""
READ_CHUNK_BYTES = 1024 * 1024
"""Bytes read from a file per read() call by the pure-Python readers."""

# https://www.tcpdump.org/manpages/pcap-savefile.5.html
PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAP_HEADER_LEN = 24
# RFC 1952 section 2.3.1: ID1 ID2
GZIP_MAGIC = b"\x1f\x8b"
# draft-ietf-opsawg-pcapng section 4.1: Section Header Block type and byte-order magic
PCAPNG_SHB_TYPE = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_MIN_SHB_LEN = 28


class FileFormat(Enum):
    """What a capture file's first bytes say it is."""

    PCAP = "pcap"
    """Classic libpcap savefile (either byte order, µs or ns)."""
    PCAPNG = "pcapng"
    """pcapng: a Section Header Block first."""


class Readable(Protocol):
    """A byte stream the pure-Python readers pull from (a file, a gzip stream, a wrapper)."""

    def read(self, n: int, /) -> bytes: ...


class Streamable(Protocol):
    """A buffered byte stream with read1 (files and gzip streams)."""

    def read1(self, n: int, /) -> bytes: ...


def refill(fh: Readable, buf: bytes, pos: int, need: int) -> tuple[bytes, bool]:
    """The unread tail of `buf` plus up to `need` more bytes, and whether the file has ended."""
    data = fh.read(need)
    return buf[pos:] + data, not data


class Cut:
    """What a pure-Python reader could not read as records, once its iterator is exhausted."""

    __slots__ = ("what",)

    def __init__(self) -> None:
        self.what: str | None = None
        """None: the file was read to its end; else one line saying what was skipped."""


def remaining_bytes(fh: Readable, chunk_bytes: int = READ_CHUNK_BYTES) -> int:
    """Read a stream to its end; the number of bytes it still had."""
    total = 0
    while True:
        data = fh.read(chunk_bytes)
        if not data:
            return total
        total += len(data)


def mark_truncated(stats: CaptureStats, cut: Cut | None, what: str) -> None:
    """Count a file whose end was not read as records, saying what was skipped."""
    stats.truncated += 1
    stats.files_truncated += 1
    if cut is not None:
        cut.what = what


def count_truncated_tail(
    stats: CaptureStats,
    leftover: int,
    cut: Cut | None = None,
    record: int = 0,
    unit: str = "record",
) -> None:
    """At end of file: bytes left that do not make a whole record mean the file was cut."""
    if leftover > 0:
        mark_truncated(
            stats, cut, f"the file ends inside {unit} {record}: its {leftover} bytes were skipped"
        )
