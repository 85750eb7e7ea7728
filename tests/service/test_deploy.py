"""deploy/: the systemd unit (systemd-analyze verify), the default sensor.toml, the logrotate
snippet (logrotate --debug), checked with the real tools and the real config loader."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.config import load_config
from sensor.service.runtime import live_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "port25-sensor.service"
TOOL_TIMEOUT_S = 60.0
ETC_CONFIG = "/etc/port25-sensor/sensor.toml"
LOG_DIR = "/var/log/port25-sensor"


def _tool(name: str) -> str:
    """Path of a tool the deploy tests need (ensure_system.sh test installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: run scripts/ensure_system.sh test")
    return path


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys: case
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    """No unknown key, no bad value: systemd-analyze prints nothing (it only warns on unknown
    keys). ExecStart points at this checkout's `sensor`, as the installed one would."""
    here = Path(sys.executable).with_name("sensor")
    assert here.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/port25-sensor/bin/sensor", str(here)))
    done = subprocess.run([_tool("systemd-analyze"), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                          check=False)  # fmt: skip
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_unit_runs_unprivileged_as_a_notify_service() -> None:
    svc = _unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["ExecStart"].endswith(f"sensor live --config {ETC_CONFIG}")
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["AmbientCapabilities"] == svc["CapabilityBoundingSet"] == "CAP_NET_RAW"
    assert svc["User"] and svc["User"] != "root"
    assert svc["NoNewPrivileges"] == svc["ProtectHome"] == svc["PrivateTmp"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["Restart"] == "on-failure"
    assert int(svc["WatchdogSec"]) > 0
    assert svc["ReadWritePaths"] == LOG_DIR


def test_the_default_config_validates_and_writes_where_the_unit_may(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = load_config(str(DEPLOY / "sensor.toml"))
    opts: dict[str, object] = {}
    ifaces, user = live_settings(cfg, (), None, opts)
    assert ifaces == ("eth1",) and user == ""  # the unit's User= runs it
    assert opts["sessions_path"] and opts["alerts_path"]
    writable = _unit()["Service"]["ReadWritePaths"]
    for path in opts.values():
        assert os.path.dirname(str(path)) == writable  # ProtectSystem=strict allows no other


def test_command_line_options_override_the_live_section() -> None:
    cfg = load_config(str(DEPLOY / "sensor.toml"))
    opts: dict[str, object] = {"sessions_path": "-", "alerts_path": None}
    ifaces, user = live_settings(cfg, ("eth7",), "sensor", opts)
    assert (ifaces, user) == (("eth7",), "sensor")
    assert opts["sessions_path"] == "-"
    assert opts["alerts_path"] == f"{LOG_DIR}/alerts.jsonl"


def test_logrotate_parses_the_snippet_and_hups_after_the_rename(tmp_path: Path) -> None:
    text = (DEPLOY / "logrotate.conf").read_text()
    assert f"{LOG_DIR}/*.jsonl" in text
    assert "systemctl reload port25-sensor.service" in text  # ExecReload: SIGHUP
    # the unit's user does not exist on the test machine: the same snippet for nobody
    conf = tmp_path / "port25-sensor"
    conf.write_text(text.replace("port25-sensor port25-sensor", "nobody nogroup"))
    done = subprocess.run([_tool("logrotate"), "--debug", "--state", str(tmp_path / "state"),
                           str(conf)], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
    assert "rotating pattern: /var/log/port25-sensor/*.jsonl" in done.stderr
