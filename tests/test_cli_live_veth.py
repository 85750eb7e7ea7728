"""`sensor live` on a veth end between two network namespaces, IPv4 and IPv6, default ports."""

from __future__ import annotations

import base64
import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_util import CLI_V4, CLI_V6, SRV_IF, SRV_V4, SRV_V6, VethNet, has_packet_filter
from netns_util import veth_namespaces as _veth_namespaces

SENSOR_DURATION_S = 4.0
"""Capture length; the sensor's timer starts once its filter is attached, before any traffic."""
STEP_TIMEOUT_S = 10.0
"""Longest any one step (start-up, the client's dialogue, a process exit) may take."""
PREFILTER_SLACK = 5
"""Non-SMTP frames libpcap's counter may include from before its filter was attached."""
USER = "mallory"
PASSWORD = "Tr0ub4dor-and-3"
RCPTS = ["bob@mx.test", "carol@mx.test"]

CLIENT_SCRIPT = r'''
"""SMTP client: one mail to two recipients, then a failing AUTH PLAIN on a second connection."""
import smtplib
import sys

host, user, password = sys.argv[1:4]
rcpts = sys.argv[4:]
msg = (b"From: alice@client.test\r\nTo: " + ", ".join(rcpts).encode()
       + b"\r\nSubject: veth\r\n\r\nhello over a veth pair\r\n")
with smtplib.SMTP(host, 25, local_hostname="client.test", timeout=5) as c:
    refused = c.sendmail("alice@client.test", rcpts, msg)
    if refused:
        sys.exit(f"recipients refused: {refused}")
with smtplib.SMTP(host, 25, local_hostname="client.test", timeout=5) as c:
    c.ehlo()
    try:
        c.login(user, password)
    except smtplib.SMTPAuthenticationError as exc:
        if exc.smtp_code != 535:
            sys.exit(f"unexpected AUTH reply {exc.smtp_code}")
    else:
        sys.exit("AUTH unexpectedly succeeded")
print("client done", flush=True)
'''

_CAPTURE_LINE = re.compile(
    rf"sensor: {SRV_IF}: (\d+) packets received by the filter, "
    r"(\d+) dropped by the kernel, (\d+) by the interface"
)


@pytest.fixture
def veth() -> Iterator[VethNet]:
    """Fresh namespaces and veth pair per test, deleted afterwards whatever happened."""
    with _veth_namespaces() as net:
        yield net


def _wait_line(proc: subprocess.Popen[str], expected: str) -> None:
    """Wait (bounded) for `proc` to print `expected` as its first line."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], STEP_TIMEOUT_S)
    line = proc.stdout.readline().strip() if readable else ""
    if line != expected:
        proc.kill()
        _, err = proc.communicate(timeout=STEP_TIMEOUT_S)
        pytest.fail(f"expected {expected!r} from {proc.args!r}, got {line!r}; stderr: {err}")


def _wait_capturing(net: VethNet, sensor: subprocess.Popen[str]) -> None:
    """Poll until the sensor's packet socket carries its compiled BPF filter."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not has_packet_filter(net.srv_ns, sensor.pid):
        if sensor.poll() is not None or time.monotonic() > deadline:
            sensor.kill()
            _, err = sensor.communicate(timeout=STEP_TIMEOUT_S)
            pytest.fail(f"sensor never started capturing (exit {sensor.returncode}): {err}")
        time.sleep(0.05)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run_dialogue(net: VethNet, srv_ip: str, tmp_path: Path) -> str:
    """Capture the client's two connections with `sensor live`; returns the sensor's stderr."""
    server_py = Path(__file__).with_name("scripted_smtp.py")
    client_py = tmp_path / "smtp_client.py"
    client_py.write_text(CLIENT_SCRIPT)
    sensor_argv = [sys.executable, "-m", "sensor", "live", "-i", SRV_IF,
                   "--duration", str(SENSOR_DURATION_S), "--quiet",
                   "--sessions", str(tmp_path / "sessions.jsonl"),
                   "--conns", str(tmp_path / "conns.jsonl"),
                   "--stats", str(tmp_path / "stats.json")]  # fmt: skip
    server_argv = [sys.executable, str(server_py), srv_ip, "2"]
    client_argv = [sys.executable, str(client_py), srv_ip, USER, PASSWORD, *RCPTS]
    sensor = subprocess.Popen(net.in_ns(net.srv_ns, sensor_argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    server = subprocess.Popen(net.in_ns(net.srv_ns, server_argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_line(server, "ready")
        _wait_capturing(net, sensor)
        started = time.monotonic()
        client = subprocess.run(net.in_ns(net.cli_ns, client_argv), capture_output=True,
                                text=True, timeout=STEP_TIMEOUT_S, check=False)  # fmt: skip
        took = time.monotonic() - started
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "client done"
        assert took < SENSOR_DURATION_S - 1, f"client took {took:.1f} s: the capture may miss it"
        _, server_err = server.communicate(timeout=STEP_TIMEOUT_S)
        assert server.returncode == 0, server_err
        _, err = sensor.communicate(timeout=SENSOR_DURATION_S + STEP_TIMEOUT_S)
    finally:
        for proc in (sensor, server):
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=STEP_TIMEOUT_S)
    assert sensor.returncode == 0, err
    return err


def _check_sessions(sess: list[dict[str, Any]], srv_ip: str, cli_ip: str) -> None:
    """The mail to two recipients, then the refused AUTH PLAIN, both over the veth."""
    assert len(sess) == 2
    for s in sess:
        assert (s["client_ip"], s["server_ip"], s["server_port"]) == (cli_ip, srv_ip, 25)
        assert (s["banner"], s["helo"]) == ("mx.test ESMTP", "client.test")
        assert s["extensions"] == ["PIPELINING", "AUTH PLAIN", "8BITMIME"]
    mail, login = sess
    assert mail["commands"] == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert mail["auth"] == [] and mail["anomalies"] == {}
    [tx] = mail["transactions"]
    assert tx["mail_from"] == "alice@client.test"
    assert [(r["addr"], r["code"]) for r in tx["rcpt_to"]] == [(r, 250) for r in RCPTS]
    assert tx["headers"]["subject"] == "veth"
    assert tx["accepted"] and tx["complete"] and tx["last_code"] == 250

    assert login["commands"] == ["EHLO", "AUTH", "QUIT"]
    assert login["transactions"] == []
    [auth] = login["auth"]
    assert (auth["mechanism"], auth["outcome"], auth["code"], auth["user"]) == (
        "PLAIN", "failure", 535, USER)  # fmt: skip
    assert login["anomalies"] == {"auth_without_tls": 1}


def _check_conns(conns: list[dict[str, Any]], sess: list[dict[str, Any]]) -> int:
    """Each session's connection closed normally with data both ways; returns their packets."""
    assert len(conns) == 2
    by_uid = {c["uid"]: c for c in conns}
    assert set(by_uid) == {s["uid"] for s in sess}
    for s in sess:
        c = by_uid[s["uid"]]
        assert (c["state"], c["end_reason"]) == ("SF", "fin"), c
        assert (c["client_ip"], c["client_port"]) == (s["client_ip"], s["client_port"])
        assert (c["server_ip"], c["server_port"]) == (s["server_ip"], 25)
        assert c["bytes_to_server"] > 0 and c["bytes_to_client"] > 0
        assert c["bytes_to_server"] == s["bytes_from_client"]
        assert c["bytes_to_client"] == s["bytes_from_server"]
        assert c["gaps"] == c["retrans_segments"] == 0, c
    return sum(c["pkts_to_server"] + c["pkts_to_client"] for c in conns)


@pytest.mark.parametrize(
    ("srv_ip", "cli_ip"), [(SRV_V4, CLI_V4), (SRV_V6, CLI_V6)], ids=["ipv4", "ipv6"]
)
def test_live_capture_on_veth(veth: VethNet, srv_ip: str, cli_ip: str, tmp_path: Path) -> None:
    err = _run_dialogue(veth, srv_ip, tmp_path)
    m = _CAPTURE_LINE.search(err)
    assert m is not None, err
    received, dropped, if_dropped = (int(g) for g in m.groups())
    assert received > 0 and dropped == 0 and if_dropped == 0, err

    sess = sorted(_rows(tmp_path / "sessions.jsonl"), key=lambda r: r["ts"])
    _check_sessions(sess, srv_ip, cli_ip)
    pkts = _check_conns(_rows(tmp_path / "conns.jsonl"), sess)
    # Every frame handed to the pipeline is one of these connections' segments. libpcap's kernel
    # counter may exceed that: it also counts frames that arrived in the instant between binding
    # the socket and attaching the filter (IPv6 MLD/ND of the links coming up), which libpcap
    # then discards in userland.
    [run] = _rows(tmp_path / "stats.json")
    cap = run["capture"]
    assert cap["tcp_segments"] == cap["packets"] == pkts, cap
    assert cap["bytes"] > 0, cap
    assert cap["filtered_out"] == cap["non_ip"] == cap["non_tcp"] == cap["malformed"] == 0, cap
    assert pkts <= received <= pkts + PREFILTER_SLACK, (received, pkts)

    # The secret appears nowhere: neither in clear nor as the AUTH PLAIN initial response.
    initial = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    for out in ("sessions.jsonl", "conns.jsonl", "stats.json"):
        text = (tmp_path / out).read_text()
        assert PASSWORD not in text and initial not in text
    assert PASSWORD not in err and initial not in err
