"""The default filter on both reader paths: every encapsulation the decoder unwraps gets through,
plain non-SMTP traffic does not, and what the decoder cannot parse is counted by reason."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from capture_helpers import eth, ip4_tcp, ip6_tcp, write_pcap_raw
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6MLReport2,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH

from sensor.capture.bpf import build_filter, compile_filter
from sensor.capture.source import open_files
from sensor.decode.packet import Decoder
from sensor.records import CaptureStats

SRC6 = "2001:db8::1"
DST6 = "2001:db8::2"
TAG_TYPES = (0x8100, 0x88A8, 0x9100)


def _ip6_ext(chain: object, dport: int = 25) -> bytes:
    pkt = IPv6(src=SRC6, dst=DST6) / chain / TCP(sport=40000, dport=dport) / b"EHLO x\r\n"
    return bytes(pkt)


def _tagged(packet: bytes, tags: int) -> bytes:
    """Ethernet frame with `tags` stacked tags cycling through 0x8100, 0x88a8 and 0x9100."""
    etype = b"\x86\xdd" if packet[0] >> 4 == 6 else b"\x08\x00"
    stack = b"".join(struct.pack("!HH", TAG_TYPES[n % 3], n + 1) for n in range(tags))
    return bytes(12) + stack + etype + packet


# Each case: a frame the sensor must analyse, on Ethernet unless the link type says otherwise.
SMTP_CASES: dict[str, Callable[[], bytes]] = {
    "ip6 hop-by-hop": lambda: eth(_ip6_ext(IPv6ExtHdrHopByHop())),
    "ip6 routing + destination options": lambda: eth(
        _ip6_ext(IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt())
    ),
    "ip6 atomic fragment": lambda: eth(_ip6_ext(IPv6ExtHdrFragment())),
    "ip6 destination options + AH": lambda: eth(
        _ip6_ext(IPv6ExtHdrDestOpt() / AH(nh=6, payloadlen=2, spi=1, icv=b"\x00" * 4))
    ),
    "ip6 hop-by-hop in 3 tags": lambda: _tagged(_ip6_ext(IPv6ExtHdrHopByHop()), 3),
    **{f"ip4 in {n} tags": (lambda n=n: _tagged(ip4_tcp(n), n)) for n in range(3, 9)},
    **{f"ip6 in {n} tags": (lambda n=n: _tagged(ip6_tcp(n), n)) for n in (3, 8)},
}

NOT_SMTP: list[bytes] = [
    eth(ip4_tcp(1, dport=80, payload=b"GET / HTTP/1.1\r\n")),
    eth(ip6_tcp(2, dport=80, payload=b"GET / HTTP/1.1\r\n")),
    eth(ip6_tcp(3, dport=443)),
    _tagged(ip4_tcp(4, dport=80), 3),
    _tagged(ip6_tcp(5, dport=443), 8),
    eth(bytes(IPv6(src=SRC6, dst=DST6) / UDP(sport=5353, dport=53) / b"dns")),
    # a multicast listener report: hop-by-hop (router alert), then ICMPv6, to a multicast group
    eth(bytes(IPv6(src=SRC6, dst="ff02::16") / IPv6ExtHdrHopByHop() / ICMPv6MLReport2())),
    _tagged(bytes(IPv6(src=SRC6, dst="ff02::16") / IPv6ExtHdrHopByHop() / ICMPv6MLReport2()), 2),
]


def _read(path: Path, use_libpcap: bool) -> tuple[list[bytes], CaptureStats]:
    stats = CaptureStats()
    errors: list[tuple[str, str]] = []
    expr = build_filter()
    frames = open_files([str(path)], expr, stats, lambda p, r: errors.append((p, r)), use_libpcap)
    got = [f[2] for f in frames]
    assert errors == []
    return got, stats


@pytest.mark.parametrize("case", sorted(SMTP_CASES))
def test_encapsulated_smtp_passes_the_default_filter_on_both_paths(
    case: str, tmp_path: Path
) -> None:
    frame = SMTP_CASES[case]()
    path = tmp_path / "c.pcap"
    write_pcap_raw(path, [(1, i, f) for i, f in enumerate([*NOT_SMTP, frame, *NOT_SMTP])])
    for use_libpcap in (True, False):
        got, _ = _read(path, use_libpcap)
        assert got == [frame], (case, use_libpcap)
    dec = Decoder()
    seg = dec.decode(1, frame)
    assert seg is not None and seg[3] == 25 and seg[10] == b"EHLO x\r\n"


def test_plain_filter_dropped_them_all() -> None:
    """What the old default filter let through: none of the cases above."""
    old = compile_filter(1, "tcp port 25 or (vlan and (tcp port 25 or (vlan and tcp port 25)))")
    new = compile_filter(1, build_filter())
    assert old is not None and new is not None
    for case, make in SMTP_CASES.items():
        assert not old(make()) and new(make()), case
    for frame in NOT_SMTP:
        assert not new(frame)


def test_one_tag_too_many_reaches_the_decoder_and_is_counted(tmp_path: Path) -> None:
    deep = _tagged(ip4_tcp(1), 9)
    path = tmp_path / "deep.pcap"
    write_pcap_raw(path, [(1, 0, deep), (2, 0, _tagged(ip4_tcp(2, dport=80), 9))])
    for use_libpcap in (True, False):
        got, _ = _read(path, use_libpcap)
        assert len(got) == 2  # nine tags: the filter cannot look inside, so the decoder counts
        dec = Decoder()
        assert [dec.decode(1, f) for f in got] == [None, None]
        assert dec.stats.vlan_too_deep == 2


def test_ip6_fragments_pass_and_are_counted_like_ip4_fragments(tmp_path: Path) -> None:
    first = eth(_ip6_ext(IPv6ExtHdrFragment(m=1, id=7)))
    later = eth(bytes(IPv6(src=SRC6, dst=DST6) / IPv6ExtHdrFragment(offset=2, id=7) / b"rest"))
    path = tmp_path / "frag.pcap"
    write_pcap_raw(path, [(1, 0, first), (2, 0, later)])
    for use_libpcap in (True, False):
        got, _ = _read(path, use_libpcap)
        dec = Decoder()
        assert [dec.decode(1, f) for f in got] == [None, None]
        assert dec.stats.ip_fragments == 2


@pytest.mark.parametrize(("linktype", "order"), [(0, "<"), (0, ">"), (108, "<"), (108, ">")])
def test_bsd_loopback_ipv6_on_both_paths(linktype: int, order: str, tmp_path: Path) -> None:
    """DLT_NULL's family is in the writing host's byte order (the file header's); DLT_LOOP's
    always in network order."""
    fam_order = ">" if linktype == 108 else order
    smtp = [struct.pack(fam_order + "I", fam) + ip6_tcp(fam) for fam in (24, 28, 30)]
    smtp.append(struct.pack(fam_order + "I", 2) + ip4_tcp(9))
    smtp.append(struct.pack(fam_order + "I", 30) + _ip6_ext(IPv6ExtHdrHopByHop()))
    other = [struct.pack(fam_order + "I", 30) + ip6_tcp(1, dport=80),
             struct.pack(fam_order + "I", 2) + ip4_tcp(1, dport=80)]  # fmt: skip
    path = tmp_path / "lo.pcap"
    records = [(1, i, f) for i, f in enumerate([*other, *smtp, *other])]
    write_pcap_raw(path, records, order=order, linktype=linktype)
    for use_libpcap in (True, False):
        got, _ = _read(path, use_libpcap)
        assert got == smtp, use_libpcap
        dec = Decoder()
        segs = [dec.decode(linktype, f) for f in got]
        assert all(seg is not None and seg[3] == 25 for seg in segs)


def test_ports_widen_every_clause() -> None:
    match = compile_filter(1, build_filter([25, 587]))
    assert match is not None
    for tags in (0, 1, 5, 8):
        assert match(_tagged(ip4_tcp(1, dport=587), tags))
        assert match(_tagged(ip6_tcp(1, dport=587), tags))
        assert not match(_tagged(ip4_tcp(1, dport=465), tags))
    assert match(_tagged(_ip6_ext(IPv6ExtHdrHopByHop(), dport=587), 4))
