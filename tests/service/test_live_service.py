"""`sensor live` as a service on a veth pair: privileges, SIGTERM, SIGHUP, sd_notify, errors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_helpers import (
    STEP_TIMEOUT_S,
    STOP_TIMEOUT_S,
    analyze,
    flows,
    host_kinds,
    proc_status,
    replay,
    rows,
    simulate,
    start_sensor,
)
from netns_util import SRV_IF, VethNet
from netns_util import veth_namespaces as _veth_namespaces

NOBODY = "65534"
NOBODY_ID = 65534
CAP_NET_RAW = 13


@pytest.fixture
def veth() -> Iterator[VethNet]:
    """Fresh namespaces and veth pair per test, deleted afterwards whatever happened."""
    with _veth_namespaces() as net:
        yield net


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A log directory owned by nobody, as a service's is by its user (pytest's own temporary
    directories are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="p25-logs-", dir="/tmp"))
    os.chown(path, NOBODY_ID, NOBODY_ID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small simulated captures: an AUTH brute force and a dictionary harvest."""
    d = tmp_path_factory.mktemp("captures")
    return {name: simulate(name, d / f"{name}.pcap") for name in ("bruteforce", "harvest")}


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[str, str, float]:
    """Send `sig`; (stdout, stderr, seconds until the process was gone)."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S + STEP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out, err, time.monotonic() - started


def test_privileges_are_dropped_and_the_capture_goes_on(
    veth: VethNet, captures: dict[str, Path], tmp_path: Path
) -> None:
    sensor = start_sensor(veth, ["--quiet", "--sessions", str(tmp_path / "sessions.jsonl")])
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S  # the drop follows the capture's opening
        while (status := proc_status(sensor.pid))["Uid"].split()[0] == "0":
            assert time.monotonic() < deadline, "privileges never dropped"
            time.sleep(0.02)
        replay(veth, captures["bruteforce"])  # parsed after the drop
    finally:
        _, err, _ = _stop(sensor)
    assert sensor.returncode == 0, err
    assert status["Uid"].split() == [NOBODY] * 4 and status["Gid"].split() == [NOBODY] * 4
    assert status["Groups"].split() == [NOBODY]
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, (key, status[key])
    assert status["NoNewPrivs"] == "1"
    offline = analyze([captures["bruteforce"]], tmp_path / "offline")
    assert flows(rows(tmp_path / "sessions.jsonl")) == flows(offline["sessions"])


def test_cap_net_raw_alone_is_enough_to_capture(
    veth: VethNet, captures: dict[str, Path], tmp_path: Path
) -> None:
    """The systemd unit grants CAP_NET_RAW and nothing else (promiscuous mode included): started
    with that capability alone, the sensor captures, then holds none (the bounding set keeps
    CAP_NET_RAW, as the unit's CapabilityBoundingSet does: emptying it needs CAP_SETPCAP)."""
    only_raw = ["setpriv", "--bounding-set=-all,+net_raw", "--inh-caps=-all",
                "--ambient-caps=-all"]  # fmt: skip
    sensor = start_sensor(veth, ["--quiet", "--user", "root", "--sessions",
                                 str(tmp_path / "sessions.jsonl")], prefix=only_raw)
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while int((status := proc_status(sensor.pid))["CapEff"], 16):
            assert time.monotonic() < deadline, "capabilities never dropped"
            time.sleep(0.02)
        replay(veth, captures["bruteforce"])
    finally:
        _, err, _ = _stop(sensor)
    assert sensor.returncode == 0, err
    assert int(status["CapBnd"], 16) == 1 << CAP_NET_RAW
    assert int(status["CapPrm"], 16) == int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"
    offline = analyze([captures["bruteforce"]], tmp_path / "offline")
    assert flows(rows(tmp_path / "sessions.jsonl")) == flows(offline["sessions"])


def test_sigterm_flushes_every_record_and_alert_and_exits_0(
    veth: VethNet, captures: dict[str, Path], tmp_path: Path
) -> None:
    """The open connections and lingering sessions, the alerts the detector holds back for the
    model, the summary and the stats: all written, exit 0, within a service stop's time."""
    outs = {name: tmp_path / f"{name}.jsonl" for name in ("sessions", "conns", "alerts")}
    sensor = start_sensor(veth, [*(a for n, p in outs.items() for a in (f"--{n}", str(p))),
                                 "--stats", str(tmp_path / "stats.json")])  # fmt: skip
    try:
        replay(veth, captures["bruteforce"])
    finally:
        out, err, took = _stop(sensor)
    assert sensor.returncode == 0, err
    assert took < STOP_TIMEOUT_S, f"stop took {took:.1f} s"
    assert "sensor: SIGTERM: stopped reading;" in err
    assert "port25-sensor run" in out  # the closing summary
    offline = analyze([captures["bruteforce"]], tmp_path / "offline")
    live = {name: rows(path) for name, path in outs.items()}
    assert flows(live["sessions"]) == flows(offline["sessions"])
    assert flows(live["conns"]) == flows(offline["conns"])
    # the rules' alerts; the model's anomalous_host depends on packet timing, which a replay
    # compresses from ten minutes to one second
    assert _rule_alerts(live["alerts"]) == _rule_alerts(offline["alerts"])
    assert ("198.19.132.24", "auth_bruteforce") in host_kinds(live["alerts"])
    [stats] = rows(tmp_path / "stats.json")
    assert stats["stopped_by"]["signal"] == "SIGTERM"
    assert stats["stopped_by"]["flushed"] > 0  # some connections were still open


def _rule_alerts(alerts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {hk for hk in host_kinds(alerts) if hk[1] != "anomalous_host"}


def test_sighup_after_a_rename_reopens_the_files_without_losing_a_record(
    veth: VethNet, captures: dict[str, Path], tmp_path: Path, nobody_dir: Path
) -> None:
    logs = nobody_dir
    sess, conns = logs / "sessions.jsonl", logs / "conns.jsonl"
    cfg = logs / "sensor.toml"  # readable by nobody; closed connections written soon after FIN
    cfg.write_text(f'[live]\ninterfaces = ["{SRV_IF}"]\nsessions = "{sess}"\nconns = "{conns}"\n'
                   "[reassembly]\nclosed_linger_s = 0.1\nexpire_interval_s = 0.05\n")
    sensor = start_sensor(veth, ["--quiet", "--config", str(cfg)])  # as a service runs it
    try:
        replay(veth, captures["bruteforce"])
        for path in (sess, conns):  # logrotate: rename, then the postrotate HUP
            path.rename(path.with_suffix(".jsonl.1"))
        sensor.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not (sess.exists() and conns.exists()):
            assert sensor.poll() is None and time.monotonic() < deadline, "no reopen"
            time.sleep(0.05)
        replay(veth, captures["harvest"])
    finally:
        _, err, _ = _stop(sensor)
    assert sensor.returncode == 0, err
    assert "warning" not in err, err
    offline = analyze([captures["bruteforce"], captures["harvest"]], tmp_path / "offline")
    for path, name in ((sess, "sessions"), (conns, "conns")):
        before, after = rows(path.with_suffix(".jsonl.1")), rows(path)
        assert before and after
        assert flows(before + after) == flows(offline[name]), name  # none lost, none twice
        assert {r["uid"] for r in before}.isdisjoint({r["uid"] for r in after})


def test_sd_notify_ready_watchdog_and_stopping(veth: VethNet, tmp_path: Path) -> None:
    """A datagram socket standing in for systemd: READY=1 once capturing, WATCHDOG=1 pings from
    the idle packet loop, STOPPING=1 on SIGTERM."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(STEP_TIMEOUT_S)
        env = {**_env(), "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
        sensor = start_sensor(veth, ["--quiet"], env)
        try:
            messages: list[str] = []
            deadline = time.monotonic() + STEP_TIMEOUT_S
            while sum(m == "WATCHDOG=1" for m in messages) < 3 and time.monotonic() < deadline:
                messages.extend(sock.recv(4096).decode().split("\n"))
        finally:
            _, err, _ = _stop(sensor)
        assert sensor.returncode == 0, err
        sock.settimeout(0.2)
        tail: list[str] = []
        try:
            while True:
                tail.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            pass
    assert messages[:2] == ["READY=1", f"STATUS=capturing on {SRV_IF}"]
    assert f"STATUS=capturing on {SRV_IF}: 0 packets, 0 connections, 0 sessions" in messages
    assert messages.count("WATCHDOG=1") >= 3  # from the packet loop, with no traffic at all
    assert "STOPPING=1" in tail


def _env() -> dict[str, str]:
    return dict(os.environ)


def test_missing_interface_is_one_line_and_exit_2(veth: VethNet) -> None:
    argv = [sys.executable, "-m", "sensor", "live", "-i", "p25nosuch0", "--quiet"]
    done = subprocess.run(veth.in_ns(veth.srv_ns, argv), capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "sensor: error: cannot capture on interface 'p25nosuch0': no such device"]


def test_missing_permission_is_one_line_and_exit_2(veth: VethNet) -> None:
    """Started without CAP_NET_RAW (uid 0 with every capability set emptied by setpriv: the
    kernel checks the capability, not the uid; an unprivileged uid could not even read the
    test machine's Python under /root)."""
    argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all",
            sys.executable, "-m", "sensor", "live", "-i", SRV_IF, "--quiet"]  # fmt: skip
    done = subprocess.run(veth.in_ns(veth.srv_ns, argv), capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"sensor: error: cannot capture on interface '{SRV_IF}': permission denied (needs "
        "root or CAP_NET_RAW)"]


def test_check_interface_names_the_offloads_of_a_veth_then_passes(veth: VethNet) -> None:
    check = [sys.executable, "-m", "sensor", "live", "--check-interface", SRV_IF]
    first = subprocess.run(veth.in_ns(veth.srv_ns, check), capture_output=True, text=True,
                           timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert f"{SRV_IF}: tcp-segmentation-offload: on" in lines
    assert f"{SRV_IF}: generic-segmentation-offload: on" in lines
    assert f"  ethtool -K {SRV_IF} tso off gso off" in lines
    assert f"{SRV_IF}: no device interrupts (a virtual interface: its receive path runs on " \
        "the sender's core)" in lines
    assert lines[-1] == f"{SRV_IF}: not ready for capture (exit 1)"
    fix = ["ethtool", "-K", SRV_IF, "gro", "off", "tso", "off", "gso", "off"]
    done = subprocess.run(veth.in_ns(veth.srv_ns, fix), capture_output=True, text=True,
                          timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = subprocess.run(veth.in_ns(veth.srv_ns, check), capture_output=True, text=True,
                           timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
    assert again.returncode == 0, again.stdout
    assert again.stdout.splitlines()[-1] == f"{SRV_IF}: ready for capture"
    missing = subprocess.run(veth.in_ns(veth.srv_ns, [*check[:-1], "p25nosuch0"]),
                             capture_output=True, text=True, timeout=STEP_TIMEOUT_S,
                             check=False)  # fmt: skip
    assert missing.returncode == 2
    assert missing.stdout.strip() == "p25nosuch0: no such interface: nothing to capture on " \
        "(see `ip link`)"
