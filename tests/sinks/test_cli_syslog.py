"""`sensor analyze --syslog` end to end, into real collectors (rsyslog on every transport,
syslog-ng's stricter parser): every alert exactly once, fields as the collector parsed them,
hostile session strings intact, losses over a collector restart counted (none over RELP),
an unreachable collector only warns, and [[sinks.syslog]] / [syslog] from the config."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from smtp.capture_dialogue import write_dialogue

from .collectors import Rsyslog, SyslogNg, TlsFiles, free_port
from .test_formats import body_of, parse_3164, parse_5424, parse_cef, parse_leef

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "pcaps" / "demo.pcap")
CONFIG = str(ROOT / "pcaps" / "demo.toml")
SD_ID = "port25@32473"
Start = Callable[..., Rsyslog]


def sensor(*args: str, stdin: bytes | None = None,
           timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=timeout,
                          input=None if stdin is None else stdin.decode("latin-1"))


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def raw(rec: dict[str, Any]) -> bytes:
    return str(rec["raw"]).encode("utf-8")


@pytest.fixture(scope="module")
def demo_alerts(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("demo") / "alerts.jsonl"
    proc = sensor("analyze", DEMO, "--config", CONFIG, "-q", "--alerts", str(out))
    assert proc.returncode == 0, proc.stderr
    alerts = jsonl(out)
    assert len(alerts) > 20
    return alerts


def _key(a: dict[str, Any]) -> tuple[str, str, int, str]:
    return (str(a["host"]), str(a["kind"]), int(a["sid"]), str(a["rule"]))


def test_every_alert_arrives_once_on_every_transport_and_format(
        rsyslog: Start, tls_files: TlsFiles, tmp_path: Path,
        demo_alerts: list[dict[str, Any]]) -> None:
    daemon = rsyslog(("udp", "tcp", "tls", "relp", "unix"))
    sinks = {
        "udp": daemon.url("udp", query="format=leef"),
        "tcp": daemon.url("tcp", query="format=cef"),
        "tls": daemon.url("tls", "localhost", f"ca={tls_files.ca}"),  # --format json
        "relp": daemon.url("relp", query="format=rfc5424"),
        "unix": daemon.url("unix", query="format=ecs"),
    }
    stats = tmp_path / "stats.json"
    args = ["analyze", DEMO, "--config", CONFIG, "--alerts", str(tmp_path / "a.jsonl"),
            "--format", "json", "--stats", str(stats)]
    for url in sinks.values():
        args += ["--syslog", url]
    proc = sensor(*args)
    assert proc.returncode == 0, proc.stderr
    assert jsonl(tmp_path / "a.jsonl") == demo_alerts  # syslog changes nothing else
    want = Counter(_key(a) for a in demo_alerts)
    n = len(demo_alerts)
    got: dict[str, list[dict[str, Any]]] = {k: daemon.wait_records(k, n) for k in sinks}
    for kind, recs in got.items():
        assert len(recs) == n, (kind, len(recs), daemon.diagnostics())
        assert len({raw(r) for r in recs}) == n, kind  # none twice
    # RFC 5424 as rsyslog parsed it: header fields, and our structured data
    keys: Counter[tuple[str, str, int, str]] = Counter()
    for rec, a in zip(got["relp"], demo_alerts, strict=True):
        assert rec["app_name"] == "port25-sensor" and rec["msgid"] == a["kind"]
        assert rec["facility"] == "16" and rec["version"] == "1", rec
        assert int(rec["severity"]) in range(1, 7)
        assert str(rec["structured_data"]).startswith(f"[{SD_ID} ")
        p = parse_5424(raw(rec))
        sd = p["sd"][SD_ID]
        keys[(sd["host"], sd["kind"], int(sd["sid"]), sd["rule"])] += 1
        assert p["msg"].decode() == a["summary"]
    assert keys == want
    # JSON body (over TLS): the whole alert, as written to the JSON log
    assert [json.loads(body_of(raw(r)).lstrip("\ufeff")) for r in got["tls"]] == demo_alerts
    # CEF (tcp), LEEF (udp), ECS (unix): the alert's fields read back
    cef: Counter[tuple[str, str, int]] = Counter()
    for rec in got["tcp"]:
        head, ext = parse_cef(body_of(raw(rec)))  # vendor|product|version|sid|name|severity
        cef[(ext["src"], head[4], int(head[3]))] += 1
    assert cef == Counter(k[:3] for k in want.elements())
    leef: Counter[tuple[str, str, int]] = Counter()
    for rec in got["udp"]:
        head, attrs = parse_leef(body_of(raw(rec)))
        leef[(attrs["src"], attrs["cat"], int(head[3]))] += 1
    assert leef == Counter(k[:3] for k in want.elements())
    ecs: Counter[tuple[str, str, int]] = Counter()
    for rec in got["unix"]:
        doc = json.loads(body_of(raw(rec)))
        assert doc["event"]["kind"] == "alert" and doc["observer"]["name"] == "demo-tap"
        ecs[(doc["source"]["ip"], doc["rule"]["name"], int(doc["rule"]["id"]))] += 1
    assert ecs == Counter((h, r, s) for h, _, s, r in want.elements())
    # counters: everything sent, nothing lost, in --stats and in the summary
    counters = json.loads(stats.read_text())["sinks"]
    assert len(counters) == 5
    for name, c in counters.items():
        assert (c["sent"], c["dropped_queue_full"], c["dropped_undeliverable"]) == (n, 0, 0), name
    assert "syslog relp://127.0.0.1:" in proc.stdout and "sent" in proc.stdout


HOSTILE_HELO = 'evil"] \\x [inj=1] héllo-\u4f8b'
HOSTILE_SUBJECT = "=?utf-8?q?caf=C3=A9=0D=0A=3C14=3E1_forged=5D=22_line?="


def _hostile_capture(path: Path) -> None:
    """One session with a HELO name and a subject made to break frames: quotes, brackets,
    backslashes, non-ASCII, and a subject that decodes to CR LF and a fake syslog header."""
    write_dialogue(path, [
        (False, b"220 mx.example.org ESMTP\r\n"),
        (True, b"EHLO " + HOSTILE_HELO.encode() + b"\r\n"),
        (False, b"250 mx.example.org\r\n"),
        (True, b"MAIL FROM:<a@example.net>\r\n"), (False, b"250 ok\r\n"),
        (True, b"RCPT TO:<b@example.org>\r\n"), (False, b"250 ok\r\n"),
        (True, b"DATA\r\n"), (False, b"354 go\r\n"),
        (True, b"Subject: " + HOSTILE_SUBJECT.encode() + b"\r\n\r\nhi\r\n.\r\n"),
        (False, b"250 queued\r\n"), (True, b"QUIT\r\n"), (False, b"221 bye\r\n"),
    ])


@pytest.mark.parametrize("fmt", ["rfc5424", "rfc3164", "json", "cef", "leef", "ecs"])
def test_hostile_session_strings_round_trip(rsyslog: Start, tmp_path: Path, fmt: str) -> None:
    capture = tmp_path / "hostile.pcap"
    _hostile_capture(capture)
    sessions = tmp_path / "s.jsonl"
    daemon = rsyslog(("tcp",))
    proc = sensor("analyze", str(capture), "-q", "--no-model", "--sessions", str(sessions),
                  "--syslog", daemon.url("tcp"), "--format", fmt, "--syslog-sessions")
    assert proc.returncode == 0, proc.stderr
    (s,) = jsonl(sessions)
    subject = s["transactions"][0]["headers"]["subject"]
    assert s["helo"] == HOSTILE_HELO and subject == 'café\r\n<14>1 forged]" line'
    (rec,) = daemon.wait_records("tcp", 1)
    frame = raw(rec)
    assert b"\n" not in frame and b"\r" not in frame
    text = frame.decode("utf-8")
    if fmt == "rfc3164":  # a one-line summary of the session, no attacker text
        assert parse_3164(frame)["msg"].startswith(f"SMTP session {s['uid']} ")
        return
    if fmt in ("json", "ecs"):
        doc = json.loads(body_of(frame).lstrip("\ufeff"))
        flat = json.dumps(doc, ensure_ascii=False)
        assert json.dumps(HOSTILE_HELO, ensure_ascii=False)[1:-1] in flat
        return
    if fmt == "rfc5424":
        sd = parse_5424(frame)["sd"][SD_ID]
        assert sd["helo"] == HOSTILE_HELO
        assert sd["subject"] == subject
    elif fmt == "cef":
        _, ext = parse_cef(body_of(frame))
        assert HOSTILE_HELO in ext.values()
    else:
        _, attrs = parse_leef(body_of(frame))
        assert HOSTILE_HELO in attrs.values()
    assert "héllo-\u4f8b" in text


@pytest.fixture(scope="module")
def long_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 500-host site for 10 minutes: thousands of sessions, a stream long enough
    to restart a collector in the middle of."""
    path = tmp_path_factory.mktemp("site") / "site.pcap"
    proc = sensor("simulate", "site-500", "--duration", "10m", "--seed", "4", "-o", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def _records_cut(pcap: bytes, fraction: float) -> int:
    """Byte offset of the first record boundary past `fraction` of a little-endian pcap."""
    pos, goal = 24, int(len(pcap) * fraction)
    while pos < goal:
        pos += 16 + int.from_bytes(pcap[pos + 8:pos + 12], "little")
    return pos


def test_collector_restart_mid_run_relp_loses_nothing_tcp_counts_its_losses(
        rsyslog: Start, tmp_path: Path, long_capture: Path) -> None:
    daemon = rsyslog(("relp", "tcp"))
    stats, sessions, alerts = tmp_path / "st.json", tmp_path / "s.jsonl", tmp_path / "a.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", "analyze", "-", "--config", CONFIG, "--no-model",
         "--sessions", str(sessions), "--alerts", str(alerts), "--stats", str(stats),
         "--syslog", daemon.url("relp", query="queue=200000&flush_timeout=30"),
         "--syslog", daemon.url("tcp", query="queue=200000&flush_timeout=30"),
         "--syslog-sessions"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = long_capture.read_bytes()
    cut = _records_cut(data, 0.5)
    assert proc.stdin is not None
    proc.stdin.write(data[:cut])
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while len(daemon.records("relp")) < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(daemon.records("relp")) >= 500, daemon.diagnostics()
    daemon.restart()  # in the middle of the stream: the sensor goes on reading meanwhile
    out, err = proc.communicate(data[cut:], timeout=300)
    assert proc.returncode == 0, err
    total = len(sessions.read_text().splitlines()) + len(alerts.read_text().splitlines())
    assert total > 2000
    counters = json.loads(stats.read_text())["sinks"]
    (relp,) = [c for name, c in counters.items() if name.startswith("relp://")]
    (tcp,) = [c for name, c in counters.items() if name.startswith("tcp://")]
    got = Counter(raw(r) for r in daemon.wait_records("relp", total, timeout=60))
    assert len(got) == total and max(got.values()) == 1, (len(got), total, relp)
    assert (relp["sent"], relp["dropped_undeliverable"], relp["dropped_queue_full"]) == \
        (total, 0, 0)
    received = Counter(raw(r) for r in daemon.wait_records("tcp", total, timeout=30))
    missing = total - len(received)
    assert max(received.values()) == 1
    assert tcp["sent"] + tcp["dropped_undeliverable"] + tcp["dropped_queue_full"] == total
    assert missing <= tcp["dropped_undeliverable"], (missing, tcp)
    if tcp["dropped_undeliverable"]:  # a loss is reported where the SOC reads the run
        assert "lost or possibly lost" in out.decode()
    assert "connection lost" in err.decode()


def test_unreachable_collector_warns_and_analysis_goes_on(tmp_path: Path,
                                                         demo_alerts: list[dict[str, Any]]
                                                         ) -> None:
    port = free_port()
    alerts, stats = tmp_path / "a.jsonl", tmp_path / "st.json"
    t0 = time.monotonic()
    proc = sensor("analyze", DEMO, "--config", CONFIG, "-q", "--alerts", str(alerts),
                  "--stats", str(stats),
                  "--syslog", f"tcp://127.0.0.1:{port}?flush_timeout=1")
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert jsonl(alerts) == demo_alerts
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("sensor: warning")]
    assert warnings and f"127.0.0.1:{port}" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr
    (c,) = json.loads(stats.read_text())["sinks"].values()
    assert c["sent"] == 0 and c["dropped_undeliverable"] == len(demo_alerts)
    assert took < 60


def test_syslog_ng_parses_our_structured_data(syslog_ng: SyslogNg, tmp_path: Path,
                                              demo_alerts: list[dict[str, Any]]) -> None:
    proc = sensor("analyze", DEMO, "--config", CONFIG, "-q", "--syslog", syslog_ng.url())
    assert proc.returncode == 0, proc.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = syslog_ng.out.read_text().splitlines() if syslog_ng.out.exists() else []
        if len(lines) >= len(demo_alerts):
            break
        time.sleep(0.1)
    recs = [json.loads(line) for line in lines]
    assert len(recs) == len(demo_alerts)
    for rec, a in zip(recs, demo_alerts, strict=True):
        assert rec["PROGRAM"] == "port25-sensor" and rec["MSGID"] == a["kind"]
        sd = rec["_SDATA"][SD_ID]  # format-json writes .SDATA.* keys under "_SDATA"
        assert (sd["host"], sd["kind"], int(sd["sid"])) == (a["host"], a["kind"], a["sid"])
        assert rec["MESSAGE"] == a["summary"]


def test_config_tables_and_syslog_section(rsyslog: Start, tmp_path: Path,
                                          demo_alerts: list[dict[str, Any]]) -> None:
    daemon = rsyslog(("tcp", "udp"))
    config = tmp_path / "site.toml"
    config.write_text(Path(CONFIG).read_text() + f"""
[syslog]
facility = "authpriv"
app_name = "tap-7"
sd_id = "p25@64512"
hostname = "sensor-east"
format = "rfc3164"

[[sinks.syslog]]
url = "{daemon.url('tcp')}"
format = "rfc5424"

[[sinks.syslog]]
url = "{daemon.url('udp')}"
""")
    proc = sensor("analyze", DEMO, "--config", str(config), "-q")
    assert proc.returncode == 0, proc.stderr
    n = len(demo_alerts)
    tcp, udp = daemon.wait_records("tcp", n), daemon.wait_records("udp", n)
    assert len(tcp) == len(udp) == n
    assert {(r["facility"], r["app_name"], r["hostname"]) for r in tcp} == \
        {("10", "tap-7", "sensor-east")}
    assert all(str(r["structured_data"]).startswith("[p25@64512 ") for r in tcp)
    assert all(str(r["raw"]).startswith("<8") and " sensor-east tap-7[" in str(r["raw"])
               for r in udp)  # 3164: authpriv is facility 10, PRI 80-87


@pytest.mark.parametrize(("args", "words"), [
    (("--syslog", "smtp://x:25"), "--syslog: 'smtp://x:25': unknown scheme"),
    (("--syslog", "tcp://x:514?bogus=1"), "unknown option 'bogus'"),
    (("--syslog-sessions",), "--syslog-sessions needs a --syslog URL"),
])
def test_bad_destinations_are_one_line_errors(args: tuple[str, ...], words: str) -> None:
    proc = sensor("analyze", DEMO, "-q", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert words in proc.stderr, proc.stderr


def test_the_command_line_knows_every_format() -> None:
    from sensor import cli
    from sensor.sinks.formats import FORMATS

    assert cli.FORMATS == FORMATS


def test_bad_syslog_config_is_one_line_error(tmp_path: Path) -> None:
    for text, words in (('[syslog]\nfacility = "local9"\n', "syslog.facility"),
                        ('[syslog]\nsd_id = "no-number"\n', "syslog.sd_id"),
                        ('[[sinks.syslog]]\nurl = "udp://x"\nframing = "lf"\n',
                         "sinks.syslog[0].framing"),
                        ('[[sinks.syslog]]\nformat = "cef"\n', "sinks.syslog[0].url")):
        config = tmp_path / "bad.toml"
        config.write_text(text)
        proc = sensor("config", "--check", str(config))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and str(config) in lines[0], proc.stderr


def test_privacy_applies_to_syslog_bodies(rsyslog: Start, tmp_path: Path) -> None:
    """With every field pseudonymised, no address, IP, HELO or subject of the capture reaches
    the collector, in alerts or sessions; the JSON logs and syslog carry the same pseudonyms."""
    sessions = tmp_path / "raw.jsonl"
    proc = sensor("analyze", DEMO, "--config", CONFIG, "-q", "--no-model", "--sessions",
                  str(sessions))
    assert proc.returncode == 0, proc.stderr
    originals: set[str] = set()
    for s in jsonl(sessions):
        originals |= {s["client_ip"], s["server_ip"]}
        if s.get("helo"):
            originals.add(s["helo"])
        for tx in s["transactions"]:
            originals |= {tx["mail_from"] or "", *(r["addr"] for r in tx["rcpt_to"])}
            if tx["headers"]["subject"]:
                originals.add(tx["headers"]["subject"])
    originals = {v for v in originals if len(v) >= 6}
    assert len(originals) > 100
    (tmp_path / "key").write_bytes(b"k" * 32)
    config = tmp_path / "private.toml"
    config.write_text(Path(CONFIG).read_text() + '\n[privacy]\npseudonymise = ["all"]\n'
                      'key_file = "key"\n')
    daemon = rsyslog(("relp",))
    alerts = tmp_path / "a.jsonl"
    proc = sensor("analyze", DEMO, "--config", str(config), "-q", "--alerts", str(alerts),
                  "--syslog", daemon.url("relp"), "--format", "json", "--syslog-sessions")
    assert proc.returncode == 0, proc.stderr
    expected = len(jsonl(sessions)) + len(jsonl(alerts))
    got = daemon.wait_records("relp", expected)
    assert len(got) == expected
    text = "\n".join(str(r["raw"]) for r in got)
    assert [v for v in originals if v in text] == []
    bodies = [json.loads(body_of(raw(r)).lstrip("\ufeff")) for r in got]
    hosts = {b["host"] for b in bodies if "kind" in b}
    assert hosts and all(h.startswith("h:") for h in hosts)
    assert hosts == {a["host"] for a in jsonl(alerts)}
