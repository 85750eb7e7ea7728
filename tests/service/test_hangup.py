"""SIGHUP: output files reopened after a rename, rules and suppression reloaded, state kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.detect.detector import Detector
from sensor.output.jsonl import JsonlSink
from sensor.pipeline import Pipeline
from sensor.records import Alert, SmtpSession
from sensor.service.hangup import Hangup

SIMULATE_TIMEOUT_S = 120.0
SITE = '[site]\nhome_net = ["10.0.0.0/8"]\nlocal_domains = ["campus.example"]\n'
OFF = 100000  # a threshold no run reaches


def _rules(failures: int, extra: str = "") -> str:
    return (SITE + extra + f"[rules.auth_bruteforce]\nfailures = {failures}\n"
            f"users_min_failures = {OFF}\n")  # fmt: skip


@pytest.fixture(scope="module")
def bruteforce_records(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Any]]:
    """The connection and session records of `sensor simulate bruteforce`, in output order."""
    out = tmp_path_factory.mktemp("hup") / "bf.pcap"
    done = subprocess.run([sys.executable, "-m", "sensor", "simulate", "bruteforce", "-o",
                           str(out)], capture_output=True, text=True,
                          timeout=SIMULATE_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    recs: list[tuple[str, Any]] = []
    pipe = Pipeline(ports=(25, 587), on_conn=lambda c: recs.append(("conn", c)),
                    on_session=lambda s: recs.append(("session", s)))  # fmt: skip
    errors: list[tuple[str, str]] = []
    pipe.run(open_files([str(out)], "", pipe.capture_stats,
                        lambda p, r: errors.append((p, r))))  # fmt: skip
    pipe.finish()
    assert not errors
    return recs


def _failures(recs: list[tuple[str, Any]]) -> int:
    return sum(1 for kind, s in recs if kind == "session" and isinstance(s, SmtpSession)
               for a in s.auth if a.outcome == "failure")  # fmt: skip


def _feed(det: Detector, recs: list[tuple[str, Any]]) -> None:
    for kind, rec in recs:
        if kind == "conn":
            det.on_conn(rec)
        else:
            det.on_session(rec)


def test_a_lowered_threshold_applies_to_later_records_with_the_hosts_state_kept(
    bruteforce_records: list[tuple[str, Any]], tmp_path: Path
) -> None:
    recs = bruteforce_records
    first, second = recs[: len(recs) // 2], recs[len(recs) // 2 :]
    f1, f2 = _failures(first), _failures(second)
    assert f1 > 0 and f2 > 0
    cfg_path = tmp_path / "sensor.toml"
    cfg_path.write_text(_rules(OFF))
    cfg = load_config(str(cfg_path))
    alerts: list[Alert] = []
    warnings: list[str] = []
    det = Detector(cfg, alerts.append)
    hup = Hangup(str(cfg_path), cfg, warnings.append)
    hup.add_detector(det)
    hup.install()
    try:
        _feed(det, first)
        assert not [a for a in alerts if a.kind == "auth_bruteforce"]
        # reachable only with the failures counted before the reload: the windows were kept
        cfg_path.write_text(_rules(f2 + 1))
        os.kill(os.getpid(), signal.SIGHUP)
        assert hup.pending
        assert hup.service()
    finally:
        hup.restore()
    assert (hup.reloads, hup.refused, warnings) == (1, 0, [])
    _feed(det, second)
    [alert] = [a for a in alerts if a.kind == "auth_bruteforce"]
    assert alert.rule == "auth_failures"
    assert f2 + 1 <= alert.evidence["features"]["auth_failures"] <= f1 + f2


def test_an_invalid_config_is_refused_and_the_running_one_stays(tmp_path: Path) -> None:
    cfg_path = tmp_path / "sensor.toml"
    cfg_path.write_text(_rules(7))
    cfg = load_config(str(cfg_path))
    warnings: list[str] = []
    det = Detector(cfg, lambda a: None)
    hup = Hangup(str(cfg_path), cfg, warnings.append)
    hup.add_detector(det)
    cfg_path.write_text(_rules(-1))
    hup.pending = True
    hup.service()
    assert hup.refused == 1 and hup.reloads == 0
    assert warnings == [f"SIGHUP: configuration refused, the running one stays: {cfg_path}: "
                        "rules.auth_bruteforce.failures: expected an integer > 0, got -1"]
    assert det.config.rules["auth_bruteforce"].num("failures") == 7
    assert hup.config is cfg


def test_sections_that_need_a_restart_are_named_and_kept(tmp_path: Path) -> None:
    cfg_path = tmp_path / "sensor.toml"
    cfg_path.write_text(_rules(7))
    cfg = load_config(str(cfg_path))
    warnings: list[str] = []
    det = Detector(cfg, lambda a: None)
    hup = Hangup(str(cfg_path), cfg, warnings.append)
    hup.add_detector(det)
    cfg_path.write_text(_rules(9, "[windows]\nshort_s = 30\n[suppression]\ninterval_s = 60\n"))
    hup.pending = True
    hup.service()
    assert warnings == ["SIGHUP: windows changed: applied at the next restart, only rules and "
                        "suppression are reloaded"]
    assert det.config.windows.short_s == 60  # kept: the hosts' windows are built on it
    assert det.config.rules["auth_bruteforce"].num("failures") == 9
    assert det.config.suppression.interval_s == 60


def test_reopen_after_rename_loses_no_record(tmp_path: Path) -> None:
    path = tmp_path / "sessions.jsonl"
    sink = JsonlSink(str(path))
    hup = Hangup(None, load_config(None), lambda text: None)
    hup.add_reopen(sink.reopen)
    sink.write({"n": 1})
    path.rename(tmp_path / "sessions.jsonl.1")  # logrotate's rename, then its postrotate HUP
    sink.write({"n": 2})  # still the old file until the signal is handled
    hup.pending = True
    hup.service()
    sink.write({"n": 3})
    sink.close()
    old = [json.loads(x)["n"] for x in (tmp_path / "sessions.jsonl.1").read_text().splitlines()]
    new = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    assert (old, new, hup.reopened) == ([1, 2], [3], 1)


def test_a_reopen_that_fails_keeps_the_old_file(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    logdir.mkdir()
    path = logdir / "alerts.jsonl"
    sink = JsonlSink(str(path))
    warnings: list[str] = []
    hup = Hangup(None, load_config(None), warnings.append)
    hup.add_reopen(sink.reopen)
    path.rename(tmp_path / "alerts.jsonl.1")
    logdir.rmdir()  # nowhere to make the new file
    hup.pending = True
    hup.service()
    sink.write({"n": 1})
    sink.close()
    assert warnings == [f"SIGHUP: {path}: cannot reopen: No such file or directory; still "
                        "writing to the old file"]
    assert (tmp_path / "alerts.jsonl.1").read_text() == '{"n":1}\n'
