"""`sensor live --check-interface`: is an interface ready for capture, and what to change."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sensor.service.affinity import format_cpus, parse_cpus

SIOCGIFFLAGS: Final = 0x8913
"""ioctl (linux/sockios.h): the interface's flags."""
SIOCGIFMTU: Final = 0x8921
"""ioctl: the interface's MTU."""
SIOCETHTOOL: Final = 0x8946
"""ioctl: an ethtool command (linux/ethtool.h) through ifr_data."""
IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
IFF_PROMISC: Final = 0x100
IFNAMSIZ: Final = 16
ETH_FLAG_LRO: Final = 1 << 15
"""ETHTOOL_GFLAGS bit of large receive offload."""
_IFREQ: Final = struct.Struct(f"{IFNAMSIZ}s24s")  # name, then a 24-byte union (64-bit Linux)


@dataclass(frozen=True, slots=True)
class Offload:
    """One offload that merges or splits TCP segments, as ethtool -k names it."""

    name: str
    """ethtool -k's name."""
    short: str
    """ethtool -K's keyword."""
    cmd: int
    """The legacy ETHTOOL_G* command reading it."""
    bit: int
    """The bit of the answer that means on (ETHTOOL_GFLAGS), 0 for a plain boolean."""
    why: str


OFFLOADS: Final = (
    Offload("generic-receive-offload", "gro", 0x2B, 0,
            "the kernel merges received segments: the capture sees made-up super-segments"),
    Offload("large-receive-offload", "lro", 0x25, ETH_FLAG_LRO,
            "the NIC merges received segments: the capture sees made-up super-segments"),
    Offload("tcp-segmentation-offload", "tso", 0x1E, 0,
            "segments handed to the NIC (or to a veth peer) unsplit: larger than the wire's"),
    Offload("generic-segmentation-offload", "gso", 0x23, 0,
            "segments split late, after the capture point: larger than the wire's"),
)  # fmt: skip
"""Checked offloads: with any on, captured segments do not match the packets on the wire."""


@dataclass(slots=True)
class InterfaceReport:
    """What --check-interface found."""

    iface: str
    exists: bool = False
    up: bool = False
    running: bool = False
    promisc: bool = False
    mtu: int = 0
    offloads: dict[str, bool | None] = field(default_factory=dict)
    """ethtool -k name -> on, or None when the driver does not say."""
    advice: list[str] = field(default_factory=list)
    error: str = ""
    irqs: tuple[int, ...] | None = None
    """The device's interrupts (MSI/MSI-X), () when it lists none, None for an interface with
    no device (a veth, a bridge, a VLAN on top of another)."""
    irq_cores: frozenset[int] = frozenset()
    """Cores those interrupts are delivered to: where the receive path runs."""
    rps_cores: frozenset[int] = frozenset()
    """Cores its receive queues steer packets to in software (RPS), if any."""

    @property
    def exit_code(self) -> int:
        """0 ready, 1 something should change, 2 no such interface."""
        if not self.exists:
            return 2
        return 1 if self.advice else 0


def _ioctl(sock: socket.socket, request: int, iface: str, data: bytes = b"") -> bytes:
    req = _IFREQ.pack(iface.encode(), data.ljust(24, b"\0"))
    return fcntl.ioctl(sock.fileno(), request, req)


def _ethtool(sock: socket.socket, iface: str, cmd: int) -> int | None:
    """The data word of a legacy ETHTOOL_G* command, None when the driver does not support it."""
    value = (ctypes.c_uint32 * 2)(cmd, 0)  # struct ethtool_value {cmd, data}
    pointer = struct.pack("P", ctypes.addressof(value))
    try:
        _ioctl(sock, SIOCETHTOOL, iface, pointer)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
            return None
        raise
    return int(value[1])


def receive_cores(iface: str, report: InterfaceReport, sys_root: Path = Path("/sys"),
                  proc_root: Path = Path("/proc")) -> None:  # fmt: skip
    """Fill in where `iface`'s receive path runs: its device's interrupts and the cores they are
    delivered to (effective affinity where the kernel reports it), and any RPS steering. The
    sensor's capture processes do best on other cores ([live] cpus). Reads sysfs and procfs
    only; what they do not show stays empty."""
    net = sys_root / "class" / "net" / iface
    device = net / "device"
    if device.exists():
        irqs: set[int] = set()
        for where in (device, device.resolve().parent):  # a virtio NIC: its PCI device's
            try:
                irqs.update(int(n.name) for n in (where / "msi_irqs").iterdir() if n.name.isdigit())
            except OSError:  # no MSI: a legacy interrupt line, not listed per device
                continue
            break
        report.irqs = tuple(sorted(irqs))
        cores: set[int] = set()
        for irq in report.irqs:
            for name in ("effective_affinity_list", "smp_affinity_list"):
                try:
                    text = (proc_root / "irq" / str(irq) / name).read_text().strip()
                except OSError:
                    continue
                with contextlib.suppress(ValueError):  # not a cpu-list: nothing to add
                    cores.update(parse_cpus(text))
                break
        report.irq_cores = frozenset(cores)
    rps: set[int] = set()
    try:
        queues = sorted((net / "queues").glob("rx-*"))
    except OSError:
        queues = []
    for queue in queues:
        try:
            mask = int((queue / "rps_cpus").read_text().strip().replace(",", "") or "0", 16)
        except (OSError, ValueError):
            continue
        rps.update(bit for bit in range(mask.bit_length()) if mask >> bit & 1)
    report.rps_cores = frozenset(rps)


def check_interface(iface: str) -> InterfaceReport:
    """Inspect `iface` through ioctls (no ethtool binary needed) in this network namespace."""
    report = InterfaceReport(iface)
    if not iface or len(iface.encode()) >= IFNAMSIZ or "/" in iface:
        report.error = "not a valid interface name"
        return report
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = struct.unpack_from("=H", _ioctl(sock, SIOCGIFFLAGS, iface), IFNAMSIZ)[0]
        except OSError as exc:
            report.error = "no such interface" if exc.errno == errno.ENODEV else str(exc)
            return report
        report.exists = True
        report.up = bool(flags & IFF_UP)
        report.running = bool(flags & IFF_RUNNING)
        report.promisc = bool(flags & IFF_PROMISC)
        report.mtu = struct.unpack_from("=i", _ioctl(sock, SIOCGIFMTU, iface), IFNAMSIZ)[0]
        for off in OFFLOADS:
            try:
                word = _ethtool(sock, iface, off.cmd)
            except OSError:
                word = None
            report.offloads[off.name] = None if word is None else bool(
                word & off.bit if off.bit else word)
    receive_cores(iface, report)
    on = [off for off in OFFLOADS if report.offloads.get(off.name)]
    if on:
        report.advice.append(f"ethtool -K {iface} " + " ".join(f"{o.short} off" for o in on))
        report.advice.extend(f"  ({o.short}: {o.why})" for o in on)
    if not report.up:
        report.advice.append(f"ip link set dev {iface} up   # libpcap cannot capture on an "
                             "interface that is down")
    elif not report.running:
        report.advice.append(f"check the cable or the span/tap port of {iface}: "
                             "the link is up but has no carrier")
    return report


def render_check(report: InterfaceReport) -> str:
    """The report as the lines printed on the terminal, ending with the verdict."""
    if not report.exists:
        return f"{report.iface}: {report.error}: nothing to capture on (see `ip link`)"
    lines = [
        f"{report.iface}: link {'up' if report.up else 'DOWN'}, "
        f"{'carrier' if report.running else 'NO CARRIER'}, MTU {report.mtu}",
        f"{report.iface}: promiscuous mode {'on' if report.promisc else 'off'} (sensor live "
        "turns it on while it captures unless [live] promisc = false; a span port needs it)",
    ]
    for name, state in report.offloads.items():
        shown = "not reported by the driver" if state is None else ("on" if state else "off")
        lines.append(f"{report.iface}: {name}: {shown}")
    lines.append(_receive_line(report))
    if report.advice:
        lines.append("change:")
        lines.extend(f"  {a}" for a in report.advice)
        lines.append(f"{report.iface}: not ready for capture (exit 1)")
    else:
        lines.append(f"{report.iface}: ready for capture")
    return "\n".join(lines)


def _receive_line(report: InterfaceReport) -> str:
    """Where the receive path runs, and what that means for [live] cpus."""
    iface = report.iface
    rps = (f"; receive packet steering to cores {format_cpus(report.rps_cores)}"
           if report.rps_cores else "")  # fmt: skip
    if report.irqs is None:
        return (f"{iface}: no device interrupts (a virtual interface: its receive path runs "
                f"on the sender's core){rps}")
    if not report.irqs:
        return f"{iface}: no per-device interrupts listed (a legacy interrupt line){rps}"
    where = f"cores {format_cpus(report.irq_cores)}" if report.irq_cores else "cores not shown"
    line = f"{iface}: interrupts {format_cpus(report.irqs)} delivered to {where}{rps}"
    busy = report.irq_cores | report.rps_cores
    if busy and not os.sched_getaffinity(0) - busy:
        return (f"{line}: every core; to keep capture cores apart, move them "
                "(/proc/irq/N/smp_affinity_list, irqbalance's IRQBALANCE_BANNED_CPULIST)")
    return f"{line}: on a busy link, list other cores in [live] cpus"
