"""Builders for TCP segment tuples and a handler that records what the reassembler delivers."""

from __future__ import annotations

from dataclasses import dataclass, field

from sensor.records import ConnRecord, TcpStats
from sensor.tcp.reassembler import Reassembler, StreamHandler, TcpLimits

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT = bytes([10, 0, 0, 1])
SERVER = bytes([10, 0, 0, 2])
MSS_1460 = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, window scale 7
MASK = 0xFFFFFFFF

Seg = tuple[bytes, bytes, int, int, int, int, int, int, int, bytes, bytes]


@dataclass
class Recorder:
    """A StreamHandler keeping every event, per connection, in arrival order."""

    uid: str
    events: list[tuple[str, bool | None, float, object]] = field(default_factory=list)
    stream: dict[bool, bytearray] = field(
        default_factory=lambda: {True: bytearray(), False: bytearray()}
    )
    gaps: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    record: ConnRecord | None = None
    close_ts: float | None = None

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        assert self.record is None, "data after close"
        assert payload, "empty data event"
        self.events.append(("data", to_server, ts, bytes(payload)))
        self.stream[to_server] += payload

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        assert self.record is None, "gap after close"
        assert n > 0
        self.events.append(("gap", to_server, ts, n))
        self.gaps[to_server] += n

    def close(self, ts: float, record: ConnRecord) -> None:
        assert self.record is None, "closed twice"
        self.events.append(("close", None, ts, record))
        self.record = record
        self.close_ts = ts


class Harness:
    """A Reassembler with recording handlers and the records it emitted."""

    def __init__(self, limits: TcpLimits | None = None, ports: frozenset[int] = frozenset({25})):
        self.stats = TcpStats()
        self.handlers: list[Recorder] = []
        self.records: list[ConnRecord] = []
        self.r = Reassembler(self._factory, self.stats, limits, ports, self.records.append)

    def _factory(
        self, uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
    ) -> StreamHandler:
        h = Recorder(uid)
        self.handlers.append(h)
        return h

    def feed(self, segs: list[tuple[float, Seg]]) -> None:
        for ts, s in segs:
            self.r.segment(ts, s)


def seg(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    payload: bytes = b"",
    window: int = 65535,
    ttl: int = 64,
    options: bytes = b"",
) -> Seg:
    """One decoded segment tuple, in the decoder's field order."""
    return (src, dst, sport, dport, seq & MASK, ack & MASK, flags, window, ttl, options, payload,
            54 + len(options) + len(payload))  # fmt: skip


@dataclass
class Conv:
    """A client/server conversation whose offsets are relative to each side's ISN + 1."""

    cisn: int = 1000
    sisn: int = 5000
    cport: int = 40000
    sport: int = 25
    client: bytes = CLIENT
    server: bytes = SERVER

    def syn(self, payload: bytes = b"") -> Seg:
        return seg(self.client, self.server, self.cport, self.sport, self.cisn, 0, SYN,
                   payload, options=MSS_1460, ttl=57, window=29200)  # fmt: skip

    def synack(self) -> Seg:
        return seg(self.server, self.client, self.sport, self.cport, self.sisn, self.cisn + 1,
                   SYN | ACK)  # fmt: skip

    def c(self, off: int, payload: bytes = b"", flags: int = ACK, ack: int = 0) -> Seg:
        return seg(self.client, self.server, self.cport, self.sport, self.cisn + 1 + off,
                   self.sisn + 1 + ack, flags, payload)  # fmt: skip

    def s(self, off: int, payload: bytes = b"", flags: int = ACK, ack: int = 0) -> Seg:
        return seg(self.server, self.client, self.sport, self.cport, self.sisn + 1 + off,
                   self.cisn + 1 + ack, flags, payload)  # fmt: skip

    def handshake(self) -> list[Seg]:
        return [self.syn(), self.synack(), self.c(0)]
