"""Per-packet decoding of frames into TCP segments (plain tuples), counting what is not TCP."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Final

from sensor.capture.linktypes import LinkType
from sensor.records import CaptureStats

Segment = tuple[bytes, bytes, int, int, int, int, int, int, int, bytes, bytes, int]
"""(src, dst, sport, dport, seq, ack, flags, window, ttl, options, payload, frame_len);
addresses packed; options are those of a SYN segment, b"" for any other (only the handshake
reads them: no bytes object per packet); frame_len is the captured frame's length (wire bytes,
as tshark counts)."""


class EtherType(IntEnum):
    """EtherType values (IEEE 802 numbers registry) the decoder follows."""

    IPV4 = 0x0800
    IPV6 = 0x86DD
    VLAN = 0x8100  # IEEE 802.1Q customer tag
    QINQ = 0x88A8  # IEEE 802.1ad service tag
    QINQ_OLD = 0x9100  # pre-standard QinQ service tag


class IpProto(IntEnum):
    """IP protocol / IPv6 next-header numbers (IANA protocol numbers registry)."""

    HOPOPTS = 0  # RFC 8200 section 4.3
    TCP = 6  # RFC 9293
    ROUTING = 43  # RFC 8200 section 4.4
    FRAGMENT = 44  # RFC 8200 section 4.5
    ESP = 50  # RFC 4303
    AH = 51  # RFC 4302 section 2.2: length in 4-octet units minus 2
    NONE = 59  # RFC 8200 section 4.7
    DSTOPTS = 60  # RFC 8200 section 4.6
    MOBILITY = 135  # RFC 6275 section 6.1: the generic format of RFC 6564
    HIP = 139  # RFC 7401 section 5.1
    SHIM6 = 140  # RFC 5533 section 5
    EXPERIMENT1 = 253  # RFC 3692 / RFC 4727: assumed in RFC 6564's generic format
    EXPERIMENT2 = 254


class TcpFlag(IntFlag):
    """TCP header flag bits (RFC 9293 §3.1; ECE/CWR RFC 3168 §6.1)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class TcpOption(IntEnum):
    """TCP option kinds (RFC 9293 section 3.2, RFC 7323, RFC 2018)."""

    EOL = 0
    NOP = 1
    MSS = 2  # RFC 9293 section 3.2, length 4
    WSCALE = 3  # RFC 7323 section 2.2, length 3
    SACK_PERMITTED = 4  # RFC 2018 section 2, length 2
    TIMESTAMPS = 8  # RFC 7323 section 3.2, length 10


# Address families in DLT_NULL / DLT_LOOP headers (tcpdump.org LINKTYPE_NULL).
AF_INET: Final = 2
AF_INET6_BSD: Final = (24, 28, 30)  # NetBSD/OpenBSD, FreeBSD, Darwin

MAX_VLAN_TAGS: Final = 8
"""Stacked 802.1Q/802.1ad tags followed by default ([capture] max_vlan_tags); a frame with more
is counted in vlan_too_deep."""
MAX_IPV6_EXT_HEADERS: Final = 16
"""IPv6 extension headers walked by default ([capture] max_ip6_ext_headers); a packet with more
is counted in ip6_ext_too_long."""


@dataclass(slots=True, frozen=True)
class DecodeLimits:
    """Bounds of the frame decoder ([decode] in the configuration), each counted when hit."""

    max_vlan_tags: int = MAX_VLAN_TAGS  # vlan_too_deep: stacked VLAN tags followed
    max_ip6_ext_headers: int = MAX_IPV6_EXT_HEADERS  # ip6_ext_too_long: extension headers walked

# Plain ints of the enums above: comparing against an enum member costs ~5x more per packet.
_ET_IPV4: Final = int(EtherType.IPV4)
_ET_IPV6: Final = int(EtherType.IPV6)
_P_TCP: Final = int(IpProto.TCP)
_P_AH: Final = int(IpProto.AH)
_P_FRAGMENT: Final = int(IpProto.FRAGMENT)
_LT_ETHERNET: Final = int(LinkType.ETHERNET)
_OPT_EOL: Final = int(TcpOption.EOL)
_OPT_NOP: Final = int(TcpOption.NOP)
_OPT_MSS: Final = int(TcpOption.MSS)
_OPT_WSCALE: Final = int(TcpOption.WSCALE)
_OPT_SACK_PERMITTED: Final = int(TcpOption.SACK_PERMITTED)
_OPT_TIMESTAMPS: Final = int(TcpOption.TIMESTAMPS)
_ETH_LEN: Final = 14
_IP4_MIN: Final = 20  # RFC 791 section 3.1: IHL >= 5
_IP6_LEN: Final = 40  # RFC 8200 section 3
_TCP_MIN: Final = 20  # RFC 9293 section 3.1: data offset >= 5
_FRAG_MASK: Final = 0x3FFF  # RFC 791 section 3.1: MF flag and fragment offset
_VLAN_TYPES: Final = frozenset(int(t) for t in (EtherType.VLAN, EtherType.QINQ, EtherType.QINQ_OLD))
_IP6_WALK: Final = frozenset(
    int(p)
    for p in (
        IpProto.HOPOPTS,
        IpProto.ROUTING,
        IpProto.DSTOPTS,
        IpProto.AH,
        IpProto.FRAGMENT,
        IpProto.MOBILITY,
        IpProto.HIP,
        IpProto.SHIM6,
        IpProto.EXPERIMENT1,
        IpProto.EXPERIMENT2,
    )
)

# Ethernet + IPv4 (IHL 5) + TCP up to the window, in one unpack (the common case).
# The unpacks of the fast paths, typed: compiled, the fields are then native ints and bytes
# instead of objects of unknown type (every comparison, shift and slice a generic call).
_FastFields = tuple[int, int, int, int, int, int, bytes, bytes, int, int, int, int, int, int, int]
_Ip4TcpFields = tuple[int, int, int, int, int, bytes, bytes, int, int, int, int, int, int, int]
_Ip6TcpFields = tuple[int, int, int, int, bytes, bytes, int, int, int, int, int, int, int]
_FAST: Final = struct.Struct("!12xHBxHxxHBB2x4s4sHHIIBBH")
_FAST_LEN: Final = _FAST.size  # 50
_fast_unpack: Final = _FAST.unpack_from
# IPv4 (IHL 5) + TCP up to the window, and IPv6 + TCP (no extension header): one unpack each.
_IP4_TCP: Final = struct.Struct("!BxHxxHBB2x4s4sHHIIBBH")
_IP6_TCP: Final = struct.Struct("!IHBB16s16sHHIIBBH")
_IP4: Final = struct.Struct("!BxHxxHBB2x4s4s")
_IP6: Final = struct.Struct("!4xHBB16s16s")
_TCP: Final = struct.Struct("!HHIIBBH")
_H: Final = struct.Struct("!H")


class Decoder:
    """Turns (linktype, frame bytes) into a Segment, or None after counting why it is not one."""

    __slots__ = ("max_ext", "max_vlan", "stats")

    def __init__(
        self, stats: CaptureStats | None = None, limits: DecodeLimits | None = None
    ) -> None:
        self.stats = stats if stats is not None else CaptureStats()
        lim = limits if limits is not None else DecodeLimits()
        self.max_vlan = lim.max_vlan_tags
        self.max_ext = lim.max_ip6_ext_headers

    def decode(self, linktype: int, data: bytes) -> Segment | None:
        """Decode one frame; Ethernet, untagged or with one 802.1Q tag, takes the quickest way."""
        # Literals on purpose: LinkType.ETHERNET, EtherType.IPV4/IPV6/VLAN, IHL 5, IpProto.TCP,
        # _FRAG_MASK, header ends 14 (Ethernet), 34 (IPv4), 54 (TCP without options). _ip4 and
        # _ip6 try their own one-unpack case first; anything unusual ends in the general code.
        if linktype == 1 and len(data) >= _FAST_LEN:
            fields: _FastFields = _fast_unpack(data)
            (etype, vihl, totlen, frag, ttl, proto, src, dst,
             sport, dport, seq, ack, offb, flags, win) = fields  # fmt: skip
            if etype == 0x0800:
                if vihl == 0x45 and proto == 6 and not frag & 0x3FFF:
                    tcp_end = 34 + ((offb >> 4) << 2)
                    end = 14 + totlen
                    if 54 <= tcp_end <= end <= len(data):
                        self.stats.tcp_segments += 1
                        return (src, dst, sport, dport, seq, ack, flags, win, ttl,
                                data[54:tcp_end] if flags & 2 else b"", data[tcp_end:end],
                                len(data))  # fmt: skip
                return self._ip4_any(data, 14)
            if etype == 0x86DD:
                return self._ip6(data, 14)
            if etype == 0x8100:  # one 802.1Q tag: the inner EtherType at 16, the header at 18
                inner = data[16] << 8 | data[17]
                if inner == 0x0800:
                    return self._ip4(data, 18)
                if inner == 0x86DD:
                    return self._ip6(data, 18)
            return self._ether(data, 12)
        return self._decode_slow(linktype, data)

    # ----------------------------------------------------------------------------------------
    # other link types, stacked tags, IP options, extension headers, every error case

    def _decode_slow(self, linktype: int, data: bytes) -> Segment | None:
        """Any link type, tags, IPv4 options, IPv6 extension headers, and every error case."""
        if linktype == _LT_ETHERNET:
            if len(data) < _ETH_LEN:
                return self._count_truncated()
            return self._ether(data, 12)
        link = _LINK_DISPATCH.get(linktype)
        if link is None:
            self.stats.unknown_linktype += 1
            return None
        return link(self, data)

    def _raw(self, data: bytes) -> Segment | None:
        return self._ip_by_version(data, 0)

    def _raw4(self, data: bytes) -> Segment | None:
        return self._ip4(data, 0)

    def _raw6(self, data: bytes) -> Segment | None:
        return self._ip6(data, 0)

    def _sll(self, data: bytes) -> Segment | None:
        """Linux cooked v1: protocol (an EtherType) at offset 14 of a 16-byte header."""
        if len(data) < 16:
            return self._count_truncated()
        return self._ether(data, 14)

    def _sll2(self, data: bytes) -> Segment | None:
        """Linux cooked v2: protocol (an EtherType) at offset 0 of a 20-byte header."""
        if len(data) < 20:
            return self._count_truncated()
        return self._ethertype(data, _H.unpack_from(data, 0)[0], 20)

    def _count_truncated(self) -> Segment | None:
        """Count a frame shorter than its headers say; always None."""
        self.stats.truncated += 1
        return None

    def _ether(self, data: bytes, type_at: int) -> Segment | None:
        """Follow the EtherType at `type_at` through VLAN tags to the network layer."""
        (etype,) = _H.unpack_from(data, type_at)
        off = type_at + 2
        tags = 0
        while etype in _VLAN_TYPES:
            tags += 1
            if tags > self.max_vlan:
                self.stats.vlan_too_deep += 1
                return None
            if len(data) < off + 4:
                return self._count_truncated()
            (etype,) = _H.unpack_from(data, off + 2)
            off += 4
        return self._ethertype(data, etype, off)

    def _ethertype(self, data: bytes, etype: int, off: int) -> Segment | None:
        if etype == _ET_IPV4:
            return self._ip4(data, off)
        if etype == _ET_IPV6:
            return self._ip6(data, off)
        self.stats.non_ip += 1
        return None

    def _loopback(self, data: bytes) -> Segment | None:
        """DLT_NULL (host byte order) or DLT_LOOP (network order): accept either order."""
        if len(data) < 4:
            return self._count_truncated()
        family = int.from_bytes(data[:4], "little")
        if family > 0xFFFF:
            family = int.from_bytes(data[:4], "big")
        if family == AF_INET:
            return self._ip4(data, 4)
        if family in AF_INET6_BSD:
            return self._ip6(data, 4)
        self.stats.non_ip += 1
        return None

    def _ip_by_version(self, data: bytes, off: int) -> Segment | None:
        if len(data) <= off:
            return self._count_truncated()
        version = data[off] >> 4
        if version == 4:
            return self._ip4(data, off)
        if version == 6:
            return self._ip6(data, off)
        self.stats.malformed += 1
        return None

    def _ip4(self, data: bytes, off: int) -> Segment | None:
        """RFC 791 section 3.1 header with options; payload bounded by the total length."""
        if len(data) >= off + 40:  # IHL 5, unfragmented TCP, all in the frame: one unpack
            fields: _Ip4TcpFields = _IP4_TCP.unpack_from(data, off)
            (vihl, totlen, frag, ttl, proto, src, dst, sport, dport,
             seq, ack, offb, flags, win) = fields  # fmt: skip
            if vihl == 0x45 and proto == _P_TCP and not frag & _FRAG_MASK:
                tcp_end = off + 20 + ((offb >> 4) << 2)
                end = off + totlen
                if off + 40 <= tcp_end <= end <= len(data):
                    self.stats.tcp_segments += 1
                    return (src, dst, sport, dport, seq, ack, flags, win, ttl,
                            data[off + 40 : tcp_end] if flags & 2 else b"", data[tcp_end:end],
                            len(data))  # fmt: skip
        return self._ip4_any(data, off)

    def _ip4_any(self, data: bytes, off: int) -> Segment | None:
        """Any IPv4 header, every error case included."""
        stats = self.stats
        if len(data) < off + _IP4_MIN:
            return self._count_truncated()
        vihl, totlen, frag, ttl, proto, src, dst = _IP4.unpack_from(data, off)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < _IP4_MIN:
            stats.malformed += 1
            return None
        if len(data) < off + ihl:
            return self._count_truncated()
        if frag & _FRAG_MASK:
            stats.ip_fragments += 1
            return None
        if proto != _P_TCP:
            stats.non_tcp += 1
            return None
        if totlen == 0:  # TSO/GSO capture: the NIC fills the length in later
            end = len(data)
        elif totlen < ihl:
            stats.malformed += 1
            return None
        else:
            end = off + totlen
        return self._tcp(data, off + ihl, end, src, dst, ttl)

    def _ip6(self, data: bytes, off: int) -> Segment | None:
        """RFC 8200 section 3 header, extension headers walked up to TCP."""
        if len(data) >= off + 60:  # TCP right after the fixed header, all in the frame
            fields: _Ip6TcpFields = _IP6_TCP.unpack_from(data, off)
            (vtf, plen, nxt, hlim, src, dst, sport, dport,
             seq, ack, offb, flags, win) = fields  # fmt: skip
            if vtf >> 28 == 6 and nxt == _P_TCP:  # plen 0 (jumbogram) fails the bounds below
                tcp_end = off + 40 + ((offb >> 4) << 2)
                end = off + 40 + plen
                if off + 60 <= tcp_end <= end <= len(data):
                    self.stats.tcp_segments += 1
                    return (src, dst, sport, dport, seq, ack, flags, win, hlim,
                            data[off + 60 : tcp_end] if flags & 2 else b"", data[tcp_end:end],
                            len(data))  # fmt: skip
        return self._ip6_any(data, off)

    def _ip6_any(self, data: bytes, off: int) -> Segment | None:
        """Any IPv6 header: extension headers walked, every error case included."""
        stats = self.stats
        if len(data) < off + _IP6_LEN:
            return self._count_truncated()
        if data[off] >> 4 != 6:
            stats.malformed += 1
            return None
        plen, nxt, hlim, src, dst = _IP6.unpack_from(data, off)
        end = len(data) if plen == 0 else off + _IP6_LEN + plen  # plen 0: jumbogram (RFC 2675)
        pos = off + _IP6_LEN
        for _ in range(self.max_ext):
            if nxt == _P_TCP:
                return self._tcp(data, pos, end, src, dst, hlim)
            if nxt in _IP6_WALK:
                if len(data) < pos + 8:
                    return self._count_truncated()
                nxt2, hlen = data[pos], data[pos + 1]
                if nxt == _P_FRAGMENT:
                    (offm,) = _H.unpack_from(data, pos + 2)
                    if offm & 0xFFF9:  # offset or M flag: a real fragment (RFC 8200 4.5)
                        stats.ip_fragments += 1
                        return None
                    size = 8  # atomic fragment (RFC 6946): a whole packet
                elif nxt == _P_AH:
                    size = (hlen + 2) << 2
                else:
                    size = (hlen + 1) << 3
                pos += size
                nxt = nxt2
                continue
            stats.non_tcp += 1
            return None
        stats.ip6_ext_too_long += 1
        return None

    def _tcp(
        self, data: bytes, off: int, end: int, src: bytes, dst: bytes, ttl: int
    ) -> Segment | None:
        """RFC 9293 section 3.1 header at `off`; the IP layer says the segment ends at `end`."""
        stats = self.stats
        caplen = len(data)
        if off + _TCP_MIN > end:
            stats.malformed += 1
            return None
        if off + _TCP_MIN > caplen:
            return self._count_truncated()
        sport, dport, seq, ack, offb, flags, win = _TCP.unpack_from(data, off)
        hl = (offb >> 4) << 2
        if hl < _TCP_MIN or off + hl > end:
            stats.malformed += 1
            return None
        if off + hl > caplen:
            return self._count_truncated()
        if end > caplen:  # snap length cut the payload: keep what was captured
            stats.truncated += 1
            end = caplen
        stats.tcp_segments += 1
        return (src, dst, sport, dport, seq, ack, flags, win, ttl,
                data[off + _TCP_MIN : off + hl] if flags & 2 else b"", data[off + hl : end],
                len(data))  # fmt: skip


_LINK_DISPATCH: dict[int, Callable[[Decoder, bytes], Segment | None]] = {
    LinkType.RAW: Decoder._raw,
    LinkType.RAW_DLT12: Decoder._raw,
    LinkType.RAW_DLT14: Decoder._raw,
    LinkType.IPV4: Decoder._raw4,
    LinkType.IPV6: Decoder._raw6,
    LinkType.LINUX_SLL: Decoder._sll,
    LinkType.LINUX_SLL2: Decoder._sll2,
    LinkType.NULL: Decoder._loopback,
    LinkType.LOOP: Decoder._loopback,
}


def tcp_options(options: bytes) -> tuple[int | None, int | None, bool, int | None]:
    """(MSS, window scale, SACK permitted, TSval) from raw TCP option bytes; never raises."""
    mss: int | None = None
    wscale: int | None = None
    sack_ok = False
    tsval: int | None = None
    pos = 0
    end = len(options)
    while pos < end:
        kind = options[pos]
        if kind == _OPT_EOL:
            break
        if kind == _OPT_NOP:
            pos += 1
            continue
        if pos + 1 >= end:
            break
        length = options[pos + 1]
        if length < 2 or pos + length > end:
            break
        if kind == _OPT_MSS and length == 4:
            mss = (options[pos + 2] << 8) | options[pos + 3]
        elif kind == _OPT_WSCALE and length == 3:
            wscale = options[pos + 2]
        elif kind == _OPT_SACK_PERMITTED and length == 2:
            sack_ok = True
        elif kind == _OPT_TIMESTAMPS and length == 10:
            tsval = int.from_bytes(options[pos + 2 : pos + 6], "big")
        pos += length
    return mss, wscale, sack_ok, tsval


def ip_str(addr: bytes) -> str:
    """Text form of a packed IPv4 (4 bytes) or IPv6 (16 bytes) address."""
    return socket.inet_ntop(socket.AF_INET6 if len(addr) == 16 else socket.AF_INET, addr)
