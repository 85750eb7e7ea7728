"""RELP client (rsyslog's Reliable Event Logging Protocol, librelp's doc/relp.md): frames and a
windowed session whose unacknowledged messages are sent again after a reconnect."""

from __future__ import annotations

import re
import select
import socket
import time
from typing import TYPE_CHECKING, Final

from sensor.sinks.transports import Transport, TransportError

if TYPE_CHECKING:
    from sensor.sinks.urls import SinkSpec

WINDOW: Final = 128  # unacknowledged "syslog" commands in flight (librelp's default window)
MAX_TXNR: Final = 999_999_999  # TXNR = 1*9DIGIT; after it the next TXNR is 1
MAX_DATALEN: Final = 128 * 1024  # relp version 1: the maximum data length is 128K
MAX_HEADER: Final = 9 + 1 + 32 + 1 + 9 + 1  # TXNR SP COMMAND SP DATALEN (SP|LF)
OFFERS: Final = b"relp_version=0\nrelp_software=port25-sensor\ncommands=syslog"
_HEADER: Final = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})([ \n])")
_HEADER_PREFIX: Final = re.compile(rb"[0-9]{0,9}( [A-Za-z]{0,32}( [0-9]{0,9})?)?")


class RelpProtocolError(TransportError):
    """The server sent bytes that are not RELP frames, or refused the session."""


def encode_frame(txnr: int, command: bytes, data: bytes = b"") -> bytes:
    """One RELP frame: TXNR SP COMMAND SP DATALEN [SP DATA] LF."""
    if data:
        return b"%d %b %d %b\n" % (txnr, command, len(data), data)
    return b"%d %b 0\n" % (txnr, command)


class RelpParser:
    """Sans-IO frame parser: feed() bytes in any split, get (txnr, command, data) frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes]]:
        """Returns the frames completed by `data`; raises RelpProtocolError on bad framing."""
        buf = self.buffer
        buf += data
        frames: list[tuple[int, bytes, bytes]] = []
        pos = 0
        while pos < len(buf):
            head = bytes(buf[pos:pos + MAX_HEADER])
            match = _HEADER.match(head)
            if match is None:
                partial = _HEADER_PREFIX.fullmatch(head)
                if partial is not None and len(head) < MAX_HEADER:
                    break  # an incomplete header: wait for more
                raise RelpProtocolError(f"not a RELP frame header: {head[:40]!r}")
            txnr = int(match.group(1))
            command = match.group(2)
            datalen = int(match.group(3))
            if datalen > MAX_DATALEN:
                raise RelpProtocolError(f"RELP frame of {datalen} bytes is over {MAX_DATALEN}")
            start = pos + match.end()
            if datalen == 0:
                if match.group(4) != b"\n":
                    raise RelpProtocolError("RELP frame with DATALEN 0 not ended by LF")
                frames.append((txnr, command, b""))
                pos = start
                continue
            if match.group(4) != b" ":
                raise RelpProtocolError("RELP frame header not followed by its data")
            end = start + datalen
            if end >= len(buf):
                break
            if buf[end] != 0x0A:
                raise RelpProtocolError("RELP frame not ended by LF (wrong DATALEN?)")
            frames.append((txnr, command, bytes(buf[start:end])))
            pos = end + 1
        del buf[:pos]
        return frames


def parse_offers(data: bytes) -> dict[bytes, list[bytes]]:
    """The offers of an "open" response's data after its status line: name -> values."""
    offers: dict[bytes, list[bytes]] = {}
    for line in data.split(b"\n"):
        if not line:
            continue
        name, _, values = line.partition(b"=")
        offers[name] = [v for v in values.split(b",") if v]
    return offers


class RelpTransport(Transport):
    """A RELP session: "syslog" commands in a window of WINDOW, each acknowledged by "rsp 200"."""

    resends = True

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.parser = RelpParser()
        self.unacked: dict[int, bytes] = {}
        self.txnr = 1
        self.closing_txnr = -1
        self.server_closed = False
        self.refusal = ""
        self.poller = select.poll()

    def _next_txnr(self) -> int:
        txnr = self.txnr
        self.txnr = 1 if txnr >= MAX_TXNR else txnr + 1
        return txnr

    def _read(self, block: float) -> list[tuple[int, bytes, bytes]]:
        """Reads what has arrived, waiting up to `block` seconds for the first bytes."""
        sock = self.sock
        assert sock is not None
        frames: list[tuple[int, bytes, bytes]] = []
        wait_ms = int(block * 1000)
        while self.poller.poll(wait_ms):
            wait_ms = 0
            data = sock.recv(65536)  # readable: returns at once
            if not data:
                # acks read so far still count; the rest is sent again after reconnecting
                self._handle(frames)
                raise ConnectionError("the RELP server closed the connection")
            frames += self.parser.feed(data)
        return frames

    def open(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((self.spec.host, self.spec.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        open_txnr = self._next_txnr()
        sock.sendall(encode_frame(open_txnr, b"open", OFFERS))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer to the RELP open command")
            for txnr, command, data in self._read(remaining):
                if command == b"serverclose":
                    raise ConnectionError("the RELP server closed the session at once")
                if command != b"rsp" or txnr != open_txnr:
                    raise RelpProtocolError(f"unexpected RELP frame {txnr} {command!r}")
                status, _, rest = data.partition(b"\n")
                if not status.startswith(b"200"):
                    raise RelpProtocolError("the RELP server refused the session: "
                                            + status.decode("utf-8", "replace"))
                offers = parse_offers(rest)
                if b"relp_version" not in offers:
                    raise RelpProtocolError("the RELP server offered no relp_version")
                if b"syslog" not in offers.get(b"commands", []):
                    raise RelpProtocolError("the RELP server does not accept syslog commands")
                return

    def deliver(self, batch: list[bytes]) -> None:
        sock = self.sock
        assert sock is not None
        unacked = self.unacked
        frames = []
        for message in batch:
            if len(message) > MAX_DATALEN:
                self.rejected += 1
                continue
            txnr = self._next_txnr()
            unacked[txnr] = message
            frames.append(encode_frame(txnr, b"syslog", message))
        sock.settimeout(30.0)
        sock.sendall(b"".join(frames))

    def _handle(self, frames: list[tuple[int, bytes, bytes]]) -> None:
        unacked = self.unacked
        for txnr, command, data in frames:
            if command == b"rsp":
                if txnr == self.closing_txnr:
                    self.closing_txnr = 0
                elif unacked.pop(txnr, None) is not None:
                    if data.startswith(b"200"):
                        self.confirmed += 1
                    else:
                        self.rejected += 1
                        self.refusal = data.decode("utf-8", "replace")[:200]
            elif command == b"serverclose":
                self.server_closed = True
            # other hints (txnr 0) are ignored, as the protocol allows

    def poll(self) -> None:
        self._handle(self._read(0.0))
        if self.server_closed:
            raise ConnectionError("the RELP server sent serverclose")

    def can_accept(self) -> bool:
        return len(self.unacked) < WINDOW

    def room(self) -> int:
        return max(0, WINDOW - len(self.unacked))

    def wait_fd(self) -> int:
        sock = self.sock
        return -1 if sock is None else sock.fileno()

    def finish(self, deadline: float) -> None:
        """Waits for the outstanding acknowledgements, then sends "close" and waits for its
        answer (all before `deadline`)."""
        try:
            while self.unacked and not self.server_closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._handle(self._read(min(remaining, 0.5)))
            if self.server_closed:
                return
            sock = self.sock
            assert sock is not None
            self.closing_txnr = self._next_txnr()
            sock.sendall(encode_frame(self.closing_txnr, b"close"))
            while self.closing_txnr > 0 and not self.server_closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._handle(self._read(min(remaining, 0.5)))
        except (OSError, TransportError):
            return

    def take_unconfirmed(self) -> list[bytes]:
        out = list(self.unacked.values())
        self.unacked.clear()
        return out
