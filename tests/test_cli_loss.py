"""Capture loss on a whole simulated site: it shows as gaps and a loss figure, never as alerts."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
DROP = 0.2
SEEDS = (1, 2, 3, 4, 5, 6)
MODEL_SEEDS = tuple(range(1, 13))


def drop_packets(src: Path, dst: Path, fraction: float, seed: int) -> int:
    """Copy a classic pcap without a random `fraction` of its records; returns those kept."""
    data = src.read_bytes()
    rng = random.Random(seed)
    out = [data[:24]]
    pos = 24
    while pos + 16 <= len(data):
        end = pos + 16 + struct.unpack_from("<I", data, pos + 8)[0]
        if rng.random() >= fraction:
            out.append(data[pos:end])
        pos = end
    dst.write_bytes(b"".join(out))
    return len(out) - 1


def drop_bursts(src: Path, dst: Path, keep: int, drop: int) -> int:
    """Copy a classic pcap keeping `keep` records, then dropping `drop`, in turn: what a full
    capture ring does (the kernel drops every packet until the reader frees a block, so both
    directions of a connection lose runs of packets together). Returns the records kept."""
    data = src.read_bytes()
    out = [data[:24]]
    pos, i = 24, 0
    while pos + 16 <= len(data):
        end = pos + 16 + struct.unpack_from("<I", data, pos + 8)[0]
        if i % (keep + drop) < keep:
            out.append(data[pos:end])
        pos, i = end, i + 1
    dst.write_bytes(b"".join(out))
    return len(out) - 1


def analyze(pcap: Path, tmp: Path, *extra: str) -> tuple[set[tuple[str, str]], dict]:
    """(host, kind) of every alert, and the run's counters."""
    kinds, stats, _ = analyze_alerts(pcap, tmp, *extra)
    return kinds, stats


def analyze_alerts(pcap: Path, tmp: Path, *extra: str) -> tuple[set[tuple[str, str]], dict,
                                                                 list[dict]]:
    """(host, kind) of every alert, the run's counters and the alerts themselves."""
    alerts, stats = tmp / f"{pcap.stem}.alerts", tmp / f"{pcap.stem}.stats"
    r = subprocess.run([sys.executable, "-m", "sensor", "analyze", str(pcap), "-q",
                        "--alerts", str(alerts), "--stats", str(stats), *extra],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = [json.loads(line) for line in alerts.read_text().splitlines()]
    return {(a["host"], a["kind"]) for a in found}, json.loads(stats.read_text()), found


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[tuple[str, str]], dict]:
    return analyze(DEMO, tmp_path_factory.mktemp("clean"), "--no-model")


def test_clean_capture_estimates_no_loss(clean: tuple[set[tuple[str, str]], dict]) -> None:
    kinds, stats = clean
    tcp = stats["tcp"]
    assert tcp["acks"] > 1000 and tcp["acks_unseen"] == tcp["ack_unseen_bytes"] == 0
    assert kinds


@pytest.mark.parametrize("seed", SEEDS)
def test_random_drops_raise_no_rule_alert_the_whole_capture_does_not(
    tmp_path: Path, seed: int, clean: tuple[set[tuple[str, str]], dict]
) -> None:
    lossy = tmp_path / "lossy.pcap"
    drop_packets(DEMO, lossy, DROP, seed)
    kinds, stats = analyze(lossy, tmp_path, "--no-model")
    assert kinds - clean[0] == set()
    tcp = stats["tcp"]
    loss = 100 * tcp["acks_unseen"] / tcp["acks"]
    assert 10 < loss < 35, loss  # about the fraction dropped: an ACK's data went with it
    assert tcp["gaps"] > 0
    abuse = {"unknown_command", "out_of_sequence", "bare_lf", "invalid_transaction"}
    assert not abuse & set(stats["totals"]["anomalies"])


@pytest.fixture(scope="module")
def clean_model(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    """What the rules and the bundled model raise on the whole capture: every (host, kind),
    and (host, anomalous_host) for each host the model flagged, alone or confirming a rule."""
    kinds, stats, alerts = analyze_alerts(DEMO, tmp_path_factory.mktemp("clean-model"))
    assert stats["detect"]["model_scored"] > 0
    flagged = {a["host"] for a in alerts if a["source"] in ("model", "both")}
    assert flagged and any(kind == "anomalous_host" for _, kind in kinds)
    return kinds | {(host, "anomalous_host") for host in flagged}


@pytest.mark.parametrize("seed", MODEL_SEEDS)
def test_random_drops_raise_no_model_finding_the_whole_capture_does_not(
    tmp_path: Path, seed: int, clean_model: set[tuple[str, str]]
) -> None:
    """With the bundled model too, loss adds no finding. A host the model flags on the whole
    capture may be raised as anomalous_host under loss rather than as a rule alert the model
    confirms (its rule evidence, thinned by the drops, comes later): the same finding."""
    lossy = tmp_path / "lossy.pcap"
    drop_packets(DEMO, lossy, DROP, seed)
    kinds, stats, _ = analyze_alerts(lossy, tmp_path)
    assert stats["detect"]["model_scored"] > 0
    assert kinds - clean_model == set()


@pytest.mark.parametrize(("keep", "drop"), [(5, 15), (10, 10), (20, 30), (30, 20), (60, 40),
                                           (300, 200)])  # fmt: skip
def test_burst_drops_raise_no_finding_the_whole_capture_does_not(
    tmp_path: Path, keep: int, drop: int, clean_model: set[tuple[str, str]]
) -> None:
    """Kernel drops come in runs, which take a greeting with its SYN-ACK, a STARTTLS with its
    reply, a DATA with its 354 or an AUTH's verdict. None of it becomes a finding: no missing
    banner, no other protocol in message text or a TLS hello, no AUTH success from QUIT's 221."""
    lossy = tmp_path / "bursts.pcap"
    drop_bursts(DEMO, lossy, keep, drop)
    kinds, stats, _ = analyze_alerts(lossy, tmp_path)
    assert stats["tcp"]["gaps"] > 0 and stats["detect"]["model_scored"] > 0
    assert kinds - clean_model == set()


SITE = ROOT / "pcaps" / "demo.toml"
"""The demo's site config: local domains and mail servers, so the relay rules are on."""


@pytest.fixture(scope="module")
def clean_site(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    kinds, _ = analyze(DEMO, tmp_path_factory.mktemp("clean-site"), "--no-model",
                       "--config", str(SITE))  # fmt: skip
    assert {kind for _, kind in kinds} & {"open_relay", "relay_abuse"}
    return kinds


@pytest.mark.parametrize("seed", MODEL_SEEDS)
def test_random_drops_make_no_relay_of_a_site_configured_capture(
    tmp_path: Path, seed: int, clean_site: set[tuple[str, str]]
) -> None:
    """With local domains known, a session whose AUTH (or its reply) was lost must not count
    its accepted foreign recipients as relayed: open_relay and relay_abuse stay those of the
    whole capture."""
    lossy = tmp_path / "lossy.pcap"
    drop_packets(DEMO, lossy, DROP, seed)
    kinds, _ = analyze(lossy, tmp_path, "--no-model", "--config", str(SITE))
    assert kinds - clean_site == set()
