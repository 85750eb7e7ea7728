"""Live capture from a network interface through libpcap, with a kernel BPF filter and batching."""

from __future__ import annotations

import select
import struct
from collections.abc import Callable, Iterator
from enum import IntEnum

import pcapy

from sensor.capture.bpf import build_filter, strip_vlan_clauses
from sensor.capture.common import Frame
from sensor.capture.fast import DEFAULT_BATCH
from sensor.errors import CaptureError
from sensor.records import CaptureStats

DEFAULT_SNAPLEN = 262144
"""Bytes kept per packet (libpcap's maximum): SMTP payload must not be cut."""
DEFAULT_TIMEOUT_MS = 100
"""Longest wait for packets before the stop flag is checked again."""
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
"""Kernel ring buffer size: absorbs bursts while Python is busy (PCAP_BUF_SIZE)."""
_META = struct.Struct("=IIII")  # per packet: sec, usec, offset, caplen (native byte order)


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
    ) -> None:
        self.iface = iface
        self.bpf = build_filter() if bpf is None else bpf
        self._timeout_s = timeout_ms / 1000.0
        self._batch = batch
        self._stopped = False
        self.on_wake: Callable[[], None] | None = None
        """Called from frames() between two batches and at least every timeout when idle, in
        the thread reading packets (the service's SIGHUP handling and watchdog)."""
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

    def frames(self, stats: CaptureStats | None = None) -> Iterator[Frame]:
        """Yield (ts, linktype, data) as packets arrive; returns soon after stop().

        `stats` counts the packets and bytes handed over (what passed the kernel filter).
        """
        next_batch = self._handle.next_batch
        linktype = self.linktype
        iter_meta = _META.iter_unpack
        fd = self._fd
        timeout = self._timeout_s
        batch = self._batch
        on_wake = self.on_wake
        while not self._stopped:
            if on_wake is not None:
                on_wake()
            readable, _, _ = select.select([fd], [], [], timeout)
            if not readable:
                continue
            try:
                packets, meta = next_batch(batch)
            except pcapy.PcapError as exc:
                raise CaptureError(f"capture on interface {self.iface!r} failed: {exc}") from exc
            if stats is not None:
                stats.packets += len(meta) >> 4
                stats.bytes += len(packets)
            for sec, usec, off, caplen in iter_meta(meta):
                yield (sec + usec * 1e-6, linktype, packets[off : off + caplen])

    def stop(self) -> None:
        """Ask frames() to return after the batch in progress (safe from another thread)."""
        self._stopped = True

    def stats(self) -> tuple[int, int, int]:
        """libpcap's (received, dropped by the buffer, dropped by the interface) counters."""
        received, dropped, if_dropped = self._handle.stats()
        return int(received), int(dropped), int(if_dropped)

    def close(self) -> None:
        """Stop and release the capture handle."""
        self._stopped = True
        self._handle.close()
