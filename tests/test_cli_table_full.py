"""A connection table filled by connections waiting out their linger (what a busy link does at
150,000 packets/s: five seconds of closed connections) must not split open ones: `sensor analyze`
then writes the sessions and raises the alerts of a run whose table had room."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
LINGER = "[reassembly]\nclosed_linger_s = 120.0\n"
"""A long linger makes the demo's closed connections pile up as a busy link's do in 5 s (its
peak is then 48 connections in the table, 15 with the default 5 s)."""


def analyze(tmp: Path, config: str, *extra: str) -> tuple[list[str], set[tuple[str, str]], dict]:
    """Sorted session lines, (host, kind) of the alerts, and the counters of one run."""
    cfg, sessions, alerts, stats = (tmp / n for n in ("c.toml", "s.jsonl", "a.jsonl", "st.json"))
    cfg.write_text(config)
    r = subprocess.run([sys.executable, "-m", "sensor", "analyze", str(DEMO), "-q",
                        "--config", str(cfg), "--sessions", str(sessions), "--alerts",
                        str(alerts), "--stats", str(stats), *extra],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    found = {(a["host"], a["kind"]) for a in map(json.loads, alerts.read_text().splitlines())}
    return sorted(sessions.read_text().splitlines()), found, json.loads(stats.read_text())


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], set[tuple[str, str]]]:
    sessions, alerts, stats = analyze(tmp_path_factory.mktemp("roomy"), LINGER)
    assert stats["tcp"]["active_peak"] > 40 and stats["tcp"]["linger_cut"] == 0
    return sessions, alerts


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_table_full_of_lingering_connections_splits_no_open_one(
    roomy: tuple[list[str], set[tuple[str, str]]], tmp_path: Path, workers: str
) -> None:
    sessions, alerts, stats = analyze(
        tmp_path, LINGER + "max_connections = 16\n", "--workers", workers
    )
    tcp = stats["tcp"]
    assert tcp["linger_cut"] > 100  # the cap was hit, again and again
    assert tcp["evicted_lru"] == tcp["evicted_half_open"] == tcp["evicted_memcap"] == 0
    assert tcp["connections"] == 212  # none split in two
    assert sessions == roomy[0]
    assert alerts == roomy[1]
    assert len(alerts) > 10
