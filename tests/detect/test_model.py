"""The trained host model through the real CLI: train, inspect, analyze --model/--host-scores,
evaluate --plot/--json, reproducibility, and refusal of every damaged or untrusted model file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from sensor.detect import model as host_model

ROOT = Path(__file__).resolve().parents[2]
PCAPS = ROOT / "pcaps"
CONFIG = str(PCAPS / "demo.toml")
TRAIN = str(PCAPS / "train-benign.pcap")
DEMO = str(PCAPS / "demo.pcap")


def sensor(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "site.skops"
    out = sensor("train", TRAIN, "--config", CONFIG, "-o", str(path), "--seed", "7").stdout
    assert f"trained {path}: 1 capture files" in out
    assert "host-windows; threshold" in out and "hosts (" in out
    return path


def test_inspect_prints_the_model_card(trained: Path) -> None:
    out = sensor("inspect", str(trained)).stdout
    for words in ("detector", "threshold", "target false-positive rate 0.0001",
                  f"feature schema    version {host_model.FEATURE_SCHEMA_VERSION}",
                  "scikit-learn", "skops", "train-benign.pcap", "training span",
                  "authorised MTA", "our server", "command           sensor train"):
        assert words in out, words
    card = json.loads(sensor("inspect", "--json", "--verify", str(trained)).stdout)
    assert card["feature_names"] == list(host_model.MODEL_FEATURES)
    assert card["seed"] == 7 and card["training"]["host_windows"] > 100


def test_retraining_the_same_inputs_gives_the_same_scores(trained: Path,
                                                          tmp_path: Path) -> None:
    again = tmp_path / "again.skops"
    sensor("train", TRAIN, "--config", CONFIG, "-o", str(again), "--seed", "7")
    lines = []
    for path in (trained, again):
        scores = tmp_path / f"{path.stem}.jsonl"
        sensor("analyze", DEMO, "--config", CONFIG, "-q", "--model", str(path),
               "--host-scores", str(scores))
        lines.append(scores.read_text())
    assert lines[0] == lines[1] and lines[0].count("\n") > 20


def test_analyze_scores_hosts_and_raises_model_alerts(trained: Path, tmp_path: Path) -> None:
    alerts, scores = tmp_path / "alerts.jsonl", tmp_path / "scores.jsonl"
    proc = sensor("analyze", DEMO, "--config", CONFIG, "--model", str(trained), "--alerts",
                  str(alerts), "--host-scores", str(scores))
    assert "model: host windows scored" in proc.stdout
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert rows == sorted(rows, key=lambda r: (-r["score"], r["host"]))
    assert {r["role"] for r in rows} == {"outside", "inside", "mta", "server"}
    top = rows[0]
    assert set(top) >= {"host", "score", "threshold", "role", "rule_kinds", "top_features"}
    assert top["score"] > top["threshold"] and top["top_features"]
    assert all("percentile in training" in f["text"] for f in top["top_features"])
    got = [json.loads(line) for line in alerts.read_text().splitlines()]
    sources = {a["source"] for a in got}
    assert "rule" in sources and sources & {"model", "both"}
    for a in got:
        if a["source"] in ("model", "both"):
            assert a["evidence"]["model"]["score"] > a["evidence"]["model"]["threshold"]
    rules_only = tmp_path / "rules.jsonl"
    sensor("analyze", DEMO, "--config", CONFIG, "-q", "--no-model", "--alerts", str(rules_only))
    assert all(json.loads(x)["source"] == "rule" for x in rules_only.read_text().splitlines())


def test_evaluate_reports_each_mode_and_draws_the_plot(trained: Path, tmp_path: Path) -> None:
    png, figures = tmp_path / "roc.png", tmp_path / "eval.json"
    out = sensor("evaluate", "--labels", str(PCAPS / "demo.labels.csv"), "--config", CONFIG,
                 "--model", str(trained), "--plot", str(png), "--json", str(figures),
                 DEMO).stdout
    assert "mode   precision  recall  ROC AUC  PR AUC  FP hosts" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    modes = json.loads(figures.read_text())["modes"]
    assert set(modes) == {"rules", "model", "both"}
    assert modes["both"]["recall"] >= modes["rules"]["recall"]
    assert 0.5 < modes["model"]["roc_auc"] <= 1.0


# -- refusals: one line, exit 2, never a traceback and never a score --------------------------


def _refused(model: Path, words: str) -> None:
    for args in (("inspect", "--verify", str(model)),
                 ("analyze", DEMO, "--config", CONFIG, "-q", "--model", str(model),
                  "--alerts", "/dev/null")):
        proc = sensor(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("sensor: error")]
        assert len(lines) == 1 and words in lines[0] and str(model) in lines[0], proc.stderr


def test_truncated_model_refused(trained: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.skops"
    data = trained.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    _refused(cut, "not a model file")


def test_altered_member_refused(trained: Path, tmp_path: Path) -> None:
    """Every member's CRC is checked before a run: a flipped byte is caught at once."""
    bad = tmp_path / "flipped.skops"
    data = bytearray(trained.read_bytes())
    data[len(data) // 3] ^= 0xFF
    bad.write_bytes(bytes(data))
    _refused(bad, "model")


def _rewrite(src: Path, dst: Path, change: dict[str, object]) -> None:
    loaded = sio.load(str(src), trusted=sio.get_untrusted_types(file=str(src)))
    loaded.update(change)
    sio.dump(loaded, str(dst))


def test_consistently_rewritten_scores_refused(trained: Path, tmp_path: Path) -> None:
    """An archive rebuilt whole (valid CRCs) whose check rows no longer match its model."""
    loaded = sio.load(str(trained), trusted=sio.get_untrusted_types(file=str(trained)))
    bad = tmp_path / "rewritten.skops"
    _rewrite(trained, bad, {"check_scores": np.asarray(loaded["check_scores"]) + 0.01})
    _refused(bad, "altered or inconsistent")


def test_untrusted_type_refused(trained: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    bad = tmp_path / "foreign.skops"
    _rewrite(trained, bad, {"pipeline": LogisticRegression()})
    _refused(bad, "outside the sensor's trusted list: sklearn.linear_model")


def test_other_schema_refused(trained: Path, tmp_path: Path) -> None:
    loaded = sio.load(str(trained), trusted=sio.get_untrusted_types(file=str(trained)))
    card = dict(loaded["card"])
    card["feature_schema_version"] = 999
    bad = tmp_path / "old.skops"
    _rewrite(trained, bad, {"card": card})
    _refused(bad, "trained for feature schema 999")


def test_not_a_model_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.skops"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("schema.json", json.dumps({"content": {}}))
    _refused(other, "not a port25-sensor model")
    _refused(tmp_path / "missing.skops", "no such model file")
    shutil.copy(DEMO, tmp_path / "capture.skops")
    _refused(tmp_path / "capture.skops", "not a model file")


def test_training_from_logs_equals_training_from_the_capture(tmp_path: Path) -> None:
    sessions, conns = tmp_path / "s.jsonl", tmp_path / "c.jsonl"
    sensor("analyze", TRAIN, "--config", CONFIG, "-q", "--no-model", "--sessions",
           str(sessions), "--conns", str(conns))
    outs = []
    for name, inputs in (("pcap", [TRAIN]), ("logs", ["--from-sessions", str(sessions),
                                                      "--from-sessions", str(conns)])):
        model = tmp_path / f"{name}.skops"
        sensor("train", *inputs, "--config", CONFIG, "-o", str(model))
        scores = tmp_path / f"{name}.jsonl"
        sensor("analyze", DEMO, "--config", CONFIG, "-q", "--model", str(model),
               "--host-scores", str(scores))
        outs.append(scores.read_text())
    assert outs[0] == outs[1]
    only_sessions = sensor("train", "--from-sessions", str(sessions), "--config", CONFIG, "-o",
                           str(tmp_path / "s.skops"))
    assert "no connection records among the logs" in only_sessions.stderr
