"""Frame and capture builders for the capture tests (scapy crafts, our writers or struct write)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402 - after silencing scapy's warnings
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether  # noqa: E402

MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"


def ip4_tcp(i: int, dport: int = 25, payload: bytes = b"EHLO x\r\n") -> bytes:
    """Raw IPv4/TCP packet number i (source port varies with i)."""
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=i) / TCP(sport=40000 + i, dport=dport, seq=i)
    return bytes(pkt / payload)


def ip6_tcp(i: int, dport: int = 25, payload: bytes = b"EHLO x\r\n") -> bytes:
    """Raw IPv6/TCP packet number i."""
    pkt = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=40000 + i, dport=dport)
    return bytes(pkt / payload)


def eth(packet: bytes, vlans: Sequence[int] = (), qinq: bool = False) -> bytes:
    """Ethernet frame around an IPv4 or IPv6 packet, with 802.1Q tags (outer 802.1ad if qinq)."""
    frame = Ether(src=MAC_A, dst=MAC_B)
    for n, vid in enumerate(vlans):
        frame = frame / (Dot1AD(vlan=vid) if qinq and n == 0 else Dot1Q(vlan=vid))
    inner = IP(packet) if packet[0] >> 4 == 4 else IPv6(packet)
    return bytes(frame / inner)


def eth_tcp(i: int, dport: int = 25, vlans: Sequence[int] = (), qinq: bool = False) -> bytes:
    """Ethernet/IPv4/TCP frame number i."""
    return eth(ip4_tcp(i, dport), vlans, qinq)


def eth_udp(i: int) -> bytes:
    """Ethernet/IPv4/UDP frame (DNS-like), never matched by the SMTP filter."""
    return bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(dport=53))


def write_pcap_raw(
    path: Path,
    records: Sequence[tuple[int, int, bytes]],
    order: str = "<",
    nano: bool = False,
    linktype: int = 1,
) -> None:
    """Classic pcap in either byte order from (sec, frac, frame) records."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for sec, frac, frame in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
