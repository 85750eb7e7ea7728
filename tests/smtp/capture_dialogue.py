"""Writes an SMTP dialogue as a real capture (Ethernet/IPv4/TCP in pcap), with or without its
handshake, to drive the pipeline and the CLI end to end."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sensor.capture.writer import PcapWriter

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP  # noqa: E402 - after silencing scapy's warnings
from scapy.layers.l2 import Ether  # noqa: E402

CLIENT_IP, SERVER_IP = "10.1.2.3", "198.51.100.25"
CLIENT_PORT, SERVER_PORT = 40001, 25
MSS = 1400


def write_dialogue(
    path: Path,
    events: Sequence[tuple[bool, bytes]],
    *,
    handshake: bool = True,
    t0: float = 1_700_000_000.0,
    client_ip: str = CLIENT_IP,
    server_ip: str = SERVER_IP,
    client_port: int = CLIENT_PORT,
) -> None:
    """Write (to_server, payload) events 10 ms apart, payloads cut at MSS, each acked; a FIN
    exchange ends the connection. Without ``handshake`` the capture starts at the first payload,
    as a capture started in the middle of the connection would."""
    seq = {True: 1_000_000, False: 5_000_000}
    ts = t0
    frames: list[tuple[float, bytes]] = []

    def seg(to_server: bool, flags: str, payload: bytes = b"") -> None:
        nonlocal ts
        src, dst = (client_ip, server_ip) if to_server else (server_ip, client_ip)
        sport, dport = (client_port, SERVER_PORT) if to_server else (SERVER_PORT, client_port)
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src=src, dst=dst, ttl=64)
               / TCP(sport=sport, dport=dport, flags=flags, seq=seq[to_server],
                     ack=seq[not to_server] if "A" in flags else 0, window=65535))  # fmt: skip
        frames.append((ts, bytes(pkt / payload) if payload else bytes(pkt)))
        seq[to_server] += len(payload) + (1 if "S" in flags or "F" in flags else 0)
        ts += 0.001

    if handshake:
        seg(True, "S")
        seg(False, "SA")
        seg(True, "A")
    for to_server, payload in events:
        ts += 0.01
        for k in range(0, len(payload), MSS):
            seg(to_server, "PA", payload[k : k + MSS])
        seg(not to_server, "A")
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    with PcapWriter(str(path)) as w:
        for t, frame in frames:
            w.write(t, frame)
