"""Tests of the packet decoder: every link type, tags, IPv4/IPv6 corner cases, and counters."""

from __future__ import annotations

import logging
import struct
from dataclasses import astuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.layers.inet import IP, TCP, UDP  # noqa: E402 - after silencing scapy's warnings
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH  # noqa: E402
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from sensor.decode.packet import DecodeLimits, Decoder, Segment, ip_str, tcp_options  # noqa: E402
from sensor.records import CaptureStats  # noqa: E402

MAC_A = "02:00:00:00:00:01"
MAC_B = "02:00:00:00:00:02"
PAYLOAD = b"MAIL FROM:<a@example.org>\r\n"
SYN_OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1234, 0))]
V4 = IP(src="192.0.2.1", dst="198.51.100.2", ttl=57)
V6 = IPv6(src="2001:db8::1", dst="2001:db8::25", hlim=33)
TCP_SEG = TCP(sport=41000, dport=25, seq=1000, ack=2000, flags="PA", window=501)


def _eth() -> Ether:
    """Ethernet header with fixed addresses (scapy would otherwise resolve them on the network)."""
    return Ether(src=MAC_A, dst=MAC_B)


def _one(linktype: int, frame: bytes) -> tuple[Segment | None, CaptureStats]:
    dec = Decoder()
    return dec.decode(linktype, frame), dec.stats


def _only(stats: CaptureStats, **want: int) -> None:
    """Every counter of `stats` is zero except those in `want`."""
    assert stats == CaptureStats(**want)


def test_common_case_matches_scapy() -> None:
    pkt = _eth() / V4 / TCP(sport=41000, dport=25, seq=7, ack=9, flags="S", options=SYN_OPTS)
    frame = bytes(pkt / PAYLOAD)
    seg, stats = _one(1, frame)
    parsed = Ether(frame)
    tcp = parsed[TCP]
    assert seg == (
        bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]), tcp.sport, tcp.dport, tcp.seq, tcp.ack,
        int(tcp.flags), tcp.window, parsed[IP].ttl, bytes(tcp)[20 : tcp.dataofs * 4], PAYLOAD,
        len(frame),
    )  # fmt: skip
    _only(stats, tcp_segments=1)
    assert seg is not None and tcp_options(seg[9]) == (1460, 7, True, 1234)


@pytest.mark.parametrize("flags", ["S", "SA", "A", "PA", "FA", "R"])
def test_options_are_kept_for_a_syn_only(flags: str) -> None:
    """Segment's options: a SYN's (the handshake reads them), b"" for any other segment, in
    the Python decoder and in the live capture's C loop alike (no bytes object per packet for
    the timestamps option most stacks send on every segment)."""
    from pcap_batches import pack

    from sensor.decode import _batch

    ts_opt = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
    for l3 in (V4, V6):
        frame = bytes(_eth() / l3 / TCP(sport=41000, dport=25, flags=flags,
                                        options=SYN_OPTS if "S" in flags else ts_opt) / PAYLOAD)
        seg, _ = _one(1, frame)
        assert seg is not None
        want = bytes(Ether(frame)[TCP])[20 : Ether(frame)[TCP].dataofs * 4] if "S" in flags else b""
        assert seg[9] == want and (want or seg[9] == b"")
        got: list[object] = []
        _batch.feed(*pack([(1_700_000_000, 0, frame)]), 1, Decoder(CaptureStats()).decode,
                    lambda ts, s, into=got: into.append(s))  # fmt: skip
        assert got == [seg]


def test_ethernet_padding_is_not_payload() -> None:
    frame = bytes(_eth() / V4 / TCP(flags="A")) + b"\x00" * 6  # 54 bytes padded to 60
    seg, _ = _one(1, frame)
    assert seg is not None and seg[10] == b""
    small = bytes(_eth() / V4 / TCP(flags="PA") / b"hi") + b"\xee" * 4
    seg, _ = _one(1, small)
    assert seg is not None and seg[10] == b"hi"


@pytest.mark.parametrize(
    "tags",
    [
        [Dot1Q(vlan=10)],
        [Dot1AD(vlan=10), Dot1Q(vlan=20)],
        [Dot1Q(vlan=1), Dot1Q(vlan=2), Dot1Q(vlan=3)],
    ],
)
def test_vlan_tags(tags: list[Dot1Q]) -> None:
    pkt = _eth()
    for tag in tags:
        pkt = pkt / tag
    for ip in (V4, V6):
        seg, stats = _one(1, bytes(pkt / ip / TCP_SEG / PAYLOAD))
        assert seg is not None and seg[10] == PAYLOAD
        _only(stats, tcp_segments=1)


def test_old_qinq_type_and_too_many_tags() -> None:
    tag = struct.pack("!HH", 0x9100, 5)
    inner = bytes(Dot1Q(vlan=6) / V4 / TCP_SEG / PAYLOAD)
    frame = bytes(12) + tag + b"\x81\x00" + inner
    seg, _ = _one(1, frame)
    assert seg is not None and seg[10] == PAYLOAD
    deep = bytes(12) + struct.pack("!HH", 0x8100, 1) * 9 + b"\x08\x00" + bytes(V4 / TCP_SEG)
    seg, stats = _one(1, deep)
    assert seg is None
    _only(stats, vlan_too_deep=1)


def test_eight_tags_of_every_kind_are_followed() -> None:
    kinds = (0x8100, 0x88A8, 0x9100)
    tags = b"".join(struct.pack("!HH", kinds[n % 3], n + 1) for n in range(8))
    for ip, etype in ((V4, b"\x08\x00"), (V6, b"\x86\xdd")):
        seg, stats = _one(1, bytes(12) + tags + etype + bytes(ip / TCP_SEG / PAYLOAD))
        assert seg is not None and seg[10] == PAYLOAD
        _only(stats, tcp_segments=1)


def _sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, bytes(8)) + payload


def _frames_of_every_link_type(ip: bytes, v6: bool) -> list[tuple[int, bytes]]:
    etype = 0x86DD if v6 else 0x0800
    fam = 30 if v6 else 2
    return [
        (1, bytes(Ether(src=MAC_A, dst=MAC_B, type=etype)) + ip),
        (113, bytes(CookedLinux(proto=etype)) + ip),
        (276, _sll2(etype, ip)),
        (101, ip),
        (12, ip),
        (14, ip),
        (229 if v6 else 228, ip),
        (0, struct.pack("<I", fam) + ip),
        (0, struct.pack(">I", fam) + ip),
        (108, struct.pack(">I", fam) + ip),
    ]


@pytest.mark.parametrize("v6", [False, True])
def test_every_link_type(v6: bool) -> None:
    ip = bytes((V6 if v6 else V4) / TCP_SEG / PAYLOAD)
    for linktype, frame in _frames_of_every_link_type(ip, v6):
        seg, stats = _one(linktype, frame)
        assert seg is not None, linktype
        assert ip_str(seg[0]) == ("2001:db8::1" if v6 else "192.0.2.1")
        assert seg[2:9] == (41000, 25, 1000, 2000, 0x18, 501, 33 if v6 else 57)
        assert seg[10] == PAYLOAD
        _only(stats, tcp_segments=1)


def test_bsd_inet6_families_and_unknown_family() -> None:
    ip = bytes(V6 / TCP_SEG)
    for fam in (24, 28, 30):
        seg, _ = _one(0, struct.pack("<I", fam) + ip)
        assert seg is not None
    seg, stats = _one(0, struct.pack("<I", 7) + ip)
    assert seg is None
    _only(stats, non_ip=1)


def test_unknown_link_type_and_non_ip_and_non_tcp() -> None:
    seg, stats = _one(147, bytes(_eth() / V4 / TCP_SEG))
    assert seg is None
    _only(stats, unknown_linktype=1)
    dec = Decoder()
    assert dec.decode(1, bytes(_eth() / ARP())) is None
    assert dec.decode(1, bytes(_eth() / V4 / UDP() / b"x")) is None
    assert dec.decode(1, bytes(_eth() / V6 / ICMPv6EchoRequest())) is None
    assert dec.decode(113, bytes(CookedLinux(proto=0x0806)) + bytes(ARP())) is None
    _only(dec.stats, non_ip=2, non_tcp=2)


def test_ipv4_options_and_zero_total_length() -> None:
    with_opts = IP(src="192.0.2.1", dst="198.51.100.2", options=[b"\x94\x04\x00\x00"])
    seg, stats = _one(1, bytes(_eth() / with_opts / TCP_SEG / PAYLOAD) + bytes(4))
    assert seg is not None and seg[10] == PAYLOAD
    _only(stats, tcp_segments=1)
    frame = bytearray(bytes(_eth() / V4 / TCP_SEG / PAYLOAD))
    struct.pack_into("!H", frame, 16, 0)  # TSO capture: total length not filled in
    seg, _ = _one(1, bytes(frame))
    assert seg is not None and seg[10] == PAYLOAD


def test_ipv4_fragments_are_counted() -> None:
    dec = Decoder()
    first = IP(src="192.0.2.1", dst="198.51.100.2", flags="MF") / TCP_SEG / PAYLOAD
    later = IP(src="192.0.2.1", dst="198.51.100.2", frag=3, proto=6) / PAYLOAD
    dont = IP(src="192.0.2.1", dst="198.51.100.2", flags="DF") / TCP_SEG / PAYLOAD
    assert dec.decode(1, bytes(_eth() / first)) is None
    assert dec.decode(1, bytes(_eth() / later)) is None
    assert dec.decode(1, bytes(_eth() / dont)) is not None  # DF alone is not a fragment
    _only(dec.stats, ip_fragments=2, tcp_segments=1)


def test_ipv6_extension_headers() -> None:
    chains = [
        IPv6ExtHdrHopByHop(),
        IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt(),
        AH(nh=6, payloadlen=4, spi=1, icv=b"\x00" * 12),  # (4 + 2) * 4 = 24 bytes
        IPv6ExtHdrDestOpt() / AH(nh=6, payloadlen=2, spi=1, icv=b"\x00" * 4),
        IPv6ExtHdrFragment(offset=0, m=0),  # atomic fragment: a whole packet (RFC 6946)
        IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(),
    ]
    for chain in chains:
        frame = bytes(_eth() / V6 / chain / TCP_SEG / PAYLOAD)
        seg, stats = _one(1, frame)
        assert seg is not None and seg[10] == PAYLOAD, chain.summary()
        _only(stats, tcp_segments=1)


def _generic_ext(nh: int, nxt: int, units: int) -> bytes:
    """An extension header in RFC 6564's uniform format: next header, length, padding."""
    return bytes([nxt, units]) + bytes(6 + units * 8)


@pytest.mark.parametrize("nh", [135, 139, 140, 253, 254])
def test_ipv6_extension_headers_of_the_generic_format(nh: int) -> None:
    ext = _generic_ext(nh, 60, 1) + bytes(IPv6ExtHdrDestOpt(nh=6))
    frame = bytes(_eth() / IPv6(src=V6.src, dst=V6.dst, nh=nh) / ext / TCP_SEG / PAYLOAD)
    seg, stats = _one(1, frame)
    assert seg is not None and seg[10] == PAYLOAD
    _only(stats, tcp_segments=1)


def test_ipv6_extension_chain_too_long_is_counted() -> None:
    chain = b"".join(_generic_ext(60, 60, 0) for _ in range(16)) + bytes(TCP_SEG / PAYLOAD)
    frame = bytes(_eth() / IPv6(src=V6.src, dst=V6.dst, nh=60)) + chain
    seg, stats = _one(1, frame)
    assert seg is None
    _only(stats, ip6_ext_too_long=1)


def test_ipv6_fragments_esp_and_no_next_header() -> None:
    dec = Decoder()
    assert dec.decode(1, bytes(_eth() / V6 / IPv6ExtHdrFragment(m=1) / TCP_SEG)) is None
    assert dec.decode(1, bytes(_eth() / V6 / IPv6ExtHdrFragment(offset=8) / PAYLOAD)) is None
    assert dec.decode(1, bytes(_eth() / IPv6(nh=50) / (b"\x00" * 16))) is None
    assert dec.decode(1, bytes(_eth() / IPv6(nh=59))) is None
    _only(dec.stats, ip_fragments=2, non_tcp=2)


def test_ipv6_payload_length_trims_and_jumbogram_zero_uses_caplen() -> None:
    frame = bytes(_eth() / V6 / TCP_SEG / PAYLOAD)
    seg, _ = _one(1, frame + b"\xff" * 8)
    assert seg is not None and seg[10] == PAYLOAD
    zero = bytearray(frame)
    struct.pack_into("!H", zero, 18, 0)
    seg, _ = _one(1, bytes(zero))
    assert seg is not None and seg[10] == PAYLOAD


def test_truncated_headers_and_payload() -> None:
    frame = bytes(_eth() / V4 / TCP_SEG / PAYLOAD)
    for cut in (10, 20, 40):  # Ethernet, IP, TCP header cut
        seg, stats = _one(1, frame[:cut])
        assert seg is None
        _only(stats, truncated=1)
    seg, stats = _one(1, frame[:60])  # snap length cut the payload: keep what was captured
    assert seg is not None and seg[10] == PAYLOAD[:6]
    _only(stats, truncated=1, tcp_segments=1)
    opts = bytes(_eth() / V4 / TCP(options=SYN_OPTS))
    seg, stats = _one(1, opts[:60])  # TCP options cut
    assert seg is None
    _only(stats, truncated=1)
    seg, stats = _one(1, bytes(_eth() / V6 / IPv6ExtHdrHopByHop() / TCP_SEG)[:56])
    assert seg is None
    _only(stats, truncated=1)


def test_malformed_headers() -> None:
    good = bytes(_eth() / V4 / TCP_SEG / PAYLOAD)
    cases = []
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x44
    cases.append((1, bytes(bad_ihl)))
    bad_version = bytearray(good)
    bad_version[14] = 0x65
    cases.append((1, bytes(bad_version)))
    bad_doff = bytearray(good)
    bad_doff[14 + 20 + 12] = 0x30
    cases.append((1, bytes(bad_doff)))
    beyond_ip = bytearray(good)
    struct.pack_into("!H", beyond_ip, 16, 30)  # IP says 10 bytes after its header
    cases.append((1, bytes(beyond_ip)))
    cases.append((101, b"\x50" + bytes(39)))  # version 5
    for linktype, frame in cases:
        seg, stats = _one(linktype, frame)
        assert seg is None
        _only(stats, malformed=1)


def test_tcp_options_parser() -> None:
    assert tcp_options(b"") == (None, None, False, None)
    assert tcp_options(b"\x02\x04\x05\xb4\x01\x03\x03\x08\x04\x02") == (1460, 8, True, None)
    assert tcp_options(b"\x08\x0a\x00\x00\x01\x00\x00\x00\x00\x00") == (None, None, False, 256)
    assert tcp_options(b"\x00\x02\x04\x05\xb4") == (None, None, False, None)  # after EOL
    assert tcp_options(b"\x02\x04\x05") == (None, None, False, None)  # cut short
    assert tcp_options(b"\x02\x01\x02\x04\x05\xb4") == (None, None, False, None)  # length < 2
    assert tcp_options(b"\x02") == (None, None, False, None)


def test_ip_str() -> None:
    assert ip_str(b"\xc0\x00\x02\x01") == "192.0.2.1"
    assert ip_str(bytes(15) + b"\x01") == "::1"


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=40))
def test_tcp_options_never_raise(data: bytes) -> None:
    mss, wscale, _sack, tsval = tcp_options(data)
    assert mss is None or 0 <= mss < 65536
    assert wscale is None or 0 <= wscale < 256
    assert tsval is None or 0 <= tsval < 2**32


LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=120))
def test_random_bytes_never_raise(linktype: int, data: bytes) -> None:
    dec = Decoder()
    seg = dec.decode(linktype, data)
    counted = sum(n for n in astuple(dec.stats) if isinstance(n, int))
    assert counted >= 1
    if seg is not None:
        assert len(seg[0]) in (4, 16) and len(seg[9]) + len(seg[10]) <= len(data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([0, 1, 101, 113, 276]), st.binary(max_size=80), st.integers(0, 90))
def test_mutated_valid_frames_never_raise(linktype: int, noise: bytes, at: int) -> None:
    frames = dict(_frames_of_every_link_type(bytes(V4 / TCP_SEG / PAYLOAD), False))
    frame = frames[linktype]
    mutated = frame[:at] + noise[: len(frame) - at] + frame[at + len(noise) :]
    Decoder().decode(linktype, mutated)
    Decoder().decode(linktype, mutated[: at + 1])


def test_public_trace_decodes_agree_with_scapy(zeek_traces: object) -> None:
    from pathlib import Path

    from scapy.utils import rdpcap

    from sensor.capture.source import open_files

    trace = Path(str(zeek_traces)) / "smtp.pcap"
    stats = CaptureStats()
    frames = list(open_files([str(trace)], "", stats, lambda p, r: None))
    dec = Decoder(stats)
    packets = rdpcap(str(trace))
    assert len(packets) == len(frames)
    for (_ts, linktype, data), pkt in zip(frames, packets, strict=True):
        seg = dec.decode(linktype, data)
        if TCP not in pkt:
            assert seg is None
            continue
        tcp = pkt[TCP]
        assert seg is not None
        assert ip_str(seg[0]) == pkt[IP].src and ip_str(seg[1]) == pkt[IP].dst
        assert seg[2:9] == (tcp.sport, tcp.dport, tcp.seq, tcp.ack, int(tcp.flags), tcp.window,
                            pkt[IP].ttl)  # fmt: skip
        assert seg[10] == bytes(tcp.payload)[: len(seg[10])]
        assert len(seg[10]) == pkt[IP].len - pkt[IP].ihl * 4 - tcp.dataofs * 4
    assert stats.tcp_segments > 100


_FAST_CASES = [
    bytes(_eth() / V4 / TCP_SEG / PAYLOAD),
    bytes(_eth() / V4 / TCP(flags="S", options=SYN_OPTS)) + bytes(6),
    bytes(_eth() / V6 / TCP_SEG / PAYLOAD),
    bytes(_eth() / V6 / TCP(flags="S", options=SYN_OPTS)) + bytes(8),
    bytes(_eth() / V6 / IPv6ExtHdrHopByHop() / TCP_SEG / PAYLOAD),
    bytes(_eth() / Dot1Q(vlan=7) / V4 / TCP_SEG / PAYLOAD),
    bytes(_eth() / Dot1Q(vlan=7) / V6 / TCP_SEG / PAYLOAD),
    bytes(_eth() / Dot1Q(vlan=7) / IP(dst="198.51.100.2", options=b"\x01" * 4) / TCP_SEG),
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_FAST_CASES),
    st.lists(st.tuples(st.integers(12, 60), st.integers(0, 255)), max_size=2),
    st.integers(0, 50),
)
@example(_FAST_CASES[2], [(14, 0x46)], 0)  # IPv6 header with version 4
@example(_FAST_CASES[6], [(18, 0x56)], 0)  # tagged, version 5
@example(_FAST_CASES[0], [(20, 0x20)], 0)  # IPv4 more-fragments flag
def test_one_unpack_cases_agree_with_the_general_code(
    frame: bytes, changes: list[tuple[int, int]], cut: int
) -> None:
    """decode() and _ip4/_ip6 take shortcuts; on any header bytes they agree with the long way."""
    mutable = bytearray(frame)
    for at, value in changes:
        mutable[at % len(mutable)] = value
    data = bytes(mutable[: len(mutable) - cut])
    quick, general = Decoder(), Decoder()
    assert quick.decode(1, data) == general._decode_slow(1, data)
    assert quick.stats == general.stats
    for off in (14, 18):
        for short, long in ((Decoder._ip4, Decoder._ip4_any), (Decoder._ip6, Decoder._ip6_any)):
            quick, general = Decoder(), Decoder()
            assert short(quick, data, off) == long(general, data, off)
            assert quick.stats == general.stats


def test_decode_limits_set_how_deep_the_decoder_looks() -> None:
    """[decode] max_vlan_tags and max_ip6_ext_headers: one more than the limit is counted."""
    tags = b"".join(struct.pack("!HH", 0x8100, n + 1) for n in range(3))
    frame = bytes(12) + tags + b"\x08\x00" + bytes(V4 / TCP_SEG / PAYLOAD)
    chain = b"".join(_generic_ext(60, 60, 0) for _ in range(2)) + _generic_ext(60, 6, 0)
    ip6 = bytes(_eth() / IPv6(src=V6.src, dst=V6.dst, nh=60) / Raw(chain) / TCP_SEG / PAYLOAD)
    narrow = Decoder(CaptureStats(), DecodeLimits(max_vlan_tags=2, max_ip6_ext_headers=3))
    assert narrow.decode(1, frame) is None and narrow.decode(1, ip6) is None
    assert (narrow.stats.vlan_too_deep, narrow.stats.ip6_ext_too_long) == (1, 1)
    wide = Decoder(CaptureStats(), DecodeLimits(max_vlan_tags=3, max_ip6_ext_headers=4))
    assert wide.decode(1, frame) is not None and wide.decode(1, ip6) is not None
