"""On `sensor simulate` scenarios: the right kind for every attacker, no benign host, golden logs.

Regenerate the golden alert logs on purpose with
`SENSOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/detect/test_scenarios.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sensor.config import Config, parse_config
from sensor.detect import alert_to_dict
from sensor.detect.cli import evaluate_cmd
from sensor.detect.evaluate import read_labels, run_detection, score_alerts
from sensor.output.jsonl import to_json_line
from sensor.simulate.engine import simulate
from sensor.simulate.scenario import load_scenario

GOLDEN = Path(__file__).parent.parent / "golden"
UPDATE = os.environ.get("SENSOR_UPDATE_GOLDEN") == "1"
ATTACKS = ("spambot-burst", "spambot-slow", "bruteforce", "compromised", "open-relay",
           "harvest", "inbound-spam")
GOLDEN_SCENARIOS = ("spambot-burst", "compromised", "open-relay", "inbound-spam")
SEEDS = (1, 2)
BURST_TTD_S = 120.0  # the issue: burst spambots flagged within 2 minutes of packet time


def site_config(truth: Path) -> Config:
    """The config a SOC would write for the simulated site (from the truth file)."""
    site = json.loads(truth.read_text())["site"]
    text = "[site]\n" + "".join(f"{k} = {json.dumps(site[k])}\n" for k in (
        "home_net", "mail_servers", "local_domains")) + 'sensor = "sim"\n'
    return parse_config(text, str(truth))


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    out: dict[tuple[str, int], Path] = {}
    root = tmp_path_factory.mktemp("sim")
    for name in ("benign", *ATTACKS):
        for seed in SEEDS:
            pcap = root / f"{name}-{seed}.pcap"
            simulate([load_scenario(name)], str(pcap), seed=seed)
            out[(name, seed)] = pcap
    return out


def _evaluate(pcap: Path):  # type: ignore[no-untyped-def]
    cfg = site_config(pcap.with_suffix(".truth.json"))
    alerts, stats = run_detection([str(pcap)], cfg)
    labels = read_labels(str(pcap.with_suffix(".labels.csv")))
    return alerts, score_alerts(labels, alerts), stats


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", ("benign", *ATTACKS))
def test_every_attacker_is_found_and_no_benign_host_alerted(
        captures: dict[tuple[str, int], Path], name: str, seed: int) -> None:
    alerts, ev, stats = _evaluate(captures[(name, seed)])
    assert ev.false_positive_hosts == {}, ev.false_positive_hosts
    assert ev.unlabelled_hosts == {}, ev.unlabelled_hosts
    for kind, res in ev.kinds.items():
        assert res.recall == 1.0, (kind, res.hosts, res.detected)
    if name == "benign":
        assert alerts == [] and ev.benign_hosts > 25
    else:
        assert ev.kinds and all(r.detected for r in ev.kinds.values())
    assert stats.evicted == 0 and stats.events_dropped == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_burst_spambot_is_flagged_within_two_minutes(
        captures: dict[tuple[str, int], Path], seed: int) -> None:
    _, ev, _ = _evaluate(captures[("spambot-burst", seed)])
    (ttd,) = ev.kinds["spambot"].ttd_s.values()
    assert 0 <= ttd <= BURST_TTD_S


def test_hard_negatives_are_in_the_benign_scenario(
        captures: dict[tuple[str, int], Path]) -> None:
    kinds = {lab.kind for lab in read_labels(
        str(captures[("benign", 1)].with_suffix(".labels.csv"))).values()}
    assert {"newsletter", "backup_mx", "monitoring", "appliance", "outbound_mta"} <= kinds


@pytest.mark.parametrize("name", GOLDEN_SCENARIOS)
def test_golden_alert_logs(captures: dict[tuple[str, int], Path], name: str) -> None:
    alerts, _, _ = _evaluate(captures[(name, 1)])
    got = b"".join(to_json_line(alert_to_dict(a)) for a in alerts).decode()
    path = GOLDEN / f"alerts-{name}-seed1.jsonl"
    if UPDATE:
        path.write_text(got)
    assert got == path.read_text(), f"{path} differs (SENSOR_UPDATE_GOLDEN=1 to regenerate)"


def test_evaluate_command_prints_recall_fps_and_time_to_detect(
        captures: dict[tuple[str, int], Path], tmp_path: Path) -> None:
    pcap = captures[("open-relay", 1)]
    cfg = tmp_path / "site.toml"
    site = json.loads(pcap.with_suffix(".truth.json").read_text())["site"]
    cfg.write_text("[site]\n" + "".join(
        f"{k} = {json.dumps(site[k])}\n" for k in ("home_net", "mail_servers", "local_domains")))
    labels = str(pcap.with_suffix(".labels.csv"))
    result = CliRunner().invoke(evaluate_cmd, ["--labels", labels, "--config", str(cfg),
                                               "--no-model", str(pcap)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["kind", "hosts", "detected", "recall"]
    assert any(ln.startswith("open_relay") and " 1.00 " in ln for ln in lines)
    assert any(ln.startswith("relay_abuse") and " 1.00 " in ln for ln in lines)
    assert "false-positive hosts: 0 of" in result.output
    as_json = CliRunner().invoke(evaluate_cmd, ["--labels", labels, "--config", str(cfg),
                                                "--no-model", "--json", "-", str(pcap)])
    figures = json.loads(as_json.output)
    assert figures["kinds"]["open_relay"]["recall"] == 1.0
    # without a config the default home_net does not cover the simulated site: said on stderr
    bare = CliRunner().invoke(evaluate_cmd, ["--labels", labels, "--no-model", str(pcap)])
    assert "sensor: assumed home_net: assumed RFC 1918" in bare.output
