"""Helpers of the service tests on a veth pair: start `sensor live`, replay a capture into it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netns_util import CLI_IF, SRV_IF, VethNet, has_packet_filter

STEP_TIMEOUT_S = 20.0
"""Longest one step (start-up, a replay, a simulation) may take."""
STOP_TIMEOUT_S = 5.0
"""A service stop (SIGTERM) must be over within this, flush included."""
REPLAY_PPS = 2000
"""tcpreplay's rate: slow enough that a shared machine's sensor drops nothing."""
SETTLE_S = 0.5
"""Pause after a replay so that the sensor has read the last packets."""


def simulate(scenario: str, out: Path) -> Path:
    """`sensor simulate SCENARIO -o OUT` (a labelled synthetic capture)."""
    done = subprocess.run([sys.executable, "-m", "sensor", "simulate", scenario, "-o", str(out)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def start_sensor(net: VethNet, args: Sequence[str], env: Mapping[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> subprocess.Popen[str]:  # fmt: skip
    """`PREFIX sensor live -i SRV_IF ARGS` in the server namespace, returned once it captures
    (PREFIX: e.g. setpriv and its options)."""
    argv = [*prefix, sys.executable, "-m", "sensor", "live", *args]
    if "--config" not in args:  # else the config's [live] section names it
        argv[len(prefix) + 4 : len(prefix) + 4] = ["-i", SRV_IF]
    proc = subprocess.Popen(net.in_ns(net.srv_ns, argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not has_packet_filter(net.srv_ns, proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate(timeout=STEP_TIMEOUT_S)
            raise AssertionError(f"sensor never started capturing ({proc.returncode}): {err}")
        time.sleep(0.05)
    return proc


def replay(net: VethNet, pcap: Path, pps: int = REPLAY_PPS) -> None:
    """Send every frame of `pcap` from the client end of the veth (tcpreplay)."""
    done = subprocess.run(net.in_ns(net.cli_ns, ["tcpreplay", "-q", "-i", CLI_IF, "--pps",
                                                 str(pps), str(pcap)]),
                          capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    time.sleep(SETTLE_S)


def rows(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def analyze(pcaps: Sequence[Path], out: Path, *extra: str) -> dict[str, list[dict[str, Any]]]:
    """`sensor analyze` of the same captures: sessions, conns and alerts, for comparison."""
    out.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "sensor", "analyze", *map(str, pcaps), "--quiet",
            "--sessions", str(out / "sessions.jsonl"), "--conns", str(out / "conns.jsonl"),
            "--alerts", str(out / "alerts.jsonl"), *extra]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return {name: rows(out / f"{name}.jsonl") for name in ("sessions", "conns", "alerts")}


def flows(records: list[dict[str, Any]]) -> list[tuple[str, int, str, int]]:
    """Sorted (client, port, server, port) of session or connection records."""
    return sorted((r["client_ip"], r["client_port"], r["server_ip"], r["server_port"])
                  for r in records)  # fmt: skip


def host_kinds(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The (host, kind) pairs of alert records."""
    return {(a["host"], a["kind"]) for a in alerts}


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict of its fields."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
