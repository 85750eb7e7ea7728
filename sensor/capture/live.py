"""Live capture from a network interface through libpcap, with a kernel BPF filter and batching."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import time
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import Final

import pcapy

from sensor.capture.bpf import build_filter, strip_vlan_clauses
from sensor.capture.common import BatchedFrames, Frame
from sensor.capture.fast import DEFAULT_BATCH, batch_frames
from sensor.errors import CaptureError
from sensor.records import CaptureStats

DEFAULT_SNAPLEN = 262144
"""Bytes kept per packet (libpcap's maximum): SMTP payload must not be cut."""
DEFAULT_TIMEOUT_MS = 100
"""Longest wait for packets before the stop flag is checked again."""
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
"""Kernel ring buffer size: absorbs bursts while Python is busy (PCAP_BUF_SIZE)."""
_META = struct.Struct("=IIII")  # per packet: sec, usec, offset, caplen (native byte order)
EMPTY_READ_PAUSE_S = 0.01
"""Pause after a read that found the socket readable but returned no packet (packets libpcap's
userland filter dropped, or a ring being resynchronised): no busy loop."""

STATS_REFRESH_S: Final = 0.5
"""How often frames() refreshes, in the thread reading packets, the kernel counters that stats()
returns to any other thread (libpcap's handle is not safe to use from two threads at once)."""

STOP_DRAIN_S = 2.0
"""After stop(), how long frames() goes on reading what the kernel ring already holds (it
returns as soon as the ring is empty): packets captured before a SIGTERM are analysed, not
dropped unseen with the ring."""

PACKET_FANOUT_FLAG_DEFRAG: Final = 0x8000
"""linux/if_packet.h: the kernel reassembles IP fragments before hashing, so that every fragment
of a datagram reaches the same fanout member as its flow."""
FANOUT_HASH_DEFRAG: Final = int(pcapy.PACKET_FANOUT_HASH) | PACKET_FANOUT_FLAG_DEFRAG
"""The fanout mode of `sensor live --workers`: the kernel's symmetric flow hash (both directions
of a connection reach the same member), after IP defragmentation."""

TPACKET_V3_BLOCK_BYTES: Final = 262144
"""Size of one block of libpcap's TPACKET_V3 ring: a MAXIMUM_SNAPLEN frame rounded up to whole
pages (pcap-linux.c), whatever the snaplen."""
_TP_STATUS_USER: Final = 1  # linux/if_packet.h: the block belongs to user space
_BLOCK_STATUS_AT: Final = 8  # struct tpacket_block_desc: version, offset_to_priv, then hdr.bh1
_BLOCK_NUM_PKTS_AT: Final = 12
_BLOCK_SEQ_AT: Final = 24


class ActivateStatus(IntEnum):
    """Negative pcap_activate() results (pcap/pcap.h PCAP_ERROR_*): pcapy returns them as ints."""

    ERROR = -1
    """Generic error."""
    ACTIVATED = -4
    """The handle was already activated."""
    NO_SUCH_DEVICE = -5
    """No interface of that name."""
    PERM_DENIED = -8
    """No permission to capture (needs root or CAP_NET_RAW)."""
    IFACE_NOT_UP = -9
    """The interface is down."""
    PROMISC_PERM_DENIED = -11
    """No permission for promiscuous mode."""


_ACTIVATE_MESSAGES: dict[int, str] = {
    ActivateStatus.NO_SUCH_DEVICE: "no such device",
    ActivateStatus.PERM_DENIED: "permission denied (needs root or CAP_NET_RAW)",
    ActivateStatus.IFACE_NOT_UP: "interface is not up",
    ActivateStatus.PROMISC_PERM_DENIED: "permission denied for promiscuous mode",
}


class LiveSource:
    """Frames from a live interface; `frames()` runs until `stop()` is called."""

    def __init__(
        self,
        iface: str,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = True,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        batch: int = DEFAULT_BATCH,
        fanout: tuple[int, int] | None = None,
    ) -> None:
        """`fanout` = (group id, mode): join that PACKET_FANOUT group once activated."""
        self.iface = iface
        self.bpf = build_filter() if bpf is None else bpf
        self._timeout_s = timeout_ms / 1000.0
        self._batch = batch
        self._stopped = False
        self.on_wake: Callable[[], None] | None = None
        """Called from frames() between two batches and at least every timeout when idle, in
        the thread reading packets (the service's SIGHUP handling and watchdog)."""
        self.last_ts = 0.0
        """Packet time of the last frame frames() handed over (0.0 before the first)."""
        self._counters = (0, 0, 0)  # what stats() returns: frames() refreshes it
        try:
            handle = pcapy.create(iface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_timeout(timeout_ms)
            handle.set_buffer_size(buffer_bytes)
            status = handle.activate()
        except pcapy.PcapError as exc:
            raise CaptureError(f"cannot capture on interface {iface!r}: {exc}") from exc
        if isinstance(status, int) and status < 0:
            reason = _ACTIVATE_MESSAGES.get(status, f"libpcap error {status}")
            raise CaptureError(f"cannot capture on interface {iface!r}: {reason}")
        self._handle = handle
        self.linktype: int = handle.datalink()
        self._set_filter()
        if fanout is not None:  # after the filter: libpcap drains the socket when it sets one,
            # and a group member being drained would discard its share of the group's traffic
            try:
                handle.set_fanout(fanout[0], fanout[1])
            except (pcapy.PcapError, OSError, ValueError) as exc:
                handle.close()
                raise CaptureError(
                    f"cannot join fanout group {fanout[0]} on interface {iface!r}: {exc}"
                ) from exc
        # Non-blocking reads plus select(): libpcap's own timeout does not fire on an idle
        # TPACKET_V3 ring, so a blocking read would never come back to check the stop flag.
        handle.setnonblock(1)
        self._fd: int = handle.getfd()

    def _set_filter(self) -> None:
        if not self.bpf.strip():
            return
        try:
            self._handle.setfilter(self.bpf)
        except pcapy.PcapError as exc:
            fallback = strip_vlan_clauses(self.bpf)
            if fallback == self.bpf:
                raise CaptureError(f"--bpf: {exc}") from exc
            try:
                self._handle.setfilter(fallback)
            except pcapy.PcapError:
                raise CaptureError(f"--bpf: {exc}") from exc
            self.bpf = fallback

    def frames(
        self,
        stats: CaptureStats | None = None,
        tick: Callable[[bool], None] | None = None,
        counters: bool = True,
    ) -> LiveFrames:
        """The frames, (ts, linktype, data), as packets arrive; returns soon after stop() (see
        there). Iterated, they come one by one; `Pipeline.run` reads their batches instead
        (LiveFrames.batches), as libpcap returns them.

        `stats` counts the packets and bytes handed over (what passed the kernel filter).
        `tick(idle)` is called before every read: idle is True when no packet came within the
        timeout (the ring is drained), False when the previous batch has just been handed over.
        `counters`: refresh what stats() returns every STATS_REFRESH_S and once more at the end
        (False in a fanout worker: its parent reads the counters of the socket they share, and
        every read resets the kernel's count).
        """
        return LiveFrames(self, stats, tick, counters)

    def batches(
        self,
        stats: CaptureStats | None = None,
        tick: Callable[[bool], None] | None = None,
        counters: bool = True,
    ) -> Iterator[tuple[bytes, bytes]]:
        """What frames() yields, a libpcap batch at a time: (packets, meta) as pcapy's
        next_batch returns them (sensor.decode.batch reads them)."""
        try:
            yield from self._batches(stats, tick, counters)
        finally:
            if counters:
                self._refresh()

    def _batches(
        self, stats: CaptureStats | None, tick: Callable[[bool], None] | None, counters: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        next_batch = self._handle.next_batch
        fd = self._fd
        timeout = self._timeout_s
        batch = self._batch
        on_wake = self.on_wake
        drain_until = 0.0
        refresh_at = 0.0  # monotonic time of the next counters refresh
        while True:
            if on_wake is not None:
                on_wake()
            if counters:
                now = time.monotonic()
                if now >= refresh_at:
                    self._refresh()
                    refresh_at = now + STATS_REFRESH_S
            wait = timeout
            if self._stopped:  # read on what the ring already holds, for a bounded time
                now = time.monotonic()
                if not drain_until:
                    drain_until = now + STOP_DRAIN_S
                if now > drain_until:
                    break
                wait = 0.0
            readable, _, _ = select.select([fd], [], [], wait)
            if not readable:
                if self._stopped:
                    break
                if tick is not None:
                    tick(True)
                continue
            try:
                packets, meta = next_batch(batch)
            except pcapy.PcapError as exc:
                raise CaptureError(f"capture on interface {self.iface!r} failed: {exc}") from exc
            if not meta:
                time.sleep(EMPTY_READ_PAUSE_S)
                continue
            if stats is not None:
                stats.packets += len(meta) >> 4
                stats.bytes += len(packets)
            yield packets, meta
            sec, usec = _META.unpack_from(meta, len(meta) - _META.size)[:2]
            self.last_ts = sec + usec * 1e-6
            if tick is not None:
                tick(False)

    def stop(self) -> None:
        """Ask frames() to return once the ring is empty, or STOP_DRAIN_S later at the latest
        (safe from another thread and from a signal handler)."""
        self._stopped = True

    def stats(self) -> tuple[int, int, int]:
        """libpcap's (received, dropped by the buffer, dropped by the interface) counters as
        frames() last read them, at most STATS_REFRESH_S ago while it runs and when it returned
        (zeros before it ran): safe from any thread, as the stats reporter and the metrics
        endpoint read them while the capture thread reads packets."""
        return self._counters

    def read_stats(self) -> tuple[int, int, int]:
        """libpcap's counters read now, from the handle: only in the thread that reads its
        packets, or in a process where no thread does (a fanout parent, whose workers read)."""
        received, dropped, if_dropped = self._handle.stats()
        self._counters = got = (int(received), int(dropped), int(if_dropped))
        return got

    def _refresh(self) -> None:
        # a closed handle: keep the last figures
        with contextlib.suppress(pcapy.PcapError, OSError, ValueError):
            self.read_stats()

    def resync_ring(self) -> int:
        """Point this process's reader at the oldest unread block of the kernel ring.

        For a worker forked from the process that opened the handle, after a predecessor that
        read the same ring died: libpcap's read position is a copy of the opener's (the first
        block), while the kernel has moved on. Free blocks before the oldest unread one are
        marked as read-and-empty, so that libpcap passes over them; when the unread blocks wrap
        past the ring's end, the older part is emptied instead (its packets are lost, and
        counted). Returns the packets given up that way. A ring whose mapping or geometry is not
        the one expected is left as it is.
        """
        ring = _find_ring(self._fd)
        if ring is None:
            return 0
        base, size = ring
        if size % TPACKET_V3_BLOCK_BYTES:
            return 0
        n = size // TPACKET_V3_BLOCK_BYTES
        u32, u64 = ctypes.c_uint32, ctypes.c_uint64
        status = [u32.from_address(base + i * TPACKET_V3_BLOCK_BYTES + _BLOCK_STATUS_AT).value
                  for i in range(n)]  # fmt: skip
        seq = [u64.from_address(base + i * TPACKET_V3_BLOCK_BYTES + _BLOCK_SEQ_AT).value
               for i in range(n)]  # fmt: skip
        unread = [i for i in range(n) if status[i] & _TP_STATUS_USER]
        newest = max(range(n), key=seq.__getitem__)
        if not seq[newest]:
            return 0  # the kernel has not opened a block yet: libpcap starts where it will
        start = min(unread, key=seq.__getitem__) if unread else newest
        if start == 0:
            return 0
        lost = 0
        wrapped = any(i < start for i in unread) or (newest < start and not status[newest])
        for i in range(start, n) if wrapped else range(start):
            at = base + i * TPACKET_V3_BLOCK_BYTES
            if wrapped:  # user-owned, stable: empty it
                if not status[i] & _TP_STATUS_USER:
                    continue
                lost += u32.from_address(at + _BLOCK_NUM_PKTS_AT).value
                u32.from_address(at + _BLOCK_NUM_PKTS_AT).value = 0
            else:  # free and behind an unread block: the kernel cannot reach it before libpcap
                u32.from_address(at + _BLOCK_NUM_PKTS_AT).value = 0
                u32.from_address(at + _BLOCK_STATUS_AT).value = _TP_STATUS_USER
        return lost

    def close(self) -> None:
        """Stop and release the capture handle."""
        self._stopped = True
        self._handle.close()


def _find_ring(fd: int) -> tuple[int, int] | None:
    """(address, size) of the packet ring libpcap mapped for socket `fd` in this process."""
    name = f"socket:[{os.fstat(fd).st_ino}]"
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                if line.rstrip().endswith(name):
                    lo, hi = line.split(None, 1)[0].split("-")
                    return int(lo, 16), int(hi, 16) - int(lo, 16)
    except OSError:
        return None
    return None


class LiveFrames(BatchedFrames):
    """The frames of one LiveSource.frames() call: one by one when iterated, or a libpcap batch
    at a time (`batches`, what Pipeline.run reads)."""

    def __init__(
        self,
        source: LiveSource,
        stats: CaptureStats | None,
        tick: Callable[[bool], None] | None,
        counters: bool,
    ) -> None:
        self.linktype = source.linktype
        self._source = source
        self._args = (stats, tick, counters)
        self._each: Iterator[Frame] | None = None

    def batches(self) -> Iterator[tuple[bytes, bytes]]:
        return self._source.batches(*self._args)

    def _frames(self) -> Iterator[Frame]:
        linktype = self.linktype
        for packets, meta in self.batches():
            yield from batch_frames(packets, meta, linktype)

    def __next__(self) -> Frame:
        if self._each is None:
            self._each = self._frames()
        return next(self._each)
