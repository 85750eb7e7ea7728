"""scapy re-parses generated frames: checksums verify, and the link layer varies as promised."""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import rdpcap
from simhelp import Generated

from sensor.simulate.frames import checksum_fold, make_direction, words_sum


def _frames(pcap: Path) -> list[bytes]:
    data = pcap.read_bytes()
    off, out = 24, []
    while off < len(data):
        _, _, caplen, _ = struct.unpack_from("<IIII", data, off)
        out.append(data[off + 16:off + 16 + caplen])
        off += 16 + caplen
    return out


def test_checksums_verify_with_scapy(generated: dict[str, Generated]) -> None:
    packets = rdpcap(str(generated["benign"].pcap))
    kinds = {"v4": 0, "v6": 0, "vlan": 0, "options": 0}
    for pkt in packets[:: max(1, len(packets) // 400)]:
        tcp = pkt[TCP]
        if IP in pkt:
            kinds["v4"] += 1
            ip = pkt[IP]
            fresh = IP(bytes(ip))
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == ip.chksum
        else:
            kinds["v6"] += 1
            assert IPv6 in pkt
        kinds["vlan"] += Dot1Q in pkt
        kinds["options"] += bool(tcp.options)
        rebuilt = pkt.copy()
        del rebuilt[TCP].chksum
        assert Ether(bytes(rebuilt))[TCP].chksum == tcp.chksum
    assert all(kinds.values()), kinds


def test_syn_carries_handshake_options(generated: dict[str, Generated]) -> None:
    packets = rdpcap(str(generated["spambot-burst"].pcap))
    syns = [p for p in packets if p[TCP].flags == "S"]
    assert syns
    names = {name for name, _ in syns[0][TCP].options}
    assert {"MSS", "WScale", "SAckOK"} <= names
    assert syns[0][IP].ttl in range(100, 129)  # a Windows bot one or two hops away


def test_checksum_helpers_agree_with_the_rfc_1071_example() -> None:
    # RFC 1071 section 3 sums the words 0001 f203 f4f5 f6f7 to ddf2 (before complement).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum_fold(words_sum(data)) == 0xFFFF - 0xDDF2
    assert checksum_fold(words_sum(b"\x01")) == 0xFFFF - 0x0100


def test_frames_from_a_direction_parse_as_tcp() -> None:
    d = make_direction("10.0.0.1", "10.0.0.2", 40000, 25, 64, 7, 1, 0)
    frame = d.frame(1, 2, 0x18, 502, b"", b"EHLO x\r\n", words_sum(b"EHLO x\r\n"))
    pkt = Ether(frame)
    assert pkt[Dot1Q].vlan == 7 and pkt[TCP].dport == 25
    assert bytes(pkt[TCP].payload) == b"EHLO x\r\n"
    d6 = make_direction("2001:db8::1", "2001:db8::2", 40000, 25, 64, 0, 1, 5)
    pkt6 = Ether(d6.frame(1, 2, 0x10, 502, b"", b"", 0))
    again = pkt6.copy()
    del again[TCP].chksum
    assert Ether(bytes(again))[TCP].chksum == pkt6[TCP].chksum
