"""`sensor analyze` on captures of the messages that ended whole runs (issue 13): every one is
analysed, its session logged, and the run exits 0, with one process and with workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from smtp.hostile_mail import CRASHERS, SLOW, benign, smtp_pcap


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("hostile")
    cases = {**CRASHERS, **SLOW, "benign": benign(200_000)}
    return [
        smtp_pcap(folder / f"{name}.pcap", data, 1_700_000_000.0 + 60 * i, 40000 + i)
        for i, (name, data) in enumerate(sorted(cases.items()))
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_hostile_message_is_analysed_and_the_run_goes_on(
    captures: list[Path], tmp_path: Path, workers: str
) -> None:
    out = tmp_path / "sessions.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "--workers", workers, "--sessions", str(out),
         *map(str, captures)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    sessions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(sessions) == len(captures)
    for s in sessions:
        [txn] = s["transactions"]
        assert txn["accepted"] and txn["headers"]["from"] == "a@example.org"
        assert "analyzer_error" not in s["anomalies"]
    limited = [s for s in sessions if "mime_limit" in s["anomalies"]]
    assert len(limited) >= 4  # the two deep nestings, the 160k words, the 200 levels
    names = {a["filename"] for s in sessions for t in s["transactions"] for a in t["attachments"]}
    assert "r.pdf" in names


def test_smtputf8_headers_read_as_sent(tmp_path: Path) -> None:
    """Postfix with real clients: SMTPUTF8 mail carries raw UTF-8 header values (RFC 6532),
    which came out as one U+FFFD per byte."""
    msg = ("From: Renée Müller <renée@example.org>\r\nTo: b@example.net\r\n"
           "Subject: Grüße aus Köln ✓\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           "Hallo\r\n").encode()  # fmt: skip
    pcap = smtp_pcap(tmp_path / "utf8.pcap", msg)
    out = tmp_path / "s.jsonl"
    r = subprocess.run([sys.executable, "-m", "sensor", "analyze", "--sessions", str(out),
                        str(pcap)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    [session] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    headers = session["transactions"][0]["headers"]
    assert headers["subject"] == "Grüße aus Köln ✓"
    assert headers["from"] == "Renée Müller <renée@example.org>"
