"""Syslog transports (udp, tcp, tls, unix) with their framing and what each can confirm."""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import ssl
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sensor.sinks.urls import SinkSpec

# UDP truncation (RFC 5426 section 3.2 lets a sender truncate): this replaces the cut tail.
TRUNCATION_MARKER: Final = b"...[truncated]"
# LF framing cannot carry an LF inside a message: it is written as rsyslog writes control
# characters it escapes on reception (#ooo, octal), so the frame is never split.
LF_ESCAPE: Final = b"#012"
# tcp/tls: messages are confirmed by an orderly close the collector answers (a checkpoint),
# made this long after the first unconfirmed write, or once this many are unconfirmed.
CHECKPOINT_S: Final = 5.0
CHECKPOINT_MESSAGES: Final = 50_000
MAX_UNCONFIRMED: Final = CHECKPOINT_MESSAGES
WRITE_TIMEOUT_S: Final = 30.0  # a collector that reads nothing for this long is dropped
_POLL_IN: Final = select.POLLIN | select.POLLERR | select.POLLHUP


class TransportError(Exception):
    """The collector broke the protocol or refused the session (not an OS-level error)."""


def frame_octet(message: bytes) -> bytes:
    """RFC 6587 section 3.4.1 octet counting: "LEN SP MSG"."""
    return b"%d %b" % (len(message), message)


def frame_lf(message: bytes) -> bytes:
    """RFC 6587 section 3.4.2 non-transparent framing: the message, LFs escaped, then LF."""
    if b"\n" in message:
        message = message.replace(b"\n", LF_ESCAPE)
    return message + b"\n"


def truncate_datagram(message: bytes, limit: int) -> bytes:
    """Cuts `message` to `limit` bytes ending in TRUNCATION_MARKER, never inside a UTF-8
    character."""
    cut = max(0, limit - len(TRUNCATION_MARKER))
    while cut > 0 and message[cut] & 0xC0 == 0x80:  # inside a character: cut before its start
        cut -= 1
    return message[:cut] + TRUNCATION_MARKER


class Transport:
    """One connection to a collector, owned by a sink's thread.

    deliver() takes ownership of a batch at once: each message ends up counted in `confirmed`,
    `rejected`, or returned by take_unconfirmed(). drain() hands the counters to the sink.
    """

    resends = False  # True: unconfirmed messages are sent again after reconnecting (relp)

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.sock: socket.socket | None = None
        self.confirmed = 0
        self.truncated = 0
        self.rejected = 0

    def drain(self) -> tuple[int, int, int]:
        """Returns and resets (confirmed, truncated, rejected)."""
        out = (self.confirmed, self.truncated, self.rejected)
        self.confirmed = self.truncated = self.rejected = 0
        return out

    def open(self, timeout: float) -> None:
        """Connects (and handshakes); raises OSError or TransportError."""
        raise NotImplementedError

    def deliver(self, batch: list[bytes]) -> None:
        """Writes a batch; raises OSError or TransportError if the connection failed."""
        raise NotImplementedError

    def poll(self) -> None:
        """Checks the connection without blocking and confirms what can be confirmed."""

    def can_accept(self) -> bool:
        """Whether deliver() may be called now."""
        return True

    def checkpoint_due(self) -> bool:
        """Whether the sink should close in order now, to confirm, and connect again."""
        return False

    def room(self) -> int:
        """How many messages deliver() may take now."""
        return MAX_UNCONFIRMED

    def wait_fd(self) -> int:
        """A descriptor that becomes readable when poll() has something to do, or -1."""
        return -1

    def finish(self, deadline: float) -> None:
        """Orderly close before `deadline`, confirming what the collector shows it received."""

    def take_unconfirmed(self) -> list[bytes]:
        """Removes and returns the messages written but not (yet) confirmed."""
        return []

    def abort(self) -> None:
        """Closes the connection at once (callable from another thread)."""
        sock = self.sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class UdpTransport(Transport):
    """RFC 5426: one message per datagram, cut at max_datagram; no delivery signal exists."""

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.addr: tuple[str, int] | tuple[str, int, int, int] = ("", 0)
        self.unsent: list[bytes] = []

    def open(self, timeout: float) -> None:
        infos = socket.getaddrinfo(self.spec.host, self.spec.port, 0, socket.SOCK_DGRAM)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        self.sock = sock
        self.addr = addr  # type: ignore[assignment]  # (host, port[, flow, scope]) by family

    def deliver(self, batch: list[bytes]) -> None:
        sock = self.sock
        assert sock is not None
        limit = self.spec.max_datagram
        addr = self.addr
        for i, message in enumerate(batch):
            if len(message) > limit:
                message = truncate_datagram(message, limit)
                self.truncated += 1
            try:
                sock.sendto(message, addr)
            except OSError:
                self.unsent = batch[i:]
                raise
            self.confirmed += 1

    def take_unconfirmed(self) -> list[bytes]:
        out, self.unsent = self.unsent, []
        return out


class StreamTransport(Transport):
    """tcp and tls (RFC 6587 octet counting or LF framing; RFC 5425 for tls), and unix streams.

    TCP acknowledges bytes to the collector's kernel, not messages to the collector: bytes it
    acknowledged can still be lost unread in its socket, or read into its buffers and dropped
    at a shutdown (both measured with rsyslog). So written messages stay unconfirmed until a
    checkpoint: an orderly close (our FIN, or TLS close_notify) that the collector answers by
    closing its side, which it does once it has read and taken in everything before it. A
    checkpoint is made CHECKPOINT_S after the first unconfirmed write, or when
    CHECKPOINT_MESSAGES are unconfirmed, and at shutdown; the sink then connects again. If the
    connection ends any other way, every unconfirmed message is possibly lost.
    """

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.frame = frame_lf if spec.framing == "lf" else frame_octet
        self.batches: list[list[bytes]] = []
        self.unconfirmed = 0
        self.first_unconfirmed_at = 0.0
        self.poller = select.poll()

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.spec.host, self.spec.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def open(self, timeout: float) -> None:
        sock = self._connect(timeout)
        self.sock = sock
        self.poller.register(sock.fileno(), _POLL_IN)

    def deliver(self, batch: list[bytes]) -> None:
        sock = self.sock
        assert sock is not None
        frame = self.frame
        data = b"".join([frame(m) for m in batch])
        if not self.unconfirmed:
            self.first_unconfirmed_at = time.monotonic()
        self.batches.append(batch)
        self.unconfirmed += len(batch)
        sock.settimeout(WRITE_TIMEOUT_S)
        sock.sendall(data)

    def _check_alive(self) -> None:
        """Raises ConnectionError if the collector closed or reset the connection."""
        sock = self.sock
        assert sock is not None
        while self.poller.poll(0):
            # readable: recv returns at once; a syslog collector sends nothing, so whatever
            # it sends is read and ignored
            if not sock.recv(4096):
                raise ConnectionError("the collector closed the connection")

    def poll(self) -> None:
        self._check_alive()

    def checkpoint_due(self) -> bool:
        return self.unconfirmed > 0 and (
            self.unconfirmed >= CHECKPOINT_MESSAGES
            or time.monotonic() - self.first_unconfirmed_at >= CHECKPOINT_S)

    def can_accept(self) -> bool:
        return self.unconfirmed < MAX_UNCONFIRMED

    def room(self) -> int:
        return max(0, MAX_UNCONFIRMED - self.unconfirmed)

    def wait_fd(self) -> int:
        sock = self.sock
        return -1 if sock is None else sock.fileno()

    def _confirm_all(self) -> None:
        self.confirmed += self.unconfirmed
        self.unconfirmed = 0
        self.batches.clear()

    def _close_tls(self, sock: socket.socket) -> socket.socket | None:
        """Sends close_notify; returns the plain socket, or None if the peer went away."""
        assert isinstance(sock, ssl.SSLSocket)
        try:
            return sock.unwrap()
        except ssl.SSLEOFError:
            self._confirm_all()  # the collector closed in answer to our close_notify
            return None
        except (OSError, ValueError):
            return None

    def finish(self, deadline: float) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            self.poll()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            sock.settimeout(remaining)
            if isinstance(sock, ssl.SSLSocket):
                plain = self._close_tls(sock)
                if plain is None:
                    return
                sock = plain
                self.sock = plain
            sock.shutdown(socket.SHUT_WR)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                sock.settimeout(remaining)
                if not sock.recv(4096):
                    # the collector closed in answer to our FIN: it read everything before
                    # it (a collector closing with unread data resets the connection instead)
                    self._confirm_all()
                    return
        except (OSError, ValueError):
            return

    def take_unconfirmed(self) -> list[bytes]:
        out = [m for batch in self.batches for m in batch]
        self.batches.clear()
        self.unconfirmed = 0
        return out


def tls_context(spec: SinkSpec) -> ssl.SSLContext:
    """The client context for a tls:// sink: chain always verified, hostname unless verify=0."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = (ssl.TLSVersion.TLSv1_3 if spec.tls_min == "1.3"
                               else ssl.TLSVersion.TLSv1_2)
    if spec.ca_file:
        context.load_verify_locations(cafile=spec.ca_file)
    else:
        context.load_default_certs()
    if spec.cert_file:
        context.load_cert_chain(spec.cert_file, spec.key_file)
    context.check_hostname = spec.verify_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsTransport(StreamTransport):
    """RFC 5425: octet-counted frames over TLS."""

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.context = tls_context(spec)

    def _connect(self, timeout: float) -> socket.socket:
        plain = super()._connect(timeout)
        try:
            return self.context.wrap_socket(
                plain, server_hostname=self.spec.server_name or self.spec.host)
        except BaseException:
            plain.close()
            raise

    def _check_alive(self) -> None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        if not self.poller.poll(0) and not sock.pending():
            return
        sock.settimeout(0.0)
        try:
            while True:
                try:
                    data = sock.recv(4096)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    return  # TLS housekeeping only (session tickets): the connection is open
                if not data:
                    raise ConnectionError("the collector closed the connection")
        finally:
            sock.settimeout(WRITE_TIMEOUT_S)


class UnixTransport(StreamTransport):
    """A local socket such as /dev/log: datagrams, or LF-framed stream if it is a stream socket.

    Datagrams carry no delivery signal (sent = accepted by the kernel); a message larger than
    the socket accepts is counted as undeliverable. No NUL is ever appended.
    """

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.frame = frame_lf
        self.datagram = True
        self.unsent: list[bytes] = []

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.spec.path)
            self.datagram = True
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.spec.path)
        except BaseException:
            sock.close()
            raise
        self.datagram = False
        return sock

    def deliver(self, batch: list[bytes]) -> None:
        if not self.datagram:
            super().deliver(batch)
            return
        sock = self.sock
        assert sock is not None
        sock.settimeout(WRITE_TIMEOUT_S)
        for i, message in enumerate(batch):
            try:
                sock.send(message)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    self.rejected += 1
                    continue
                self.unsent = batch[i:]
                raise
            self.confirmed += 1

    def poll(self) -> None:
        if not self.datagram:
            super().poll()

    def wait_fd(self) -> int:
        return super().wait_fd() if not self.datagram else -1

    def checkpoint_due(self) -> bool:
        return not self.datagram and super().checkpoint_due()

    def finish(self, deadline: float) -> None:
        if not self.datagram:
            super().finish(deadline)

    def take_unconfirmed(self) -> list[bytes]:
        if not self.datagram:
            return super().take_unconfirmed()
        out, self.unsent = self.unsent, []
        return out


def make_transport(spec: SinkSpec) -> Transport:
    """A new, unconnected transport for `spec`."""
    if spec.scheme == "udp":
        return UdpTransport(spec)
    if spec.scheme == "tcp":
        return StreamTransport(spec)
    if spec.scheme == "tls":
        return TlsTransport(spec)
    if spec.scheme == "unix":
        return UnixTransport(spec)
    from sensor.sinks.relp import RelpTransport

    return RelpTransport(spec)
