"""`sensor live --cpus` on a veth end: the capture processes run on the listed cores (every
thread), the model's process and the fanout parent on the others, and the capture goes on
pinned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_helpers import (
    STEP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    analyze,
    flows,
    proc_status,
    replay,
    rows,
    simulate,
    start_sensor,
)
from netns_util import VethNet
from netns_util import veth_namespaces as _veth_namespaces

from sensor.detect.scoring import MODEL_PROCESS_NAME
from sensor.service.affinity import format_cpus, worker_cpus

CORES = tuple(sorted(os.sched_getaffinity(0)))
REST = format_cpus(CORES[:-1]) or format_cpus(CORES)
"""Where the other processes run when the capture runs on the last core (anywhere, with one)."""


@pytest.fixture
def veth() -> Iterator[VethNet]:
    with _veth_namespaces() as net:
        yield net


def _mask(pid: int, tid: int | None = None) -> str:
    path = f"/proc/{pid}/task/{tid}/status" if tid is not None else f"/proc/{pid}/status"
    text = Path(path).read_text()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("Cpus_allowed_list"))  # fmt: skip


def _thread_masks(pid: int) -> dict[int, str]:
    out = {}
    for tid in map(int, os.listdir(f"/proc/{pid}/task")):
        try:
            out[tid] = _mask(pid, tid)
        except OSError:  # a thread that ended meanwhile
            continue
    return out


def _children(pid: int) -> dict[int, str]:
    """pid -> process name of `pid`'s children."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        kids = [int(x) for x in f.read().split()]
    return {k: Path(f"/proc/{k}/comm").read_text().strip() for k in kids}


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=STOP_TIMEOUT_S + STEP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return err


def test_one_process_runs_on_its_core_and_the_model_process_on_the_others(
    veth: VethNet, tmp_path: Path
) -> None:
    core = CORES[-1]
    pcap = simulate("bruteforce", tmp_path / "bruteforce.pcap")
    log = tmp_path / "stats.log"
    sensor = start_sensor(veth, ["--cpus", str(core), "-q",
                                 "--alerts", str(tmp_path / "alerts.jsonl"),  # the model runs
                                 "--sessions", str(tmp_path / "sessions.jsonl"),
                                 "--stats-interval", "1", "--stats-log", str(log)])  # fmt: skip
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S  # pinned once the model's process is forked
        while _mask(sensor.pid) != str(core):
            assert time.monotonic() < deadline, "never pinned"
            time.sleep(0.02)
        replay(veth, pcap)
        threads = _thread_masks(sensor.pid)
        model = [k for k, name in _children(sensor.pid).items() if name == MODEL_PROCESS_NAME]
        model_mask = _mask(model[0]) if model else None
        time.sleep(1.2)  # one more stats line
    finally:
        err = _stop(sensor)
    assert sensor.returncode == 0, err
    assert len(threads) > 1 and set(threads.values()) == {str(core)}, threads
    assert model_mask == REST
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["totals"]["process"]["cpus"] == str(core)
    offline = analyze([pcap], tmp_path / "offline")
    assert flows(rows(tmp_path / "sessions.jsonl")) == flows(offline["sessions"])


def test_each_worker_runs_on_its_listed_core_and_the_parent_on_the_others(
    veth: VethNet,
) -> None:
    listed = str(CORES[-1]) if len(CORES) < 3 else ",".join(map(str, CORES[1:]))
    listed_cores = tuple(int(c) for c in listed.split(","))
    expected = sorted(str(worker_cpus(listed_cores, i)[0]) for i in range(2))  # distinct on 3+
    rest = format_cpus(set(CORES) - set(listed_cores)) or format_cpus(CORES)
    sensor = start_sensor(veth, ["--workers", "2", "--cpus", listed, "-q", "--no-model"])
    try:
        # The workers start once the parent has dropped its privileges, on the parent's cores
        # (the others), then move to their own: wait for that move.
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            workers = {pid: _mask(pid) for pid in _children(sensor.pid)}
            if sorted(workers.values()) == expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        worker_threads = {pid: set(_thread_masks(pid).values()) for pid in workers}
        parent = _mask(sensor.pid)
        state = proc_status(sensor.pid)["State"]
    finally:
        err = _stop(sensor)
    assert sensor.returncode == 0, err
    assert sorted(workers.values()) == expected, f"workers never pinned: {workers}"
    assert all(worker_threads[pid] == {workers[pid]} for pid in workers), worker_threads
    assert parent == rest and not state.startswith("Z")


def test_a_core_the_process_may_not_use_is_one_line_and_exit_2() -> None:
    """Checked before any capture opens (nothing is sent: no namespace needed)."""
    done = subprocess.run(
        [sys.executable, "-m", "sensor", "live", "-i", "p25-none0", "--cpus", str(max(CORES) + 1)],
        capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"sensor: error: --cpus: core {max(CORES) + 1} is not one "
                                   f"this process may run on (allowed: {format_cpus(CORES)})")
