"""A Redis connection of a few lines for the publisher: packed commands out, one reply back.

`--publish` needs nothing else from a Redis client, and importing redis-py (which imports
asyncio) costs the sensor 80-150 ms of CPU a run; the detector keeps redis-py. Plain `redis://`
and `unix://` URLs without client options only: the others go through redis-py.
"""

from __future__ import annotations

import socket
from typing import BinaryIO, Final
from urllib.parse import unquote, urlsplit

DEFAULT_PORT: Final = 6379
MAX_LINE: Final = 64 * 1024  # a reply line longer than this is not a server's


class RespError(Exception):
    """The server answered with an error (its message), or not in the protocol."""


def handles(server: str) -> bool:
    """Whether a connection of this module can serve the redis-py URL `server`."""
    parts = urlsplit(server)
    return parts.scheme in ("redis", "unix") and not parts.query


class RespConnection:
    """One connection, made on first use and again after a failure (OSError or RespError from
    `command` leave it closed)."""

    def __init__(self, server: str, connect_timeout_s: float, timeout_s: float) -> None:
        parts = urlsplit(server)
        self._unix = parts.path if parts.scheme == "unix" else ""
        self._host = parts.hostname or "localhost"
        self._port = parts.port or DEFAULT_PORT
        self._user = unquote(parts.username) if parts.username else ""
        self._password = unquote(parts.password) if parts.password else ""
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        self._db = int(db) if db else 0
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: BinaryIO | None = None

    def command(self, payload: bytes) -> object:
        """Send one packed command and return its reply (int, bytes, str, list or None)."""
        try:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            self._sock.sendall(payload)
            return self._reply()
        except (OSError, RespError, ValueError):  # ValueError: a length that is no number
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (the next command opens another)."""
        sock, reader = self._sock, self._reader
        self._sock = self._reader = None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()

    def _connect(self) -> None:
        if self._unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._connect_timeout_s)
            try:
                sock.connect(self._unix)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self._host, self._port), self._connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._timeout_s)
        self._sock = sock
        self._reader = sock.makefile("rb")
        if self._password:
            args = [b"AUTH", self._user.encode(), self._password.encode()] if self._user \
                else [b"AUTH", self._password.encode()]
            self._sock.sendall(pack(*args))
            self._reply()
        if self._db:
            self._sock.sendall(pack(b"SELECT", b"%d" % self._db))
            self._reply()

    def _reply(self) -> object:
        assert self._reader is not None
        line = self._reader.readline(MAX_LINE)
        if not line.endswith(b"\r\n"):
            raise OSError("connection closed by the server" if not line
                          else "reply line too long or cut")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            raise RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._reader.read(n + 2)
            if len(data) != n + 2:
                raise OSError("connection closed by the server")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError(f"not a Redis reply: {line[:40]!r}")


def pack(*args: bytes) -> bytes:
    """A command in the RESP protocol."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
