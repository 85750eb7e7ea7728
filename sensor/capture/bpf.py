"""BPF filter strings for the SMTP ports and their compilation per link type (libpcap via pcapy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pcapy

from sensor.capture.linktypes import LinkType, to_dlt
from sensor.errors import CaptureError

SMTP_PORT = 25  # IANA service names registry: smtp 25/tcp (RFC 5321)
DEFAULT_PORTS: tuple[int, ...] = (SMTP_PORT,)
BPF_SNAPLEN = 262144
"""Snap length given to pcap_compile; only bounds the offsets the filter may read."""
_NETMASK_UNKNOWN = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN: no "ip broadcast" in our filters
_VLAN_MARK = " or (vlan and "

FilterFn = Callable[[bytes], int]
"""A compiled filter: nonzero when the frame matches."""


def build_filter(ports: Sequence[int] = DEFAULT_PORTS) -> str:
    """The default capture filter: TCP on `ports`, untagged, 802.1Q-tagged and QinQ-tagged.

    A plain "tcp port 25" never looks inside tagged frames. Each `vlan` keyword moves the
    offsets of everything after it in the expression (pcap-filter(7)), so the second tag is
    tested inside the first clause: "tcp port 25 or (vlan and (tcp port 25 or (vlan and tcp
    port 25)))". The flat "... or (vlan and vlan and tcp port 25)" would look for three tags.
    """
    if not ports:
        raise ValueError("at least one port is needed")
    for port in ports:
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
    base = " or ".join(f"tcp port {port}" for port in ports)
    inner = base if len(ports) == 1 else f"({base})"
    return f"{base} or (vlan and ({inner} or (vlan and {inner})))"


def strip_vlan_clauses(expr: str) -> str:
    """The part of a filter from build_filter() before its VLAN clauses (for non-Ethernet links)."""
    cut = expr.find(_VLAN_MARK)
    return expr[:cut] if cut >= 0 else expr


def compile_filter(linktype: int, expr: str) -> FilterFn | None:
    """Compile `expr` for frames of `linktype`; None when no filter applies (empty expression).

    Falls back to the expression without its VLAN clauses when libpcap has no VLAN support for
    the link type. Raises CaptureError with libpcap's message when the expression is invalid,
    or when libpcap does not know the link type.
    """
    if not expr.strip():
        return None
    dlt = to_dlt(linktype)
    try:
        return _compile(dlt, expr)
    except pcapy.PcapError as exc:
        fallback = strip_vlan_clauses(expr)
        if fallback != expr and dlt != LinkType.ETHERNET:
            try:
                return _compile(dlt, fallback)
            except pcapy.PcapError:
                pass
        raise CaptureError(f"--bpf: {exc}") from exc


def _compile(dlt: int, expr: str) -> FilterFn:
    program = pcapy.compile(dlt, BPF_SNAPLEN, expr, 1, _NETMASK_UNKNOWN)
    fn: FilterFn = program.filter
    return fn


def validate(expr: str) -> None:
    """Raise CaptureError("--bpf: <libpcap message>") when `expr` does not compile for Ethernet."""
    compile_filter(LinkType.ETHERNET, expr)
