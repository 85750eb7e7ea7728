"""`sensor live --metrics` and `--stats-log` on a veth end: scraped over HTTP while it runs."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_util import SRV_IF, SRV_V4, VethNet, has_packet_filter
from netns_util import veth_namespaces as _veth_namespaces
from prometheus_client.parser import text_string_to_metric_families

SENSOR_DURATION_S = 8.0
STEP_TIMEOUT_S = 10.0
LISTEN = "127.0.0.1:9425"  # loopback of the server's namespace: nothing leaves it

CLIENT_SCRIPT = r'''
import smtplib, sys
with smtplib.SMTP(sys.argv[1], 25, local_hostname="client.test", timeout=5) as c:
    c.sendmail("alice@client.test", ["bob@mx.test"], b"Subject: m\r\n\r\nhi\r\n")
print("client done", flush=True)
'''
SCRAPE_SCRIPT = r'''
import sys, urllib.request
print(urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=2).read().decode())
'''


@pytest.fixture
def veth() -> Iterator[VethNet]:
    with _veth_namespaces() as net:
        yield net


def scrape(net: VethNet, script: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The sensor's metrics, fetched over HTTP from inside its namespace (retried for a few
    seconds: the endpoint's thread starts once privileges are dropped, after the capture)."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        done = subprocess.run(net.in_ns(net.srv_ns, [sys.executable, str(script), LISTEN]),
                              capture_output=True, text=True, timeout=STEP_TIMEOUT_S)  # fmt: skip
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done.returncode == 0, done.stderr
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(done.stdout):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_endpoint_and_stats_log_on_veth(veth: VethNet, tmp_path: Path) -> None:
    client_py, scrape_py = tmp_path / "client.py", tmp_path / "scrape.py"
    client_py.write_text(CLIENT_SCRIPT)
    scrape_py.write_text(SCRAPE_SCRIPT)
    stats_log, final = tmp_path / "stats.log", tmp_path / "stats.json"
    server_py = Path(__file__).with_name("scripted_smtp.py")
    sensor = subprocess.Popen(veth.in_ns(veth.srv_ns, [
        sys.executable, "-m", "sensor", "live", "-i", SRV_IF, "--duration", str(SENSOR_DURATION_S),
        "--no-model", "--alerts", str(tmp_path / "alerts.jsonl"), "--stats", str(final),
        "--metrics", LISTEN, "--stats-interval", "1", "--stats-log", str(stats_log)]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    server_argv = [sys.executable, str(server_py), SRV_V4, "1"]
    server = subprocess.Popen(veth.in_ns(veth.srv_ns, server_argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], STEP_TIMEOUT_S)
        assert ready and server.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not has_packet_filter(veth.srv_ns, sensor.pid):
            assert sensor.poll() is None and time.monotonic() < deadline, "never captured"
            time.sleep(0.05)
        captured = time.monotonic()  # --duration runs from here
        client = subprocess.run(veth.in_ns(veth.cli_ns, [sys.executable, str(client_py), SRV_V4]),
                                capture_output=True, text=True, timeout=STEP_TIMEOUT_S)  # fmt: skip
        assert client.stdout.strip() == "client done", client.stderr
        until = captured + SENSOR_DURATION_S - 1.5  # scrapes while the endpoint is up
        m = scrape(veth, scrape_py)
        iface = (("interface", SRV_IF),)
        # the last packets may still be on their way through the ring (the client is done
        # before the sensor has read them all), and the kernel's counters are read by the
        # capture thread every STATS_REFRESH_S (0.5 s)
        while (m["port25_connections_open"][()] < 1
               or m["port25_packets_processed_total"][()] < 10
               or m["port25_packets_received_total"].get(iface, 0.0)
               < m["port25_packets_processed_total"][()]) and time.monotonic() < until:
            time.sleep(0.1)
            m = scrape(veth, scrape_py)
        out, err = sensor.communicate(timeout=SENSOR_DURATION_S + STEP_TIMEOUT_S)
    finally:
        for proc in (sensor, server):
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=STEP_TIMEOUT_S)
    assert sensor.returncode == 0, err
    processed = m["port25_packets_processed_total"][()]
    assert processed >= 10  # handshake, dialogue, close
    assert m["port25_packets_received_total"][iface] >= processed
    assert m["port25_kernel_drops_total"][iface] == m["port25_interface_drops_total"][iface] == 0
    assert m["port25_connections_open"][()] == 1  # closed, lingering for stragglers
    assert m["port25_tcp_acks_total"][()] > 0 and m["port25_tcp_acks_unseen_total"][()] == 0
    assert m["port25_capture_loss_ratio"][()] == 0.0
    # [live] reserve_mb's default (512 MiB) made resident before the first packet
    assert m["port25_resident_memory_bytes"][()] > 500 << 20
    assert "port25_alerts_total" not in m  # a family with no kind yet: no sample
    assert m["port25_workers_running"][()] == 1

    lines = [json.loads(x) for x in stats_log.read_text().splitlines()]
    assert len(lines) >= 3  # one a second, and a last one for the partial interval
    last = lines[-1]["totals"]
    assert last["totals"]["sessions"] == 1 and last["tcp"]["acks_unseen"] == 0
    assert sum(x["delta"].get("capture", {}).get("packets", 0) for x in lines) == \
        last["capture"]["packets"]
    assert all(x["capture_loss"]["percent"] == 0.0 for x in lines)
    proc = lines[-1]["totals"]["process"]
    assert proc["reserved_bytes"] > 500 << 20
    assert proc["reserve_arenas_beyond"] == 0 and proc["reserve_arenas_free"] > 0
    assert "capture loss estimate" not in err
    # the kernel's counters reach --stats and the summary, not only a stderr line
    counted = json.loads(final.read_text())["interfaces"][SRV_IF]
    assert counted["received"] >= processed and counted["dropped"] == 0
    assert f"{SRV_IF}: dropped by the kernel" in out


@pytest.mark.parametrize(("args", "expect"), [
    (["--stats-interval", "0", "--stats-log", "x.log"], "--stats-log needs a --stats-interval"),
    (["--metrics", "localhost:9425"], "--metrics: expected HOST:PORT with an IP address"),
])
def test_bad_report_options_are_one_line_and_exit_2(args: list[str], expect: str) -> None:
    r = subprocess.run([sys.executable, "-m", "sensor", "live", "-i", "p25-none0", *args],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and expect in r.stderr and "Traceback" not in r.stderr
