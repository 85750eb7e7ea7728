"""Tests of the BPF filter strings and their per-link-type compilation."""

from __future__ import annotations

import pcapy
import pytest
from capture_helpers import eth_tcp, ip4_tcp

from sensor.capture.bpf import (
    DEFAULT_PORTS,
    IP6_EXT_CLAUSE,
    build_filter,
    compile_filter,
    strip_vlan_clauses,
    validate,
)
from sensor.errors import CaptureError
from sensor.tcp.reassembler import DEFAULT_SERVER_PORTS


def test_default_filter_text() -> None:
    ext = IP6_EXT_CLAUSE
    assert ext == (
        "((ip6 proto 0 or ip6 proto 43 or ip6 proto 44 or ip6 proto 51 or ip6 proto 60)"
        " and not ip6 multicast)"
    )
    layer = f"tcp port 25 or tcp port 587 or {ext}"
    text = build_filter()
    assert text.startswith(f"{layer} or (vlan and ({layer} or (vlan and ({layer} or (vlan and ")
    assert text.endswith(f"{layer} or (vlan)" + ")" * 16)
    assert text.count("vlan") == 9 and text.count("tcp port 25 ") == 9
    assert text.count("tcp port 587") == 9
    one = build_filter([25])
    assert one.startswith(f"tcp port 25 or {ext} or (vlan and (tcp port 25 or ")
    assert "587" not in one
    assert strip_vlan_clauses(text) == layer


def test_default_ports_are_relay_and_submission_everywhere() -> None:
    """The capture filter, the reassembler's server ports and the CLI agree on 25 and 587."""
    assert DEFAULT_PORTS == (25, 587)
    assert frozenset(DEFAULT_PORTS) == DEFAULT_SERVER_PORTS
    full = compile_filter(1, build_filter())
    assert full is not None
    assert full(eth_tcp(1, dport=587)) and full(eth_tcp(1, dport=587, vlans=[7]))
    assert not full(eth_tcp(1, dport=465))


@pytest.mark.parametrize("ports", [[], [0], [70000]])
def test_bad_ports(ports: list[int]) -> None:
    with pytest.raises(ValueError):
        build_filter(ports)


def test_vlan_clauses_are_needed() -> None:
    tagged = eth_tcp(1, vlans=[7])
    qinq = eth_tcp(1, vlans=[7, 8], qinq=True)
    plain = pcapy.compile(1, 262144, "tcp port 25", 1, 0xFFFFFFFF).filter
    assert plain(eth_tcp(1)) and not plain(tagged) and not plain(qinq)
    full = compile_filter(1, build_filter())
    assert full is not None
    assert full(eth_tcp(1)) and full(tagged) and full(qinq)
    assert not full(eth_tcp(1, dport=80)) and not full(eth_tcp(1, dport=80, vlans=[7]))
    two = compile_filter(1, build_filter([25, 587]))
    assert two is not None and two(eth_tcp(2, dport=587, vlans=[3]))


@pytest.mark.parametrize("linktype", [0, 12, 101, 108, 113, 228, 229, 276])
def test_non_ethernet_link_types_fall_back_without_vlan(linktype: int) -> None:
    match = compile_filter(linktype, build_filter())
    assert match is not None
    if linktype in (12, 101, 228):
        assert match(ip4_tcp(1)) and not match(ip4_tcp(1, dport=80))


def test_invalid_expression_and_empty_expression() -> None:
    with pytest.raises(CaptureError, match=r"^--bpf: .*syntax error"):
        validate("tcp prt 25")
    assert compile_filter(1, "  ") is None
    assert strip_vlan_clauses("tcp port 1") == "tcp port 1"
