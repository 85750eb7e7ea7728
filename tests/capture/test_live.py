"""Tests of LiveSource on the loopback interface (traffic never leaves the host)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from sensor.capture.bpf import build_filter
from sensor.capture.live import FANOUT_HASH_DEFRAG, STOP_DRAIN_S, LiveSource
from sensor.errors import CaptureError


def test_frames_from_loopback_and_stop() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    source = LiveSource("lo", bpf=f"tcp port {port}", timeout_ms=20)
    got: list[tuple[float, int, bytes]] = []
    reader = threading.Thread(target=lambda: got.extend(source.frames()))
    reader.start()
    try:
        time.sleep(0.1)
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        client.sendall(b"EHLO sensor.test\r\n")
        assert conn.recv(100) == b"EHLO sensor.test\r\n"
        client.close()
        conn.close()
        deadline = time.monotonic() + 5
        while len(got) < 6 and time.monotonic() < deadline:  # SYN, SYN-ACK, ACK, data, ACK, FIN
            time.sleep(0.02)
    finally:
        source.stop()
        reader.join(2)
        server.close()
    assert not reader.is_alive()  # stop() ends frames() even while the interface is idle
    assert len(got) >= 6
    assert all(lt == source.linktype == 1 for _, lt, _ in got)
    assert any(b"EHLO sensor.test\r\n" in data for _, _, data in got)
    assert abs(got[0][0] - time.time()) < 60
    received, dropped, _ = source.stats()
    assert received >= len(got) and dropped == 0
    source.close()


def test_unknown_interface_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="no-such-if0"):
        LiveSource("no-such-if0")


def test_invalid_filter_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match=r"^--bpf: "):
        LiveSource("lo", bpf="tcp port banana")


def test_default_filter_runs_in_the_kernel(capfd: pytest.CaptureFixture[str]) -> None:
    """The kernel accepts the default filter's program (when it refuses one, libpcap warns on
    stderr and filters in user space, copying every packet), and it passes SMTP over IPv4 and
    IPv6 on the loopback interface."""
    servers = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        server = socket.socket(family)
        server.bind((host, 0))
        server.listen()
        servers.append(server)
    ports = [s.getsockname()[1] for s in servers]
    source = LiveSource("lo", bpf=build_filter(ports), timeout_ms=20)
    got: list[tuple[float, int, bytes]] = []
    reader = threading.Thread(target=lambda: got.extend(source.frames()))
    reader.start()
    try:
        time.sleep(0.1)
        for server in servers:
            host, port = server.getsockname()[:2]
            client = socket.create_connection((host, port))
            conn, _ = server.accept()
            client.sendall(b"EHLO kernel.test\r\n")
            assert conn.recv(100) == b"EHLO kernel.test\r\n"
            client.close()
            conn.close()
        deadline = time.monotonic() + 5
        while sum(b"EHLO kernel.test" in f[2] for f in got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        source.stop()
        reader.join(2)
        for server in servers:
            server.close()
        source.close()
    assert sum(b"EHLO kernel.test" in f[2] for f in got) == 2
    assert "Kernel filter failed" not in capfd.readouterr().err


def _connections_on_loopback(port: int, n: int) -> list[int]:
    """Open `n` connections to 127.0.0.1:port, each sending one line; returns their client ports."""
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen(n)
    ports = []
    try:
        for _ in range(n):
            client = socket.create_connection(("127.0.0.1", port))
            conn, _ = server.accept()
            client.sendall(b"EHLO fanout.test\r\n")
            assert conn.recv(100) == b"EHLO fanout.test\r\n"
            conn.sendall(b"250 ok\r\n")
            assert client.recv(100) == b"250 ok\r\n"
            ports.append(client.getsockname()[1])
            client.close()
            conn.close()
    finally:
        server.close()
    return ports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fanout_group_keeps_each_connection_on_one_handle() -> None:
    """Two handles in one PACKET_FANOUT_HASH group share the connections: every frame of a
    connection, both directions, reaches the same handle, and together they see every frame."""
    port = _free_port()
    group = (os.getpid() + 7) & 0xFFFF
    sources = [LiveSource("lo", bpf=f"tcp port {port}", timeout_ms=20,
                          fanout=(group, FANOUT_HASH_DEFRAG)) for _ in range(2)]  # fmt: skip
    got: list[list[tuple[float, int, bytes]]] = [[], []]
    readers = [threading.Thread(target=lambda k=k: got[k].extend(sources[k].frames()))
               for k in range(2)]  # fmt: skip
    for r in readers:
        r.start()
    try:
        time.sleep(0.1)
        client_ports = _connections_on_loopback(port, 24)
        deadline = time.monotonic() + 5
        while sum(map(len, got)) < 24 * 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    finally:
        for s in sources:
            s.stop()
        for r in readers:
            r.join(2)
        for s in sources:
            s.close()
    seen: dict[int, set[int]] = {}
    for k, frames in enumerate(got):
        for _, _, data in frames:
            sport, dport = struct.unpack_from("!HH", data, 14 + 20)
            seen.setdefault(sport if dport == port else dport, set()).add(k)
    assert set(seen) == set(client_ports)
    assert all(len(handles) == 1 for handles in seen.values()), seen
    assert all(got), "the hash left one handle without any of 24 connections"


def test_unknown_fanout_mode_is_a_capture_error() -> None:
    with pytest.raises(CaptureError, match="cannot join fanout group"):
        LiveSource("lo", fanout=(1, 0x7FFF))


def test_stop_reads_what_the_ring_already_holds() -> None:
    """frames() after stop() still hands over the packets the kernel captured before it: a
    SIGTERM must not discard the ring's backlog unseen."""
    port = _free_port()
    source = LiveSource("lo", bpf=f"udp port {port}", timeout_ms=20)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(50):
                sender.sendto(b"backlog %03d" % i, ("127.0.0.1", port))
        time.sleep(0.3)  # the ring's block is handed over after its retire timeout
        source.stop()
        started = time.monotonic()
        got = list(source.frames())
        took = time.monotonic() - started
    finally:
        source.close()
    payloads = {data[-11:] for _, _, data in got}
    assert payloads == {b"backlog %03d" % i for i in range(50)}
    assert took < STOP_DRAIN_S
