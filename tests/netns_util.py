"""Two network namespaces joined by a veth pair, for live-capture tests on a real interface."""

from __future__ import annotations

import itertools
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

IP_TIMEOUT_S = 10.0
"""Longest one `ip` or `ss` command may run."""
POLL_INTERVAL_S = 0.05
"""Pause between two looks at a condition being waited for."""

SRV_IF = "p25srv0"
"""The server-side veth end (names live inside the namespaces, never on the host)."""
CLI_IF = "p25cli0"
"""The client-side veth end."""
SRV_V4 = "198.51.100.1"  # RFC 5737 3: TEST-NET-2, documentation only
CLI_V4 = "198.51.100.2"
V4_PREFIX = 24
SRV_V6 = "fd00:25::1"  # RFC 4193 3: unique local address
CLI_V6 = "fd00:25::2"
V6_PREFIX = 64

_seq = itertools.count()
_BPF_LINE = re.compile(r"^\s*bpf filter \((\d+)\)")


@dataclass(frozen=True, slots=True)
class VethNet:
    """The two namespaces; the veth ends and addresses are the module constants."""

    cli_ns: str
    srv_ns: str

    def in_ns(self, ns: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside namespace `ns` (ip netns exec replaces itself with the command)."""
        return [ip_binary(), "netns", "exec", ns, *argv]


def _binary(name: str, missing: str) -> str:
    """Path of program `name`; RuntimeError saying `missing` when absent (not a skip)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(missing)
    return path


def ip_binary() -> str:
    """Path of iproute2's `ip`; RuntimeError when absent (CI images have it: not a skip)."""
    return _binary("ip", "iproute2 `ip` not found: the veth live tests need it (and root)")


def _ip(*args: str) -> str:
    """Run `ip args...`; RuntimeError carrying ip's own message when it fails."""
    done = subprocess.run(
        [ip_binary(), *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _wait_ipv6_usable(ns: str, iface: str, timeout_s: float = IP_TIMEOUT_S) -> None:
    """Return once no global IPv6 address on `iface` is tentative (duplicate address detection).

    Added with `nodad` they never are; the link-local address still goes through DAD (about
    2 s) but is not needed: neighbour solicitations then take the global source address.
    """
    deadline = time.monotonic() + timeout_s
    while _ip("-n", ns, "-6", "addr", "show", "dev", iface, "scope", "global", "tentative").strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{ns}/{iface}: IPv6 address still tentative after {timeout_s} s")
        time.sleep(POLL_INTERVAL_S)


@contextmanager
def veth_namespaces(mtu: int | None = None) -> Iterator[VethNet]:
    """Create p25-cli-* and p25-srv-* joined by a veth pair, addressed and up; always delete them.

    The veth ends are created directly inside the namespaces, so nothing appears on, or is
    routed through, the host's own interfaces. `mtu`: both ends' MTU (replayed captures may
    hold frames larger than the default 1500).
    """
    tag = f"{os.getpid()}-{next(_seq)}"
    net = VethNet(cli_ns=f"p25-cli-{tag}", srv_ns=f"p25-srv-{tag}")
    created: list[str] = []
    try:
        for ns in (net.cli_ns, net.srv_ns):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", SRV_IF, "netns", net.srv_ns,
            "type", "veth", "peer", "name", CLI_IF, "netns", net.cli_ns)  # fmt: skip
        for ns, iface, v4, v6 in ((net.srv_ns, SRV_IF, SRV_V4, SRV_V6),
                                  (net.cli_ns, CLI_IF, CLI_V4, CLI_V6)):  # fmt: skip
            _ip("-n", ns, "addr", "add", f"{v4}/{V4_PREFIX}", "dev", iface)
            _ip("-n", ns, "addr", "add", f"{v6}/{V6_PREFIX}", "dev", iface, "nodad")
            _ip("-n", ns, "link", "set", "lo", "up")
            if mtu is not None:
                _ip("-n", ns, "link", "set", iface, "mtu", str(mtu))
            _ip("-n", ns, "link", "set", iface, "up")
        for ns, iface in ((net.srv_ns, SRV_IF), (net.cli_ns, CLI_IF)):
            _wait_ipv6_usable(ns, iface)
        yield net
    finally:
        for ns in reversed(created):
            subprocess.run([ip_binary(), "netns", "del", ns], capture_output=True,
                           timeout=IP_TIMEOUT_S, check=False)  # fmt: skip


def has_packet_filter(ns: str, pid: int) -> bool:
    """True once process `pid` in `ns` holds a packet socket with a real BPF program attached.

    libpcap first attaches a one-instruction drop-all program while it drains the socket, then
    the compiled filter; seeing more than one instruction means capture has started. The
    kernel's sock_diag dump leaves out a socket whose filter does not fit one netlink message
    (about 460 instructions: the default filter for ports 25 and 587 in a live capture has
    541), so a packet socket of the process that `ss` does not list holds such a filter.
    """
    out = subprocess.run(
        [ip_binary(), "netns", "exec", ns, "ss", "--packet", "--bpf", "--processes"],
        capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False,
    ).stdout  # fmt: skip
    owned = listed = False
    for line in out.splitlines():
        m = _BPF_LINE.match(line)
        if m is None:
            owned = f"pid={pid}," in line
            listed = listed or owned
        elif owned and int(m.group(1)) > 1:
            return True
    return not listed and _owns_packet_socket(ns, pid)


def _owns_packet_socket(ns: str, pid: int) -> bool:
    """Whether process `pid` holds one of the packet sockets of namespace `ns`."""
    table = subprocess.run(
        [ip_binary(), "netns", "exec", ns, "cat", "/proc/net/packet"],
        capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False,
    ).stdout  # fmt: skip
    inodes = {f"socket:[{line.split()[-1]}]" for line in table.splitlines()[1:] if line.split()}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # the process has gone
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


REPLAY_MTU = 9000
"""MTU of the veth pair for replays: the simulator writes frames a little over 1514 bytes."""
REPLAY_TIMEOUT_S = 120.0
"""Longest one tcpreplay run may take."""


def tcpreplay_binary() -> str:
    """Path of tcpreplay; RuntimeError when absent (scripts/ensure_system.sh test installs it)."""
    return _binary("tcpreplay", "tcpreplay not found: run scripts/ensure_system.sh test (as root)")


def taskset_binary() -> str:
    """Path of taskset (util-linux, in every Debian); RuntimeError when absent."""
    return _binary("taskset", "taskset not found: install util-linux")


def replay(net: VethNet, pcap: str, pps: int | None = None, topspeed: bool = False,
           timeout_s: float = REPLAY_TIMEOUT_S, cpu: int | None = None) -> str:
    """Send every frame of `pcap` out of the client-side veth end, unchanged (tcpreplay), at
    `pps` packets per second or at top speed; returns tcpreplay's report (its stdout). `cpu`:
    tcpreplay runs on that core only (the kernel's side of the veth sends runs there too)."""
    rate = ["--topspeed"] if topspeed else [f"--pps={pps or 1000}"]
    pin = [] if cpu is None else [taskset_binary(), "-c", str(cpu)]
    done = subprocess.run(
        net.in_ns(net.cli_ns, [*pin, tcpreplay_binary(), "-q", f"--intf1={CLI_IF}", *rate, pcap]),
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"tcpreplay {pcap}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class LineReader:
    """Collects a process's output lines in a thread, so that a test can wait for one line
    while the process runs and read all of them once it has ended."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, needle: str, timeout_s: float) -> bool:
        """True once a line containing `needle` has come, False after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(needle in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def text(self, timeout_s: float = IP_TIMEOUT_S) -> str:
        """Everything read, once the stream has ended (or after `timeout_s`)."""
        self._thread.join(timeout_s)
        with self._cond:
            return "".join(self.lines)


def wait_capturing(net: VethNet, proc: subprocess.Popen[str], err: LineReader, workers: int,
                   timeout_s: float) -> None:  # fmt: skip
    """Wait until every capture handle of `sensor live` is open and filtering: one worker's
    socket carries its filter; with several, the sensor says so once all of them are in the
    fanout group. Kills the sensor and raises AssertionError when it never gets there."""
    if workers > 1:
        if not err.wait_for("sensor: capturing on", timeout_s):
            proc.kill()
            raise AssertionError(f"sensor never started capturing: {err.text()}")
        return
    deadline = time.monotonic() + timeout_s
    while not has_packet_filter(net.srv_ns, proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(
                f"sensor never started capturing (exit {proc.returncode}): {err.text()}")
        time.sleep(0.05)


def start_tcpdump(net: VethNet, out: Path, timeout_s: float) -> subprocess.Popen[str]:
    """tcpdump writing every frame the server-side veth end receives to `out` (the reference a
    live run is compared with: the same frames, the same arrival times), once it listens."""
    proc = subprocess.Popen(
        net.in_ns(net.srv_ns, ["tcpdump", "-i", SRV_IF, "-s", "0", "-U", "-w", str(out)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stderr], [], [], 0.5)
        if readable and "listening on" in proc.stderr.readline():
            return proc
    proc.kill()
    raise AssertionError("tcpdump never started listening")
