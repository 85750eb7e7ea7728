"""`sensor live --workers N` on a veth end while tcpreplay sends a simulated capture into the other:
the same sessions and alerts as offline, and a worker killed mid-replay restarted with its loss
counted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from findings import assert_same_findings
from netns_util import (
    REPLAY_MTU,
    SRV_IF,
    LineReader,
    VethNet,
    replay,
    start_tcpdump,
    wait_capturing,
)
from netns_util import veth_namespaces as _veth_namespaces

from sensor.detect.scoring import MODEL_PROCESS_NAME
from sensor.parallel import Outputs
from sensor.records import SmtpSession
from sensor.service.livefanout import LiveInput, run_live_fanout
from sensor.service.signals import Shutdown
from sensor.tcp.reassembler import TcpLimits

STEP_TIMEOUT_S = 15.0
"""Longest one step (start-up, a replay, the flush after SIGTERM) may take."""
SETTLE_S = 1.5
"""Wait after the replay before stopping: the kernel hands a ring block over within its retire
timeout, and the workers' progress reaches the parent within a tick."""
REPLAY_PPS = 2000
"""Replay rate: a few seconds for the demo capture, far below any drop."""
SLOW_PPS = 1200
"""Replay rate of the kill test: the worker is killed while traffic flows."""
KILL_AFTER_S = 1.5
"""When the kill test kills a worker, counted from the replay's start."""
TIME_FIELDS = frozenset({"uid", "ts", "duration_s"})
"""Session fields that hold arrival times (live: when replayed; offline: the capture's), or are
derived from them; compared everything else is."""


@pytest.fixture(scope="module")
def demo_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sensor simulate demo`: benign traffic and one of each attack (5,868 frames)."""
    out = tmp_path_factory.mktemp("sim") / "demo.pcap"
    done = subprocess.run([sys.executable, "-m", "sensor", "simulate", "demo", "-o", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def veth() -> Iterator[VethNet]:
    """Fresh namespaces and a veth pair with room for the simulator's largest frames."""
    with _veth_namespaces(REPLAY_MTU) as net:
        yield net


def _untimed(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _untimed(v) for k, v in x.items()
                if k not in TIME_FIELDS and not k.endswith("_ts")}  # fmt: skip
    if isinstance(x, list):
        return [_untimed(v) for v in x]
    return x


def _sessions(path: Path) -> list[str]:
    """The sessions as sorted canonical JSON, arrival times left out."""
    return sorted(json.dumps(_untimed(json.loads(line)), sort_keys=True)
                  for line in path.read_text().splitlines())  # fmt: skip


def _alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _analyze(pcap: Path, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    sess, alerts = out.with_suffix(".sessions"), out.with_suffix(".alerts")
    done = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", str(pcap), "-q",
         "--sessions", str(sess), "--alerts", str(alerts)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return _sessions(sess), _alerts(alerts)


def _children(pid: int) -> list[int]:
    """The capture workers among `pid`'s children (the model's process is named apart)."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        kids = [int(x) for x in f.read().split()]
    return [k for k in kids if Path(f"/proc/{k}/comm").read_text().strip() != MODEL_PROCESS_NAME]


def _live(
    net: VethNet,
    pcap: Path,
    out: Path,
    workers: int,
    pps: int = REPLAY_PPS,
    kill_after: float | None = None,
    extra_ifaces: tuple[str, ...] = (),
) -> tuple[str, dict[str, Any], int | None]:
    """Run `sensor live` on the server-side end while `pcap` is replayed into the client side;
    returns its stderr, its --stats and the pid of the worker killed (kill_after, if any)."""
    more = [arg for iface in extra_ifaces for arg in ("-i", iface)]
    argv = [sys.executable, "-m", "sensor", "live", "-i", SRV_IF, *more, "--workers", str(workers),
            "-q", "--sessions", str(out / "live.sessions"), "--alerts", str(out / "live.alerts"),
            "--stats", str(out / "live.stats")]  # fmt: skip
    sensor = subprocess.Popen(net.in_ns(net.srv_ns, argv), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert sensor.stderr is not None
    lines = LineReader(sensor.stderr)
    tcpdump = start_tcpdump(net, out / "reference.pcap", STEP_TIMEOUT_S)
    killed: list[int] = []
    try:
        wait_capturing(net, sensor, lines, workers * (1 + len(extra_ifaces)), STEP_TIMEOUT_S)
        if kill_after is not None:

            def kill_one() -> None:
                time.sleep(kill_after)
                killed.append(_children(sensor.pid)[0])
                os.kill(killed[0], signal.SIGKILL)

            killer = threading.Thread(target=kill_one)
            killer.start()
        replay(net, str(pcap), pps=pps)
        if kill_after is not None:
            killer.join()
        time.sleep(SETTLE_S)
        sensor.send_signal(signal.SIGTERM)
        tcpdump.send_signal(signal.SIGTERM)
        sensor.wait(timeout=STEP_TIMEOUT_S)
        err = lines.text()
        tcpdump.communicate(timeout=STEP_TIMEOUT_S)
    finally:
        for proc in (sensor, tcpdump):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STEP_TIMEOUT_S)
    assert sensor.returncode == 0, err
    [stats] = [json.loads(line) for line in (out / "live.stats").read_text().splitlines()]
    return err, stats, killed[0] if killed else None


@pytest.mark.parametrize(
    ("workers", "extra_ifaces"), [(1, ()), (2, ()), (1, ("lo",))], ids=["1", "2", "1+lo"]
)
def test_live_replay_equals_offline(
    veth: VethNet, demo_pcap: Path, tmp_path: Path, workers: int, extra_ifaces: tuple[str, ...]
) -> None:
    """Sessions as offline on the simulated capture; (host, kind) alerts as offline on what the
    interface received (tcpdump beside the sensor: replayed faster than simulated, the traffic's
    rates differ from the original capture's, and the model sees them; tests/findings.py).
    With a second -i (the namespace's idle loopback), one worker per interface."""
    err, stats, _ = _live(veth, demo_pcap, tmp_path, workers, extra_ifaces=extra_ifaces)
    assert set(stats["interfaces"]) == {SRV_IF, *extra_ifaces}
    for key in ("received", "dropped", "if_dropped"):
        assert stats["interfaces_total"][key] == sum(r[key] for r in stats["interfaces"].values())
    frames = int(subprocess.run(["capinfos", "-c", "-M", str(demo_pcap)], capture_output=True,
                                text=True, check=True).stdout.split()[-1])  # fmt: skip
    row = stats["interfaces"][SRV_IF]
    assert row["dropped"] == 0 and row["if_dropped"] == 0, stats
    assert row["received"] >= frames
    assert stats["capture"]["packets"] == frames, stats["capture"]
    if workers > 1 or extra_ifaces:
        assert stats["workers"] == {"running": 0, "restarts": 0, "lost_packets": 0,
                                    "lost_connections": 0}  # fmt: skip
    assert f"sensor: {SRV_IF}: {row['received']} packets received by the filter, 0 dropped" in err

    offline_sessions, _ = _analyze(demo_pcap, tmp_path / "offline")
    _, reference_alerts = _analyze(tmp_path / "reference.pcap", tmp_path / "reference")
    live_sessions = _sessions(tmp_path / "live.sessions")
    assert len(live_sessions) == len(offline_sessions)
    assert live_sessions == offline_sessions
    live_alerts = _alerts(tmp_path / "live.alerts")
    assert_same_findings(live_alerts, reference_alerts)
    assert {a["kind"] for a in live_alerts} >= {"spambot", "auth_bruteforce", "spam_source"}


def test_killed_worker_is_restarted_and_its_loss_counted(
    veth: VethNet, demo_pcap: Path, tmp_path: Path
) -> None:
    """kill -9 of a worker mid-replay: the parent logs it, restarts it on the same handle (whose
    reader is moved to the ring's unread blocks: else it would wait on a block the kernel has
    left behind and read nothing more), and counts the connections it held; every packet the
    kernel took is read by a worker or counted lost, give or take the dead worker's last
    quarter-second of uncounted reads."""
    err, stats, pid = _live(veth, demo_pcap, tmp_path, 2, pps=SLOW_PPS, kill_after=KILL_AFTER_S)
    assert pid is not None
    assert "died (killed by SIGKILL)" in err, err
    assert "restarted on the same capture handle (restart 1)" in err, err
    workers = stats["workers"]
    assert workers["restarts"] == 1 and workers["running"] == 0, workers
    received = stats["interfaces"][SRV_IF]["received"]
    read = stats["capture"]["packets"] + workers["lost_packets"]
    assert read >= received * 0.95, (read, received, workers)
    offline_sessions, _ = _analyze(demo_pcap, tmp_path / "offline")
    live_sessions = set(_sessions(tmp_path / "live.sessions"))
    kept = sum(1 for s in offline_sessions if s in live_sessions)
    lost = workers["lost_connections"]
    assert kept >= len(offline_sessions) - lost - len(offline_sessions) // 10, (kept, lost)


DIALOGUE = ((None, b"220 mx.test ESMTP\r\n"), (b"EHLO c.test\r\n", b"250 ok\r\n"),
            (b"QUIT\r\n", b"221 bye\r\n"))  # fmt: skip
"""(client line, server reply) of the loopback dialogues."""


def _smtp_dialogues(port: int, n: int) -> None:
    """`n` short SMTP dialogues with a scripted server on 127.0.0.1:port."""
    server = socket.socket()
    server.bind(("127.0.0.1", port))
    server.listen(n)
    try:
        for _ in range(n):
            client = socket.create_connection(("127.0.0.1", port))
            conn, _ = server.accept()
            for line, reply in DIALOGUE:
                if line is not None:
                    client.sendall(line)
                    assert conn.recv(100) == line
                conn.sendall(reply)
                assert client.recv(100) == reply
            client.close()
            conn.close()
    finally:
        server.close()


def test_snapshot_while_running_on_loopback() -> None:
    """The aggregator's snapshot(), read from another thread during a two-worker run, has the
    --stats shape plus interfaces, workers and process, and its counters grow with the traffic;
    the run delivers one session per dialogue."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sessions: list[SmtpSession] = []
    snapshots: list[Callable[[], dict[str, Any]]] = []
    src = LiveInput(("lo",), 2, Shutdown(), buffer_bytes=4 << 20, duration=4.0,
                    on_snapshot=snapshots.append)  # fmt: skip
    seen: list[dict[str, Any]] = []

    def traffic() -> None:
        deadline = time.monotonic() + 5
        while not snapshots and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        _smtp_dialogues(port, 12)
        time.sleep(1.0)  # the workers' counters come every quarter second
        seen.append(snapshots[0]())

    client = threading.Thread(target=traffic)
    client.start()
    result = run_live_fanout(src, f"tcp port {port}", (port,), Outputs(session=sessions.append))
    client.join()
    assert len(sessions) == 12
    assert {s.helo for s in sessions} == {"c.test"}
    [snap] = seen
    assert set(snap) >= {"capture", "tcp", "totals", "interfaces", "workers", "process"}
    assert snap["capture"]["packets"] >= 12 * 8
    assert snap["tcp"]["connections"] == 12  # sessions end after the close linger
    assert snap["interfaces"]["lo"]["received"] >= snap["capture"]["packets"]
    assert snap["workers"]["running"] == 2 and snap["workers"]["restarts"] == 0
    assert snap["process"]["rss_bytes"] > 10 << 20
    assert result.totals.sessions == 12 and result.workers["running"] == 0


def test_quiet_share_emits_finished_sessions_without_more_packets() -> None:
    """A worker whose share of the traffic falls quiet still emits a finished session once its
    close linger has passed in time (its clock follows the wall clock while its ring is empty),
    not only when its next packet comes or the run stops."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    arrived: list[float] = []
    finished: list[float] = []
    linger = TcpLimits().closed_linger_s
    duration = linger + 6.0
    src = LiveInput(("lo",), 2, Shutdown(), buffer_bytes=4 << 20, duration=duration,
                    on_snapshot=lambda _snapshot: None)  # fmt: skip

    def traffic() -> None:
        time.sleep(0.5)
        _smtp_dialogues(port, 1)
        finished.append(time.monotonic())

    client = threading.Thread(target=traffic)
    client.start()
    run_live_fanout(src, f"tcp port {port}", (port,),
                    Outputs(session=lambda s: arrived.append(time.monotonic())))  # fmt: skip
    client.join()
    [at] = arrived
    assert at - finished[0] < linger + 3.0, (at - finished[0], duration)
