"""Splits a capture by client address, as two taps each seeing some of the clients would."""

from __future__ import annotations

import socket
import zlib
from pathlib import Path

from sensor.capture.pcapfile import read_pcap
from sensor.capture.writer import PcapWriter
from sensor.decode.packet import Decoder
from sensor.records import CaptureStats

SERVER_PORTS = (25, 587)


def client_of(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    """The client's packed address: the side not on a server port."""
    return dst if sport in SERVER_PORTS and dport not in SERVER_PORTS else src


def split_by_client(capture: Path, outs: list[Path]) -> list[set[str]]:
    """Write each frame to outs[crc32(client) % len(outs)]; the clients of each part."""
    stats = CaptureStats()
    decoder = Decoder(stats)
    clients: list[set[str]] = [set() for _ in outs]
    writers = [PcapWriter(str(p)) for p in outs]
    try:
        with capture.open("rb") as fh:
            for ts, linktype, data in read_pcap(fh, stats):
                seg = decoder.decode(linktype, data)
                if seg is None:
                    continue
                client = client_of(seg[0], seg[1], seg[2], seg[3])
                part = zlib.crc32(client) % len(outs)
                family = socket.AF_INET if len(client) == 4 else socket.AF_INET6
                clients[part].add(socket.inet_ntop(family, client))
                writers[part].write(ts, data)
    finally:
        for w in writers:
            w.close()
    return clients
