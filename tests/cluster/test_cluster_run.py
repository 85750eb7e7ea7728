"""`--cluster local:N`: worker processes, the dashboard link, a killed worker, bad values."""

from __future__ import annotations

import os
import re
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
    assert re.search(rf"sensor: cluster: {len(parts)} files in [0-9.]+ s; CPU seconds: workers "
                     r"[0-9.]+, this process \(client, scheduler, nannies\) [0-9.]+\n", err), err
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


def test_a_bad_file_is_reported_once_and_the_others_analysed(
    sim_capture: Path, scheduler: str, tmp_path: Path
) -> None:
    head, recs = read_records(sim_capture)
    parts = write_parts(head, recs, list(range(300, len(recs), 300)), tmp_path / "parts")
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture\n")
    want, _ = analyze(tmp_path / "one", str(sim_capture))
    out = tmp_path / "two"
    out.mkdir()
    done = sensor("analyze", "-q", "--cluster", scheduler, f"--conns={out / 'conns'}",
                  *parts[:2], str(bad), *parts[2:])  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count(str(bad)) == 1 and "Traceback" not in done.stderr
    assert (out / "conns").read_bytes() == want["conns"]


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_stop_signal_delivers_the_settled_files(
    signum: int, group: bool, rotated: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """Stop a run on one worker once a file is done (SIGTERM to the sensor, or a terminal's
    Ctrl-C to its whole process group, workers included): what was merged is written once, in
    the single run's order, no worker prints a traceback, and the exit code says the input was
    cut short."""
    import subprocess
    import sys

    whole, _parts = rotated
    head, recs = read_records(whole)
    parts = write_parts(head, recs, list(range(100, len(recs), 100)), tmp_path / "parts")
    want, _ = analyze(tmp_path / "one", str(whole))
    conns = tmp_path / "conns"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", "analyze", "-q", "--cluster", "local:1",
         f"--conns={conns}", *parts], stderr=subprocess.PIPE, text=True,
        start_new_session=group)  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "sensor: cluster: [1/" in line:
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 128 + signum, rest
    assert "Traceback" not in rest, rest
    got = conns.read_bytes().splitlines()
    assert got, "at least the first file's connections are written"
    assert len(got) < len(want["conns"].splitlines())
    assert got == want["conns"].splitlines()[: len(got)]


def _worker_filters() -> list[str]:
    import logging

    return [type(f).__name__ for f in logging.getLogger("distributed.worker").filters]


def test_a_heartbeat_at_close_is_no_traceback() -> None:
    """A local worker whose heartbeat fires while the run closes its scheduler logged the
    failure with a traceback (a stop signal's run printed it, at random): the workers drop that
    one message, and only that one."""
    import logging

    from sensor.cluster.run import _HEARTBEAT_AT_CLOSE, _client

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, None,
                                 None)  # fmt: skip

    assert not _HEARTBEAT_AT_CLOSE.filter(
        record("Failed to communicate with scheduler during heartbeat."))
    assert _HEARTBEAT_AT_CLOSE.filter(record("Unexpected exception during heartbeat. Closing"))
    with _client("local:1", lambda line: None) as (client, _dashboard):
        got = client.run(_worker_filters)
    assert got and all("_HeartbeatAtClose" in names for names in got.values())


def test_the_dashboard_pages_come_once_the_tasks_are_submitted() -> None:
    """The LocalCluster's scheduler answers at the printed link from the start (its HTTP routes)
    and serves the dashboard's pages once `_run` completes it, after the workers started."""
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from sensor.cluster.run import _client

    notes: list[str] = []
    with _client("local:1", notes.append) as (client, dashboard):
        link = client.dashboard_link
        assert notes == [f"sensor: cluster local:1: 1 workers; dashboard {link}"]
        base = link.rsplit("/", 1)[0]
        with urlopen(base + "/health", timeout=10) as resp:
            assert resp.read() == b"ok"
        with pytest.raises(HTTPError) as missing:
            urlopen(link, timeout=10)
        assert missing.value.code == 404
        dashboard()
        with urlopen(link, timeout=30) as resp:
            assert resp.status == 200
            assert b"bokeh" in resp.read().lower()
