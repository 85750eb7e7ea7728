"""The dialogue parser's hostile cases as real captures, through the pipeline and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import SmtpSession

from .capture_dialogue import write_dialogue
from .dialogues import BASIC, C, S
from .test_midstream import BODY_TAIL
from .test_postscreen import ENFORCED

MIDSTREAM: list[tuple[bool, bytes]] = [
    (C, BODY_TAIL + b".\r\n"),
    (S, b"250 2.0.0 Ok: queued as 4Xk9Q2\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]
BANNER = b"220 mx.example.net ESMTP\r\n"
EHLO_REPLY = b"250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
INJECTION: list[tuple[bool, bytes]] = [
    (S, BANNER), (C, b"EHLO probe.example\r\n"), (S, EHLO_REPLY),
    (C, b"STARTTLS\r\nRSET\r\n"), (S, b"220 2.0.0 Ready to start TLS\r\n"),
    (C, b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03" + bytes(44)),
]  # fmt: skip
RCPTS: list[tuple[bool, bytes]] = [
    (S, BANNER), (C, b"EHLO c.example\r\n"), (S, EHLO_REPLY),
    (C, b"MAIL FROM:<a@c.example>\r\n"), (S, b"250 ok\r\n"),
    *[x for i in range(5) for x in ((C, b"RCPT TO:<r%d@s.example>\r\n" % i), (S, b"250 ok\r\n"))],
    (C, b"QUIT\r\n"), (S, b"221 bye\r\n"),
]  # fmt: skip


def sessions_of(path: Path) -> list[SmtpSession]:
    """The sessions the library pipeline makes of a capture."""
    out: list[SmtpSession] = []
    pipe = Pipeline(on_session=out.append)
    pipe.run(open_files([str(path)], build_filter([25]), pipe.capture_stats, print))
    pipe.finish()
    return out


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def analyze(pcap: Path, tmp: Path, *extra: str) -> tuple[list[dict], list[dict]]:  # type: ignore[type-arg]
    """Sessions and alerts of `sensor analyze --alerts` on one capture."""
    sess, alerts = tmp / "s.jsonl", tmp / "a.jsonl"
    r = sensor("analyze", "--quiet", "--sessions", str(sess), "--alerts", str(alerts),
               str(pcap), *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    read = lambda p: [json.loads(line) for line in p.read_text().splitlines()]  # noqa: E731
    return read(sess), read(alerts)


def test_the_pipeline_tells_the_parser_when_the_handshake_was_missed(tmp_path: Path) -> None:
    write_dialogue(tmp_path / "mid.pcap", MIDSTREAM, handshake=False)
    write_dialogue(tmp_path / "whole.pcap", BASIC)
    [mid] = sessions_of(tmp_path / "mid.pcap")
    [whole] = sessions_of(tmp_path / "whole.pcap")
    assert mid.midstream and mid.anomalies == {} and mid.commands == ("QUIT",)
    assert not whole.midstream and whole.anomalies == {}


def test_midstream_capture_raises_no_protocol_abuse(tmp_path: Path) -> None:
    """Issue 13: a capture starting inside a DATA body gave violations and a false alert."""
    pcap = tmp_path / "mid.pcap"
    write_dialogue(pcap, MIDSTREAM, handshake=False)
    [s], alerts = analyze(pcap, tmp_path)
    assert [a["kind"] for a in alerts] == []
    assert s["midstream"] is True and s["anomalies"] == {}
    assert s["reply_codes"] == {"250": 1, "221": 1} and s["commands"] == ["QUIT"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_starttls_injection_raises_protocol_abuse(tmp_path: Path, workers: str) -> None:
    pcap = tmp_path / "inject.pcap"
    write_dialogue(pcap, INJECTION)
    [s], alerts = analyze(pcap, tmp_path, "--workers", workers)
    assert s["anomalies"] == {"starttls_injection": 1}
    assert [(a["kind"], a["host"], a["rule"], a["source"]) for a in alerts] == [
        ("protocol_abuse", "10.1.2.3", "non_smtp", "rule"),  # the rule, at once
        ("protocol_abuse", "10.1.2.3", "model_confirms", "both")]  # the bundled model agrees


def test_postscreen_pregreet_capture(tmp_path: Path) -> None:
    pcap = tmp_path / "postscreen.pcap"
    write_dialogue(pcap, ENFORCED)
    [s], _ = analyze(pcap, tmp_path)
    assert s["banner"] == "mx.example.org ESMTP" and s["banner_code"] == 220
    assert s["reply_codes"]["220"] == 1 and s["anomalies"] == {"pregreet": 1}
    assert "MX.EXAMPLE.ORG" not in s["extensions"] and "PIPELINING" in s["extensions"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_smtp_limits_come_from_the_config(tmp_path: Path, workers: str) -> None:
    pcap, cfg = tmp_path / "rcpts.pcap", tmp_path / "site.toml"
    write_dialogue(pcap, RCPTS)
    cfg.write_text("[smtp]\nmax_rcpts_per_txn = 2\n")
    [s], _ = analyze(pcap, tmp_path, "--config", str(cfg), "--workers", workers)
    [t] = s["transactions"]
    assert len(t["rcpt_to"]) == 2 and t["rcpts_dropped"] == 3
    assert s["anomalies"] == {"too_many_rcpts": 3}


def test_bad_smtp_limit_is_one_line_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text("[smtp]\nmax_line = 100\n")
    write_dialogue(tmp_path / "x.pcap", BASIC)
    r = sensor("analyze", "--quiet", "--config", str(cfg), "--alerts", str(tmp_path / "a"),
               str(tmp_path / "x.pcap"))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "smtp.max_line: expected an integer >= 512, got 100" in r.stderr
