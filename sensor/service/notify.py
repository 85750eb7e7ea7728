"""The sd_notify protocol, written directly: state datagrams to systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from typing import Final

WATCHDOG_SHARE: Final = 0.5
"""Part of $WATCHDOG_USEC between two WATCHDOG=1 (sd_watchdog_enabled(3) advises half)."""
MAX_STATUS: Final = 200
"""Characters of STATUS= text sent at most (one line, shown by `systemctl status`)."""


class Notifier:
    """Tells the service manager the sensor's state; does nothing when not run under one.

    READY=1 once capturing, STATUS= lines, WATCHDOG=1 from the packet loop (`tick()`), STOPPING=1
    at shutdown. The socket is made and connected at construction (before privileges are
    dropped, so that the user the sensor becomes needs no access to the socket file), and each
    message is one datagram, as sd_notify(3) sends them; a failed send is counted, never fatal.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address: str | bytes | None = None
        self.watchdog_s = 0.0
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        self._next_ping = 0.0
        path = env.get("NOTIFY_SOCKET", "")
        if path.startswith("@"):  # abstract namespace: a leading NUL byte
            self.address = b"\0" + path[1:].encode()
        elif path.startswith("/"):
            self.address = path
        self._connected = False
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:  # the socket file's permissions are checked now, while the sensor is root
                self._sock.connect(self.address)
                self._connected = True
            except OSError:
                self.failed += 1
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6 * WATCHDOG_SHARE

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._sock is not None

    def send(self, *assignments: str) -> bool:
        """Send VAR=VALUE assignments as one datagram; False when it could not be sent."""
        if self._sock is None or self.address is None:
            return False
        try:
            data = "\n".join(assignments).encode("utf-8", "replace")
            if self._connected:
                self._sock.send(data)
            else:
                self._sock.sendto(data, self.address)
        except OSError:
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> None:
        """The sensor is capturing (systemd's start job completes)."""
        self.send("READY=1", *((_status(status),) if status else ()))
        self._next_ping = time.monotonic()
        self.tick()

    def status(self, text: str) -> None:
        """A one-line status for `systemctl status`."""
        self.send(_status(text))

    def stopping(self, status: str = "") -> None:
        """The sensor is shutting down (flushing)."""
        self.send("STOPPING=1", *((_status(status),) if status else ()))

    def reloading(self) -> None:
        """A SIGHUP is being handled (RELOADING=1, READY=1 follows)."""
        self.send("RELOADING=1")

    def tick(self) -> None:
        """Call it from the packet loop: sends WATCHDOG=1 when half the watchdog time has
        passed since the last one, so a loop that stops turning stops the pings."""
        if not self.watchdog_s:
            return
        now = time.monotonic()
        if now >= self._next_ping:
            self.send("WATCHDOG=1")
            self._next_ping = now + self.watchdog_s

    def close(self) -> None:
        """Release the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())[:MAX_STATUS]
