"""`--cluster local:N`: worker processes, the dashboard link, a killed worker, bad values."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from cluster_helpers import analyze, read_records, sensor, simulate, write_parts

from sensor.capture.bpf import build_filter
from sensor.cluster.run import ClusterInput, run_cluster
from sensor.parallel import Outputs


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three hours of simulated mail (20k frames), whole and rotated into 8 files."""
    tmp = tmp_path_factory.mktemp("rot")
    whole = simulate(tmp / "whole.pcap", "benign", "spambot-burst", seed=5, duration="3h")
    head, recs = read_records(whole)
    step = len(recs) // 8 + 1
    return whole, write_parts(head, recs, list(range(step, len(recs), step)), tmp / "parts")


def test_local_processes_give_the_single_process_records(
    rotated: tuple[Path, list[str]], tmp_path: Path
) -> None:
    whole, parts = rotated
    want, _ = analyze(tmp_path / "one", str(whole))
    got, err = analyze(tmp_path / "two", "--cluster", "local:2", *parts)
    assert "sensor: cluster local:2: 2 workers; dashboard http://" in err
    for name in want:
        assert want[name], name
        assert got[name].splitlines() == want[name].splitlines(), name


def test_a_killed_worker_is_retried_without_loss_or_duplicates(
    rotated: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """SIGKILL a worker process that holds a task: Dask runs the task elsewhere, the run ends
    with every record once."""
    from distributed import Client, LocalCluster

    whole, parts = rotated
    want, _ = analyze(tmp_path / "one", str(whole))
    conns: list[bytes] = []
    sessions: list[bytes] = []
    outs = Outputs(conn_line=conns.append, session_line=sessions.append)
    killed: list[int] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:  # fmt: skip
        pids: dict[str, int] = client.run(os.getpid)
        stop = threading.Event()

        def kill_one_busy_worker() -> None:
            while not stop.is_set() and not killed:
                for addr, keys in client.processing().items():
                    if any(str(k).startswith("sensor-file-") for k in keys) and addr in pids:
                        os.kill(pids[addr], signal.SIGKILL)
                        killed.append(pids[addr])
                        break
                time.sleep(0.001)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        try:
            src = ClusterInput(cluster.scheduler_address, tuple(parts), _no_error, lambda _: None)
            run_cluster(src, build_filter((25, 587), 2), (25, 587), outs)
        finally:
            stop.set()
            killer.join()
    assert killed, "no worker was busy with a file to kill"
    assert b"".join(conns).splitlines() == want["conns"].splitlines()
    assert b"".join(sessions).splitlines() == want["sessions"].splitlines()


def _no_error(path: str, reason: str) -> None:
    raise AssertionError(f"{path}: {reason}")


@pytest.mark.parametrize(
    ("value", "message"),
    [("local:0", "expected local:N"), ("127.0.0.1:8786", "expected tcp://HOST:PORT"),
     ("tcp://", "expected tcp://HOST:PORT")],
)  # fmt: skip
def test_bad_cluster_values_are_usage_errors(value: str, message: str, tmp_path: Path) -> None:
    done = sensor("analyze", "--cluster", value, str(tmp_path / "x.pcap"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_scheduler_is_one_line(rotated: tuple[Path, list[str]]) -> None:
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "-q", "--cluster", "tcp://127.0.0.1:9",
         rotated[1][0]], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--cluster tcp://127.0.0.1:9: cannot connect" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_and_cluster_do_not_go_together(rotated: tuple[Path, list[str]]) -> None:
    done = sensor("analyze", "--workers", "2", "--cluster", "local:2", rotated[1][0])
    assert done.returncode == 2
    assert "--cluster and --workers cannot go together" in done.stderr
