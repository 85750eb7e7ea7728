"""libpcap read path (pcapy-ng): kernel BPF and batched frames, with a clean hand-over point."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, Protocol

import pcapy

from sensor.capture.bpf import strip_vlan_clauses
from sensor.capture.common import Frame
from sensor.records import CaptureStats

LINKTYPE_ETHERNET: Final = 1
DEFAULT_BATCH: Final = 512
"""Packets fetched per next_batch() call: amortises the C-to-Python cost per packet."""
_META: Final = struct.Struct("=IIII")  # per packet: sec, usec, offset, caplen (native byte order)
_iter_meta: Final = _META.iter_unpack
_NO_LIMIT: Final = 1 << 32  # above any caplen (a 32-bit field); a short int when compiled


class Handle(Protocol):
    """The part of a pcapy reader handle this module uses."""

    def next_batch(self, max_n: int) -> tuple[bytes, bytes]: ...
    def datalink(self) -> int: ...
    def setfilter(self, expr: str) -> None: ...


class LibpcapRefused(Exception):
    """libpcap could not open the file (the caller falls back to the pure-Python readers)."""


def open_handle(path: str, bpf: str) -> Handle:
    """Open `path` with libpcap and set the filter; LibpcapRefused when libpcap says no."""
    try:
        handle: Handle = pcapy.open_offline(path)
        if bpf.strip():
            _set_filter(handle, bpf)
    except pcapy.PcapError as exc:
        raise LibpcapRefused(str(exc)) from exc
    return handle


def _set_filter(handle: Handle, bpf: str) -> None:
    """Set `bpf`, or, on a link type without VLAN support (raw IP, loopback, cooked), the same
    filter without its VLAN clauses (as the pure-Python path does)."""
    try:
        handle.setfilter(bpf)
    except pcapy.PcapError:
        fallback = strip_vlan_clauses(bpf)
        if fallback == bpf or handle.datalink() == LINKTYPE_ETHERNET:
            raise
        handle.setfilter(fallback)


class Outcome:
    """How a `read_libpcap` run ended, known once its iterator is exhausted."""

    __slots__ = ("stopped_after",)

    def __init__(self) -> None:
        self.stopped_after: int | None = None
        """None: the file was read to its end; else frames yielded before libpcap failed."""


def read_libpcap(
    handle: Handle,
    stats: CaptureStats,
    outcome: Outcome,
    batch: int = DEFAULT_BATCH,
    snaplen: int = 0,
) -> Iterator[Frame]:
    """Yield the filtered frames of an open libpcap handle.

    At the end, `outcome.stopped_after` is None when the file was read to its end, else the
    number of frames yielded before libpcap stopped with an error (truncated record, an
    interface of another link type in a pcapng file, ...): libpcap drops the whole batch in
    progress, so the caller re-reads the file with the pure-Python reader and skips that many
    frames. libpcap also cuts every record to the file's snap length, where tshark and the
    pure-Python readers keep what the file holds: with `snaplen` nonzero (the file's, when
    smaller than the largest record libpcap reads), a frame that long stops the read the same
    way, before it is yielded. Timestamps are µs-precise (libpcap converts ns files). Frames
    the filter rejects are not visible here, so stats.filtered_out is not counted on this path.
    """
    next_batch = handle.next_batch
    linktype = handle.datalink()
    done = 0
    limit = snaplen if snaplen > 0 else _NO_LIMIT
    while True:
        try:
            packets, meta = next_batch(batch)
        except pcapy.PcapError:
            outcome.stopped_after = done
            return
        if not meta:
            return
        n = len(meta) >> 4
        stats.packets += n
        stats.bytes += len(packets)
        for rec in _iter_meta(meta):
            frame: tuple[int, int, int, int] = rec  # typed: native arithmetic and slicing
            sec, usec, off, caplen = frame
            if caplen >= limit:  # maybe cut by libpcap: the pure-Python reader takes over
                stats.packets -= n  # the frames of this batch not yielded (packed in order)
                stats.bytes -= len(packets) - off
                outcome.stopped_after = done
                return
            n -= 1
            done += 1
            yield (sec + usec * 1e-6, linktype, packets[off : off + caplen])


def batch_frames(packets: bytes, meta: bytes, linktype: int) -> Iterator[Frame]:
    """The frames of one live `next_batch()` result, in order (compiled: the per-packet part of
    `sensor.capture.live.LiveSource.frames`)."""
    for rec in _iter_meta(meta):
        frame: tuple[int, int, int, int] = rec  # typed: native arithmetic and slicing
        sec, usec, off, caplen = frame
        yield (sec + usec * 1e-6, linktype, packets[off : off + caplen])
