"""Ethernet/802.1Q/IPv4/IPv6/TCP frames with correct checksums, built with struct."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import Enum, StrEnum

ETHERTYPE_IPV4 = 0x0800  # IEEE 802.3 EtherType registry
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # IEEE 802.1Q tag protocol identifier
IPPROTO_TCP = 6  # RFC 790 assigned protocol number
IPV4_DONT_FRAGMENT = 0x4000  # RFC 791 section 3.1, flags field
SMTP_PORT = 25  # RFC 5321 section 4.5.4.2
SUBMISSION_PORT = 587  # RFC 6409 section 3.1

_ETH = struct.Struct("!6s6sH")
_VLAN = struct.Struct("!6s6sHHH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")


class TcpOpt(bytes, Enum):
    """TCP option kinds used in generated headers (RFC 9293 section 3.2, RFC 7323, RFC 2018)."""

    NOP = b"\x01"
    MSS = b"\x02\x04"
    WSCALE = b"\x03\x03"
    SACK_PERM = b"\x04\x02"
    TIMESTAMPS = b"\x08\x0a"


class OsProfile(StrEnum):
    """Operating-system TCP personalities an actor's hosts may have."""

    LINUX = "linux"
    """Linux: TTL 64, SACK and timestamps, window scale 7, 40 ms delayed ACK."""
    WINDOWS = "windows"
    """Windows: TTL 128, no timestamps, window scale 8, 200 ms delayed ACK."""
    FREEBSD = "freebsd"
    """FreeBSD: TTL 64, window 65535, scale 6, timestamps."""
    EMBEDDED = "embedded"
    """Printers and appliances: TTL 255, small window, MSS only."""


@dataclass(slots=True, frozen=True)
class OsTraits:
    """The numbers that make one OS personality recognisable on the wire."""

    ttl: int
    window: int
    wscale: int | None
    mss: int
    sack: bool
    timestamps: bool
    delack_us: int
    port_lo: int
    port_hi: int


OS_TRAITS: dict[OsProfile, OsTraits] = {
    OsProfile.LINUX: OsTraits(64, 64240, 7, 1460, True, True, 40_000, 32768, 60999),
    OsProfile.WINDOWS: OsTraits(128, 64240, 8, 1460, True, False, 200_000, 49152, 65535),
    OsProfile.FREEBSD: OsTraits(64, 65535, 6, 1460, True, True, 100_000, 10000, 65535),
    OsProfile.EMBEDDED: OsTraits(255, 5840, None, 1460, False, False, 200_000, 1024, 5000),
}


def checksum_fold(total: int) -> int:
    """The Internet checksum (RFC 1071) of words whose sum modulo 0xFFFF is `total`."""
    rest = total % 0xFFFF
    return 0xFFFF - rest if rest else 0


def words_sum(data: bytes) -> int:
    """A value congruent, modulo 0xFFFF, to the one's-complement sum of `data` as 16-bit words."""
    if len(data) & 1:
        return int.from_bytes(data, "big") << 8
    return int.from_bytes(data, "big")


def mac_for(addr: str) -> bytes:
    """A stable locally administered MAC address derived from an IP address."""
    packed = ipaddress.ip_address(addr).packed
    return b"\x02" + bytes(packed[-5:]).rjust(5, b"\x00")


@dataclass(slots=True)
class Direction:
    """Precomputed link and network headers for one direction of one connection."""

    prefix: bytes  # Ethernet (and VLAN) header
    v6: bool
    src: bytes
    dst: bytes
    ttl: int
    sport: int
    dport: int
    pseudo: int
    ip_id: int
    flow_label: int

    def frame(
        self, seq: int, ack: int, flags: int, win: int, opts: bytes, payload: bytes, psum: int
    ) -> bytes:
        """One complete frame; `psum` is words_sum(payload), cached by the caller."""
        hlen = 20 + len(opts)
        tcp = _TCP.pack(self.sport, self.dport, seq, ack, hlen << 2, flags, win, 0, 0) + opts
        tcp_len = hlen + len(payload)
        csum = checksum_fold(self.pseudo + tcp_len + int.from_bytes(tcp, "big") + psum)
        tcp = tcp[:16] + csum.to_bytes(2, "big") + tcp[18:]
        if self.v6:
            ip = _IPV6.pack(0x60000000 | self.flow_label, tcp_len, IPPROTO_TCP, self.ttl,
                            self.src, self.dst)
        else:
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            ip = _IPV4.pack(0x45, 0, 20 + tcp_len, self.ip_id, IPV4_DONT_FRAGMENT, self.ttl,
                            IPPROTO_TCP, 0, self.src, self.dst)
            ipsum = checksum_fold(int.from_bytes(ip, "big"))
            ip = ip[:10] + ipsum.to_bytes(2, "big") + ip[12:]
        return self.prefix + ip + tcp + payload


def make_direction(
    src: str, dst: str, sport: int, dport: int, ttl: int, vlan: int, ip_id: int, flow_label: int
) -> Direction:
    """Headers for packets from `src`:`sport` to `dst`:`dport` (VLAN tag when `vlan` > 0)."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    v6 = s.version == 6
    ethertype = ETHERTYPE_IPV6 if v6 else ETHERTYPE_IPV4
    if vlan > 0:
        prefix = _VLAN.pack(mac_for(dst), mac_for(src), ETHERTYPE_VLAN, vlan & 0x0FFF, ethertype)
    else:
        prefix = _ETH.pack(mac_for(dst), mac_for(src), ethertype)
    pseudo = words_sum(s.packed + d.packed) + IPPROTO_TCP
    return Direction(prefix, v6, s.packed, d.packed, ttl, sport, dport, pseudo, ip_id, flow_label)


def syn_options(
    mss: int, sack: bool, tsval: int | None, tsecr: int, wscale: int | None
) -> bytes:
    """SYN or SYN-ACK options in a common stack layout, padded to a multiple of four bytes."""
    out = TcpOpt.MSS.value + mss.to_bytes(2, "big")
    if sack and tsval is not None:
        out += TcpOpt.SACK_PERM.value + TcpOpt.TIMESTAMPS.value + struct.pack("!II", tsval, tsecr)
    elif tsval is not None:
        out += TcpOpt.NOP.value * 2 + TcpOpt.TIMESTAMPS.value + struct.pack("!II", tsval, tsecr)
    elif sack:
        out += TcpOpt.NOP.value * 2 + TcpOpt.SACK_PERM.value
    if wscale is not None:
        out += TcpOpt.NOP.value + TcpOpt.WSCALE.value + bytes([wscale])
    return out


def ts_option(tsval: int, tsecr: int) -> bytes:
    """The timestamps option as sent on established segments (RFC 7323 appendix A layout)."""
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)
