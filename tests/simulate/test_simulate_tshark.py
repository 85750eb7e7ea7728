"""Wireshark dissects every generated scenario cleanly and counts what the generator wrote."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from simhelp import SMALL, Generated

CHECKS = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]


def _tshark(tshark: str, pcap: Path, *args: str) -> str:
    proc = subprocess.run([tshark, "-r", str(pcap), *CHECKS, *args], capture_output=True,
                          text=True, check=True)
    return proc.stdout


def _commands(tshark: str, pcap: Path) -> Counter[str]:
    out = _tshark(tshark, pcap, "-T", "fields", "-e", "smtp.req.command")
    return Counter(c for line in out.splitlines() for c in line.split(",") if c)


@pytest.mark.parametrize("name", SMALL)
def test_no_malformed_or_error_frames(tshark: str, generated: dict[str, Generated],
                                      name: str) -> None:
    bad = _tshark(tshark, generated[name].pcap, "-Y",
                  "_ws.malformed or _ws.expert.severity >= error")
    assert bad == ""


@pytest.mark.parametrize("name", SMALL)
def test_command_counts_match_ground_truth(tshark: str, generated: dict[str, Generated],
                                           name: str) -> None:
    g = generated[name]
    seen = _commands(tshark, g.pcap)
    totals = g.truth["totals"]
    assert totals.get("mail", 0) > 0 or totals.get("auth", 0) > 0
    for verb, key in (("MAIL", "mail"), ("RCPT", "rcpt"), ("DATA", "data"), ("BDAT", "bdat"),
                      ("AUTH", "auth_cmd"), ("STAR", "starttls"), ("QUIT", "quit")):
        # Wireshark keeps 4 characters of a verb, and reads whatever follows a refused
        # pipelined DATA as message content: the generator counts those commands apart.
        expected = totals.get(key, 0) - totals.get(key + "_unsynced", 0)
        assert seen[verb] == expected, verb


def test_starttls_is_followed_by_tls_records(tshark: str, generated: dict[str, Generated]) -> None:
    g = generated["benign"]
    out = _tshark(tshark, g.pcap, "-Y", "tls.handshake.type == 1", "-T", "fields", "-e",
                  "tls.record.version")
    hellos = out.split()
    assert len(hellos) == g.truth["totals"]["tls"] > 0
    assert set(hellos) == {"0x0301"}
    app = _tshark(tshark, g.pcap, "-Y", "tls.app_data")
    assert app.count("\n") > len(hellos)


def test_checksum_verification_catches_a_corrupted_frame(tshark: str,
                                                         generated: dict[str, Generated],
                                                         tmp_path: Path) -> None:
    data = bytearray(generated["bruteforce"].pcap.read_bytes())
    data[24 + 16 + 14 + 20 + 20 + 1] ^= 0xFF  # first frame: a byte past the TCP header start
    data[24 + 16 + 14 + 8] ^= 0x01  # and its IPv4 TTL, so the IP checksum is wrong too
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(data))
    out = _tshark(tshark, bad, "-Y", "_ws.expert.severity >= error")
    assert out.count("\n") >= 1


def test_retransmissions_and_reordering_are_present(tshark: str,
                                                    generated: dict[str, Generated]) -> None:
    out = _tshark(tshark, generated["demo"].pcap, "-Y",
                  "tcp.analysis.retransmission or tcp.analysis.out_of_order")
    assert out.count("\n") >= 1
