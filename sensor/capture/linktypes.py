"""Link-layer header types seen in capture files and how they map to libpcap's DLT values."""

from __future__ import annotations

from enum import IntEnum


class LinkType(IntEnum):
    """LINKTYPE_/DLT_ values (tcpdump.org link-layer header types registry) the sensor decodes."""

    NULL = 0
    """BSD loopback: 4-byte address family in the capturing host's byte order."""
    ETHERNET = 1
    """IEEE 802.3 Ethernet, possibly with 802.1Q/802.1ad tags."""
    RAW_DLT12 = 12
    """DLT_RAW on most platforms: raw IPv4 or IPv6 by version nibble."""
    RAW_DLT14 = 14
    """DLT_RAW on OpenBSD: raw IPv4 or IPv6 by version nibble."""
    RAW = 101
    """LINKTYPE_RAW as written in files: raw IPv4 or IPv6 by version nibble."""
    LOOP = 108
    """OpenBSD loopback: 4-byte address family in network byte order."""
    LINUX_SLL = 113
    """Linux cooked capture v1: 16-byte pseudo header, protocol at offset 14."""
    IPV4 = 228
    """Raw IPv4 only."""
    IPV6 = 229
    """Raw IPv6 only."""
    LINUX_SLL2 = 276
    """Linux cooked capture v2: 20-byte pseudo header, protocol at offset 0."""


# libpcap maps these file LINKTYPE values to a different DLT before compiling a filter.
_LINKTYPE_TO_DLT: dict[int, int] = {LinkType.RAW: LinkType.RAW_DLT12}


def to_dlt(linktype: int) -> int:
    """The DLT value libpcap uses (for pcap_compile) for a LINKTYPE value read from a file."""
    return _LINKTYPE_TO_DLT.get(linktype, linktype)
