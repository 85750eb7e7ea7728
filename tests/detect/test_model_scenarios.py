"""The bundled model on simulated captures whose seeds its training never saw (it was trained on
seeds 1001+ by scripts/train_default_model.py): model alone, rules alone, both together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sensor.config import Config, parse_config
from sensor.detect.evaluate import host_level, read_labels, run_detection
from sensor.detect.model import bundled_model, load
from sensor.simulate.engine import simulate
from sensor.simulate.scenario import load_scenario

MIN_ROC_AUC = 0.97
UNSEEN = (("demo", 11, None), ("demo", 12, None), ("site-500", 3, 1800.0),
          ("stealth", 1, None), ("stealth", 2, None), ("submission-spambot", 1, None))


def site_config(truth: Path) -> Config:
    site = json.loads(truth.read_text())["site"]
    text = "[site]\n" + "".join(f"{k} = {json.dumps(site[k])}\n" for k in (
        "home_net", "mail_servers", "local_domains"))
    return parse_config(text, str(truth))


@pytest.fixture(scope="module")
def model() -> Any:
    path = bundled_model()
    assert path is not None, "models/default.skops is missing (scripts/train_default_model.py)"
    return load(path)


@pytest.fixture(scope="module")
def results(model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    root = tmp_path_factory.mktemp("unseen")
    for name, seed, duration in UNSEEN:
        pcap = root / f"{name}-{seed}.pcap"
        simulate([load_scenario(name)], str(pcap), seed=seed, duration_s=duration)
        scores: list[dict[str, Any]] = []
        alerts, _ = run_detection([str(pcap)], site_config(pcap.with_suffix(".truth.json")),
                                  model, scores)
        labels = read_labels(str(pcap.with_suffix(".labels.csv")))
        out[f"{name}/{seed}"] = (host_level(labels, alerts, scores, model.threshold), labels,
                                 alerts)
    return out


@pytest.mark.parametrize("capture", [f"{n}/{s}" for n, s, _ in UNSEEN])
def test_rules_and_model_together_catch_every_attacker_and_no_benign_host(
        results: dict[str, Any], capture: str) -> None:
    modes, labels, _ = results[capture]
    both = modes["both"]
    assert both.recall == 1.0, (capture, sorted(set(both.detected) ^ {
        ip for ip, lab in labels.items() if lab.malicious}))
    assert both.false_positive_hosts == [], capture
    for host, ttd in both.ttd_s.items():  # together never later than the rules alone
        assert ttd <= modes["rules"].ttd_s.get(host, float("inf")), (capture, host)


@pytest.mark.parametrize("capture", ["demo/11", "demo/12", "site-500/3"])
def test_model_alone_ranks_attackers_above_benign_hosts(results: dict[str, Any],
                                                        capture: str) -> None:
    model_mode = results[capture][0]["model"]
    assert model_mode.roc_auc is not None and model_mode.roc_auc >= MIN_ROC_AUC, (
        capture, model_mode.roc_auc)


def test_the_appliance_of_an_attacked_user_is_not_flagged(results: dict[str, Any]) -> None:
    """site-500 seed 3: 10.20.4.116 logged in as a user an outside host had just guessed."""
    modes, labels, alerts = results["site-500/3"]
    assert labels["10.20.4.116"].malicious is False
    assert not [a for a in alerts if a.host == "10.20.4.116"]
    assert "10.20.4.116" not in modes["model"].false_positive_hosts


@pytest.mark.parametrize("capture", ["stealth/1", "stealth/2"])
def test_the_model_flags_what_stays_under_every_rule(results: dict[str, Any],
                                                     capture: str) -> None:
    modes, labels, alerts = results[capture]
    attackers = {ip for ip, lab in labels.items() if lab.malicious}
    assert attackers and not [a for a in alerts if a.host in attackers and a.source == "rule"]
    assert set(modes["model"].detected) == attackers
    flagged = {a.host for a in alerts if a.kind == "anomalous_host"}
    assert flagged == attackers
    for a in alerts:
        if a.host in attackers:
            top = a.evidence["model"]["top_features"]  # type: ignore[index]
            assert 3 <= len(top) <= 5 and "percentile in training" in a.summary
