"""BPF filter strings for the SMTP ports and their compilation per link type (libpcap via pcapy)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pcapy

from sensor.capture.linktypes import LinkType, to_dlt
from sensor.errors import CaptureError

SMTP_PORT = 25  # IANA service names registry: smtp 25/tcp (RFC 5321)
SUBMISSION_PORT = 587  # IANA service names registry: submission 587/tcp (RFC 6409)
DEFAULT_PORTS: tuple[int, ...] = (SMTP_PORT, SUBMISSION_PORT)
"""Relay and message submission: a bot sending with stolen credentials uses the latter."""
BPF_SNAPLEN = 262144
"""Snap length given to pcap_compile; only bounds the offsets the filter may read."""
_NETMASK_UNKNOWN = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN: no "ip broadcast" in our filters
_VLAN_MARK = " or (vlan and "
MAX_VLAN_TAGS = 8
"""VLAN tags (802.1Q, 802.1ad, pre-standard 0x9100) the default filter looks through, as the
decoder's MAX_VLAN_TAGS."""
IP6_EXT_HEADERS: tuple[int, ...] = (0, 43, 44, 51, 60)
"""IPv6 extension headers the filter lets through when they follow the fixed header: those a
host (Linux among them) walks to deliver TCP, RFC 8200 section 4.1's hop-by-hop, routing,
fragment, destination options, and AH. The decoder also walks mobility, HIP, shim6 and the
experimental 253/254 (which carry no TCP a host would accept), ESP it cannot read past."""
IP6_EXT_CLAUSE = (
    "((" + " or ".join(f"ip6 proto {n}" for n in IP6_EXT_HEADERS) + ") and not ip6 multicast)"
)
"""IPv6 unicast packets whose first next header is an extension header, whatever lies behind
it (TCP is never multicast: this keeps out the listener reports every IPv6 host sends).

`ip6 proto N` tests the fixed header only, like `ip6[6] == N`; written the latter way inside
`ip6 and (...)`, the test compiles, for a live Linux capture behind a `vlan` keyword, to a
program the kernel refuses (libpcap then filters in user space, copying every packet). The
clause is kept short: repeated at each of 9 VLAN depths, it makes most of the program, about
250 instructions for a file, 450 in a live Linux capture, where the first tag is read from
packet metadata."""

FilterFn = Callable[[bytes], int]
"""A compiled filter: nonzero when the frame matches."""


def build_filter(ports: Sequence[int] = DEFAULT_PORTS, vlan_tags: int = MAX_VLAN_TAGS) -> str:
    """The default capture filter: TCP on `ports` and every encapsulation the decoder unwraps.

    Per layer, "tcp port 25" takes IPv4 and IPv6 whose first next header is TCP; a narrow
    clause adds IPv6 whose first next header is an extension header (its chain may end in TCP
    on any port: libpcap cannot follow it without `ip6 protochain`, a loop in BPF, and its port
    tests only look right after the fixed header); the decoder walks the chain and counts what
    it cannot parse. Each `vlan` keyword moves the offsets of everything after it in the
    expression (pcap-filter(7)), so tag n+1 is tested inside the clause of tag n, up to
    `vlan_tags` (the decoder's [capture] max_vlan_tags); a frame with one more tag is passed to
    the decoder, which counts it.
    """
    if not ports:
        raise ValueError("at least one port is needed")
    for port in ports:
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port}")
    base = " or ".join(f"tcp port {port}" for port in ports)
    layer = f"{base} or {IP6_EXT_CLAUSE}"
    expr = "vlan"  # one tag too many: let it through for the decoder to count
    for _ in range(vlan_tags):
        expr = f"vlan and ({layer} or ({expr}))"
    return f"{layer} or ({expr})"


def strip_vlan_clauses(expr: str) -> str:
    """The part of a filter from build_filter() before its VLAN clauses (for non-Ethernet links)."""
    cut = expr.find(_VLAN_MARK)
    return expr[:cut] if cut >= 0 else expr


def compile_filter(linktype: int, expr: str) -> FilterFn | None:
    """Compile `expr` for frames of `linktype`; None when no filter applies (empty expression).

    Falls back to the expression without its VLAN clauses when libpcap has no VLAN support for
    the link type. BSD loopback frames are filtered as raw IP after their 4-byte family: with
    no file to read, libpcap would test for the compiling host's AF_INET6 (10 on Linux), never
    the BSD values (24, 28, 30) the decoder and libpcap's own file reader accept. Raises
    CaptureError with libpcap's message when the expression is invalid, or when libpcap does
    not know the link type.
    """
    if not expr.strip():
        return None
    if linktype in _LOOPBACK:
        raw = compile_filter(LinkType.RAW_DLT12, expr)
        if raw is None:  # pragma: no cover - the expression is not empty
            return None
        return _after_family(raw)
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


_LOOPBACK = frozenset((LinkType.NULL, LinkType.LOOP))


def _after_family(raw: FilterFn) -> FilterFn:
    """A filter of loopback frames: `raw` applied to the IP packet after the family field."""

    def match(frame: bytes) -> int:
        return raw(frame[4:])

    return match


def _compile(dlt: int, expr: str) -> FilterFn:
    program = pcapy.compile(dlt, BPF_SNAPLEN, expr, 1, _NETMASK_UNKNOWN)
    fn: FilterFn = program.filter
    return fn


def validate(expr: str) -> None:
    """Raise CaptureError("--bpf: <libpcap message>") when `expr` does not compile for Ethernet."""
    compile_filter(LinkType.ETHERNET, expr)
