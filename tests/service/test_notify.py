"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's notify socket."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.service.notify import MAX_STATUS, Notifier

RECV_TIMEOUT_S = 2.0


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its path, as systemd makes $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(RECV_TIMEOUT_S)
    yield sock, path
    sock.close()


def _recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("capturing on eth1")
    assert _recv(sock) == ["READY=1", "STATUS=capturing on eth1"]
    n.status("x" * (MAX_STATUS + 50) + "\nsecond line")
    [status] = _recv(sock)
    assert status == "STATUS=" + "x" * MAX_STATUS  # one line, bounded
    n.stopping("stopping (SIGTERM)")
    assert _recv(sock) == ["STOPPING=1", "STATUS=stopping (SIGTERM)"]
    assert (n.sent, n.failed) == (3, 0)
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"port25-sensor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(RECV_TIMEOUT_S)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert _recv(sock) == ["READY=1"]
        n.close()


def test_watchdog_pings_at_half_the_interval_from_tick(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    assert n.watchdog_s == pytest.approx(0.2)
    n.ready()
    assert _recv(sock) == ["READY=1"]
    assert _recv(sock) == ["WATCHDOG=1"]  # ready() pings at once
    n.tick()  # too early: nothing sent
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
    time.sleep(0.25)
    n.tick()
    sock.settimeout(RECV_TIMEOUT_S)
    assert _recv(sock) == ["WATCHDOG=1"]


def test_no_pings_without_a_tick(listener: tuple[socket.socket, str]) -> None:
    """No thread pings on its own: a packet loop that stops turning stops the watchdog."""
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    n.ready()
    assert _recv(sock) == ["READY=1"]
    assert _recv(sock) == ["WATCHDOG=1"]
    time.sleep(0.3)
    sock.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


def test_watchdog_for_another_pid_is_ignored(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000",
                  "WATCHDOG_PID": str(os.getpid() + 1)})  # fmt: skip
    assert n.watchdog_s == 0.0


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.send("READY=1")
    n.ready()
    n.tick()
    n.stopping()
    assert n.sent == 0


def test_a_vanished_socket_is_counted_not_fatal(tmp_path: Path) -> None:
    path = str(tmp_path / "gone")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        n = Notifier({"NOTIFY_SOCKET": path})
    os.unlink(path)
    assert not n.send("READY=1")
    assert n.failed == 1
