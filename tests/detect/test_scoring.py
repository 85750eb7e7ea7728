"""The model's child process: the same alerts and host scores as scoring in-process, numpy kept
out of the sensor process until a row needs explaining, and a model the child cannot read
refused even when no host is ever scored."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import detfactory
import numpy as np

from sensor.capture.source import open_files
from sensor.capture.writer import PcapWriter
from sensor.config import load_config
from sensor.detect import tables
from sensor.detect.alerts import alert_to_dict
from sensor.detect.card import peek_card
from sensor.detect.detector import Detector
from sensor.detect.scoring import CHILD_NICE, ChildScorer, LocalScorer, Scorer
from sensor.pipeline import Pipeline

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = str(ROOT / "models" / "default.skops")
CONFIG = str(ROOT / "pcaps" / "demo.toml")
DEMO = str(ROOT / "pcaps" / "demo.pcap")
BENIGN = str(ROOT / "pcaps" / "train-benign.pcap")


def _run(scorer: Scorer) -> tuple[list[dict[str, Any]], list[dict[str, object]]]:
    """Alerts and host-score lines of the demo capture scored by `scorer`."""
    alerts: list[dict[str, Any]] = []
    det = Detector(load_config(CONFIG), lambda a: alerts.append(alert_to_dict(a)), scorer,
                   "model")
    assert det.stage is not None
    det.stage.explain_all = True
    pipe = Pipeline(on_conn=det.on_conn, on_session=det.on_session)
    pipe.run(open_files([DEMO], "tcp", pipe.capture_stats, lambda path, why: None))
    pipe.finish()
    det.finish()
    return alerts, det.host_scores()


def test_child_process_scores_as_in_process() -> None:
    """Rows made and scored in the child give the alerts (model ones, "both" marks and their
    explanations included) and host scores of rows made and scored in this process."""
    found = tables.read(BUNDLED, peek_card(BUNDLED))
    assert found is not None
    local_alerts, local_scores = _run(LocalScorer(found))
    cfg = load_config(CONFIG)
    w = cfg.windows
    windows = {"short": float(w.short_s), "medium": float(w.medium_s), "long": float(w.long_s)}
    child_alerts, child_scores = _run(ChildScorer(BUNDLED, peek_card(BUNDLED)))
    explained = _run(ChildScorer(BUNDLED, peek_card(BUNDLED), (windows, cfg.model.top_features)))
    assert explained == (local_alerts, local_scores)  # explanations made in the child
    assert any(a["source"] != "rule" for a in local_alerts)  # the model had its say
    assert child_alerts == local_alerts
    assert child_scores == local_scores
    assert len(child_scores) > 20


_PROBE = """
import sys
from sensor.cli import main
sys.argv = ["sensor", "analyze", "-q", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("numpy" in sys.modules)
"""


def _numpy_imported(*args: str) -> bool:
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    return out[-1] == "True"


def test_sensor_process_imports_numpy_only_to_explain(tmp_path: Path) -> None:
    """A capture is scored without numpy in the sensor process, hosts over the threshold
    included (the model's process explains them); asking for host scores (every host's best
    row explained) brings it in."""
    common = ["--config", CONFIG, "--alerts", str(tmp_path / "a.jsonl"), BENIGN]
    assert not _numpy_imported(*common)
    assert (tmp_path / "a.jsonl").read_text() == ""
    assert _numpy_imported(*common, "--host-scores", str(tmp_path / "s.jsonl"))
    # hosts over the threshold are explained in the model's process: still no numpy here
    alerts = tmp_path / "demo.jsonl"
    assert not _numpy_imported("--config", CONFIG, "--alerts", str(alerts), DEMO)
    model = [json.loads(ln) for ln in alerts.read_text().splitlines()
             if json.loads(ln)["source"] != "rule"]
    assert model and all(a["evidence"]["model"]["top_features"] for a in model)
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert lines and all(json.loads(ln)["score"] <= json.loads(ln)["threshold"] for ln in lines)


def test_unreadable_tables_refused_when_nothing_is_scored(tmp_path: Path) -> None:
    """The child reads the tables while the sensor reads packets: a capture with no SMTP at
    all (no batch ever sent) still ends in the one-line error and exit 2."""
    with zipfile.ZipFile(BUNDLED) as zf, np.load(io.BytesIO(zf.read(tables.MEMBER))) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["count_ge"] = arrays["count_ge"] * 0.5
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    bad = tmp_path / "halved.skops"
    with zipfile.ZipFile(BUNDLED) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, buf.getvalue() if name == tables.MEMBER else zin.read(name))
    empty = tmp_path / "empty.pcap"
    with PcapWriter(str(empty)) as w:
        w.write(1.0, b"\x00" * 60)  # one frame, not IP: no connection, no host
    proc = subprocess.run([sys.executable, "-m", "sensor", "analyze", "-q", str(empty),
                           "--model", str(bad), "--alerts", "/dev/null"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("sensor: error")]
    assert len(lines) == 1 and "scoring tables" in lines[0], proc.stderr


_THREADS = """
import os, sys
from sensor.detect.card import peek_card
from sensor.detect.scoring import ChildScorer
assert "numpy" not in sys.modules
scorer = ChildScorer(sys.argv[1], peek_card(sys.argv[1]))
scorer.ready()
print(len(os.listdir(f"/proc/{scorer.pid}/task")))
scorer.close()
"""


def test_model_child_runs_one_thread() -> None:
    """The child's numpy has no BLAS thread pool: its threads spin between calls, taking CPU
    from the packet loop."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", _THREADS, BUNDLED], capture_output=True,
                         text=True, check=True, timeout=120, env=env).stdout.split()
    assert out[-1] == "1"


def test_model_child_yields_the_cpu_to_the_packet_loop() -> None:
    """The child adds CHILD_NICE to the parent's niceness: on busy cores the scheduler runs the
    packet loop first."""
    scorer = ChildScorer(BUNDLED, peek_card(BUNDLED))
    try:
        scorer.ready()
        assert os.getpriority(os.PRIO_PROCESS, scorer.pid) == min(
            19, os.getpriority(os.PRIO_PROCESS, 0) + CHILD_NICE)
    finally:
        scorer.close()


def test_a_flood_of_new_hosts_waits_for_the_model_within_the_host_cap() -> None:
    """More hosts change within one score interval than [bounds] max_hosts (spoofed sources):
    the model takes them in early batches, so that the hosts waiting for a score, kept alive
    even once the host table has evicted them, stay within the cap; every one is scored."""
    found = tables.read(BUNDLED, peek_card(BUNDLED))
    assert found is not None
    det = Detector(detfactory.config("[bounds]\nmax_hosts = 100\n"), lambda a: None,
                   LocalScorer(found), "model")
    stage = det.stage
    assert stage is not None
    peak = 0
    for i in range(1000):
        det.on_conn(detfactory.conn(f"198.51.{i // 250}.{i % 250 + 1}", "10.20.0.10",
                                    1000.0 + i / 1000))
        peak = max(peak, stage.waiting)
    stats = det.finish()
    assert peak <= 100
    assert stats.evicted == 900
    assert stats.model_early_batches >= 9
    assert stats.model_scored >= 1000


def _run_copying(step: int, pending_rows: int | None = None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, object]], int, int, int]:
    """`_run` with the child scorer and batches copied out of the host table `step` hosts at a
    time; also the hosts copied ahead of their turn, the batches, and the waits for answers
    (`pending_rows`: [model] max_pending_rows)."""
    alerts: list[dict[str, Any]] = []
    cfg = load_config(CONFIG)
    if pending_rows is not None:
        cfg = replace(cfg, model=replace(cfg.model, max_pending_rows=pending_rows))
    det = Detector(cfg, lambda a: alerts.append(alert_to_dict(a)),
                   ChildScorer(BUNDLED, peek_card(BUNDLED)), "model")  # fmt: skip
    assert det.stage is not None
    det.stage.explain_all = True
    det.stage.copy_step = step
    pipe = Pipeline(on_conn=det.on_conn, on_session=det.on_session)
    pipe.run(open_files([DEMO], "tcp", pipe.capture_stats, lambda path, why: None))
    pipe.finish()
    stage = det.stage
    stats = det.finish()
    return alerts, det.host_scores(), stage.settled, stage.batches, stats.model_waits


def test_batches_copied_over_the_next_records_score_as_taken() -> None:
    """A batch copied out of the host table a few hosts at a time (or only when a record is
    about to change a host, or when the next batch is taken) gives the rows of one copied whole
    the moment it was taken: the same alerts and host scores."""
    whole = _run_copying(-1)
    assert whole[2] == 0 and whole[3] > 3
    for step in (0, 1, 16):
        got = _run_copying(step)
        assert got[:2] == whole[:2], step
        assert got[3] == whole[3]
        if step == 0:  # hosts changed again before their batch was copied were copied first
            assert got[2] > 0
    assert whole[4] == 0  # the default max_pending_rows is far above the demo's batches


def test_a_model_process_behind_makes_the_packet_loop_wait_with_the_same_output() -> None:
    """Past [model] max_pending_rows unanswered rows the stage waits for the oldest answers
    (counted): the rule alerts behind the batches and the batches' memory stay bounded, and the
    alerts and host scores are those of a run that never waited."""
    free = _run_copying(16)
    bounded = _run_copying(16, pending_rows=1)
    assert bounded[:2] == free[:2]
    assert bounded[3] == free[3]
    assert free[4] == 0 and bounded[4] > 0
