"""`sensor train --cluster`: the model of a rotated archive is that of its stitched records."""

from __future__ import annotations

import json
from pathlib import Path

from cluster_helpers import read_records, sensor, write_parts


def card(model: Path) -> dict[str, object]:
    done = sensor("inspect", "--json", str(model))
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_train_on_a_cluster_equals_training_on_the_whole_captures_logs(
    sim_capture: Path, scheduler: str, tmp_path: Path
) -> None:
    head, recs = read_records(sim_capture)
    parts = write_parts(head, recs, list(range(90, len(recs), 90)), tmp_path / "parts")
    logs = [str(tmp_path / "sessions"), str(tmp_path / "conns")]
    done = sensor("analyze", "-q", f"--sessions={logs[0]}", f"--conns={logs[1]}", str(sim_capture))
    assert done.returncode == 0, done.stderr
    done = sensor("train", "-o", str(tmp_path / "logs.skops"),
                  *[f"--from-sessions={log}" for log in logs])  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = sensor("train", "--cluster", scheduler, "-o", str(tmp_path / "cluster.skops"), *parts)
    assert done.returncode == 0, done.stderr
    assert f"{len(recs):,} packets" in done.stdout
    want, got = card(tmp_path / "logs.skops"), card(tmp_path / "cluster.skops")
    assert got["threshold"] == want["threshold"]
    assert isinstance(got["training"], dict) and isinstance(want["training"], dict)
    for key in ("span", "host_windows", "hosts_per_role", "windows_per_role"):
        assert got["training"][key] == want["training"][key], key


def test_cluster_does_not_read_logs(tmp_path: Path) -> None:
    log = tmp_path / "s.jsonl"
    log.write_text("")
    done = sensor("train", "--cluster", "local:1", "-o", str(tmp_path / "m"),
                  f"--from-sessions={log}")  # fmt: skip
    assert done.returncode == 2
    assert "--cluster reads captures" in done.stderr
