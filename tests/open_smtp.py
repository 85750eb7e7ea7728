"""Captures of many SMTP connections that stay open, built fast with struct (signal tests)."""

from __future__ import annotations

import struct
from pathlib import Path

BASE_TS = 1_700_000_000.0
STEP_S = 1e-4  # packet time between two frames: a whole capture spans seconds, never expires
SERVER = bytes([10, 0, 0, 25])
_ETH = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
_SYN, _ACK, _PSH_ACK, _SYN_ACK, _FIN_ACK = 0x02, 0x10, 0x18, 0x12, 0x11
_REC = struct.Struct("<IIII")


def _client(i: int) -> bytes:
    return bytes([10, 1, (i >> 8) & 0xFF, i & 0xFF])


class _Conn:
    """One connection's sequence numbers; frames come from `frame`."""

    def __init__(self, i: int, net: int) -> None:
        self.cip = bytes([10, net, (i >> 8) & 0xFF, i & 0xFF])
        self.cport = 20000 + i
        self.cseq = 1000
        self.sseq = 5000

    def frame(self, to_server: bool, flags: int, payload: bytes = b"") -> bytes:
        """An Ethernet/IPv4/TCP frame of this connection, advancing its sequence numbers."""
        if to_server:
            src, dst, sport, dport, seq, ack = (
                self.cip, SERVER, self.cport, 25, self.cseq, self.sseq
            )  # fmt: skip
        else:
            src, dst, sport, dport, seq, ack = (
                SERVER, self.cip, 25, self.cport, self.sseq, self.cseq
            )  # fmt: skip
        grow = len(payload) + (1 if flags & (_SYN | 0x01) else 0)
        if to_server:
            self.cseq += grow
        else:
            self.sseq += grow
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, src, dst)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0)
        return _ETH + ip + tcp + payload


def open_smtp_chunks(
    conns: int,
    rounds: int,
    net: int = 1,
    start: float = BASE_TS,
    close: bool = False,
    ehlo_reply: bytes = b"250 mx.test\r\n",
) -> list[bytes]:
    """A classic pcap as chunks: [file header, opening of every connection, round 1, ...].

    Every connection does a handshake, banner and EHLO, then `rounds` NOOP/250 exchanges, all
    interleaved; none closes unless `close` (then a last chunk holds QUIT/221 and FINs). Client
    addresses are 10.<net>.x.y, the server 10.0.0.25:25. Joined, the chunks are a whole file.
    """
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    cs = [_Conn(i, net) for i in range(conns)]
    ts = start
    out = [header]

    def emit(parts: list[bytes], frame: bytes) -> None:
        nonlocal ts
        ts += STEP_S
        sec = int(ts)
        parts.append(_REC.pack(sec, round((ts - sec) * 1e6) % 1_000_000, len(frame), len(frame)))
        parts.append(frame)

    opening: list[bytes] = []
    for c in cs:
        emit(opening, c.frame(True, _SYN))
        emit(opening, c.frame(False, _SYN_ACK))
        emit(opening, c.frame(True, _ACK))
        emit(opening, c.frame(False, _PSH_ACK, b"220 mx.test ESMTP\r\n"))
        emit(opening, c.frame(True, _PSH_ACK, b"EHLO c.test\r\n"))
        emit(opening, c.frame(False, _PSH_ACK, ehlo_reply))
    out.append(b"".join(opening))
    for _ in range(rounds):
        parts: list[bytes] = []
        for c in cs:
            emit(parts, c.frame(True, _PSH_ACK, b"NOOP\r\n"))
            emit(parts, c.frame(False, _PSH_ACK, b"250 2.0.0 ok\r\n"))
        out.append(b"".join(parts))
    if close:
        parts = []
        for c in cs:
            emit(parts, c.frame(True, _PSH_ACK, b"QUIT\r\n"))
            emit(parts, c.frame(False, _PSH_ACK, b"221 bye\r\n"))
            emit(parts, c.frame(False, _FIN_ACK))
            emit(parts, c.frame(True, _FIN_ACK))
            emit(parts, c.frame(False, _ACK))
        out.append(b"".join(parts))
    return out


def write_open_smtp(path: Path, conns: int, rounds: int, **kw: object) -> int:
    """Write open_smtp_chunks(...) to `path`; the number of frames written."""
    chunks = open_smtp_chunks(conns, rounds, **kw)  # type: ignore[arg-type]
    path.write_bytes(b"".join(chunks))
    return conns * (6 + 2 * rounds + (5 if kw.get("close") else 0))
