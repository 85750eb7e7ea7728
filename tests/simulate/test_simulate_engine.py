"""Determinism, labels and ground truth of `sensor simulate`, driven through its click command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from simhelp import Generated

from sensor.simulate.cli import simulate as simulate_cmd

EXPECTED_ATTACKERS = {
    "spambot-burst": {"spambot"},
    "spambot-slow": {"spambot"},
    "bruteforce": {"auth_bruteforce"},
    "compromised": {"compromised_account"},
    "open-relay": {"relay_abuse", "open_relay"},
    "harvest": {"dictionary_harvest"},
    "inbound-spam": {"spam_source"},
    "benign": set(),
}
OTHER_ATTACKERS = {
    "submission-spambot": {"spambot"},  # labelled with the alert kind, not the actor's
}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(simulate_cmd, list(args))
    return result.exit_code, result.output


def _labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, out = _run("harvest", "bruteforce", "--seed", seed, "--duration", "8m",
                         "-o", str(tmp_path / f"{name}.pcap"))
        assert code == 0, out
    a, b, c = ((tmp_path / f"{n}.pcap").read_bytes() for n in "abc")
    assert a == b and a != c
    assert (tmp_path / "a.labels.csv").read_text() == (tmp_path / "b.labels.csv").read_text()


def test_labels_name_each_attacker_and_nothing_else(generated: dict[str, Generated]) -> None:
    for name, kinds in {**EXPECTED_ATTACKERS, **OTHER_ATTACKERS}.items():
        rows = _labels(generated[name].labels)
        assert list(rows[0]) == ["ip", "label", "kind", "attack_start", "attack_end", "role"]
        bad = [r for r in rows if r["label"] == "malicious"]
        assert {r["kind"] for r in bad} == kinds, name
        for r in bad:
            assert float(r["attack_start"]) <= float(r["attack_end"])
            assert r["role"] == ("victim" if r["kind"] == "open_relay" else "attacker")
        for r in rows:
            if r["label"] == "benign":
                assert r["attack_start"] == r["attack_end"] == ""


def test_demo_holds_benign_traffic_and_one_of_each_attack(
        generated: dict[str, Generated]) -> None:
    rows = _labels(generated["demo"].labels)
    kinds = {r["kind"] for r in rows if r["label"] == "malicious"}
    assert kinds == set().union(*EXPECTED_ATTACKERS.values())
    benign = {r["kind"] for r in rows if r["label"] == "benign"}
    assert {"outbound_mta", "inbound_mta", "newsletter", "backup_mx", "monitoring", "appliance",
            "mx"} <= benign
    ips = [r["ip"] for r in rows]
    assert len(ips) == len(set(ips))
    counts = generated["demo"].truth["counts"]
    assert counts["spambot"]["refused"] > 0 and counts["spambot"]["unanswered"] > 0
    assert counts["auth_bruteforce"]["auth_failed"] == counts["auth_bruteforce"]["auth"]
    assert counts["spam_source"]["pregreet"] > 0 and counts["spam_source"]["blocked"] > 0


def test_compromised_account_fails_then_succeeds_then_relays(
        generated: dict[str, Generated]) -> None:
    c = generated["compromised"].truth["counts"]["compromised_account"]
    assert 0 < c["auth_failed"] < c["auth"]
    assert c["mail"] > 0 and c["rcpt"] >= 5 * c["mail"]


def test_merged_scenarios_keep_addresses_distinct(tmp_path: Path) -> None:
    code, out = _run("spambot-burst", "spambot-burst", "--duration", "10m",
                     "-o", str(tmp_path / "m.pcap"))
    assert code == 0, out
    rows = _labels(tmp_path / "m.labels.csv")
    bots = [r["ip"] for r in rows if r["kind"] == "spambot"]
    assert len(bots) == len(set(bots)) == 2
    truth = json.loads((tmp_path / "m.truth.json").read_text())
    assert truth["duration_s"] == 600


def test_start_option_moves_packet_time(tmp_path: Path) -> None:
    code, out = _run("bruteforce", "--start", "2027-01-01T00:00:00Z", "-o",
                     str(tmp_path / "s.pcap"))
    assert code == 0, out
    rows = [r for r in _labels(tmp_path / "s.labels.csv") if r["label"] == "malicious"]
    assert 1798761600 <= float(rows[0]["attack_start"]) < 1798761600 + 900


def test_list_names_the_built_in_scenarios() -> None:
    code, out = _run("--list")
    assert code == 0
    names = {line.split()[0] for line in out.splitlines()}
    assert {"benign", "demo", "site-500", "spambot-burst", "open-relay"} <= names
