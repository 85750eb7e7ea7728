"""The `sensor analyze` command line on good and bad inputs, run as a real subprocess."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "sensor", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_capture_summary_and_logs(tmp_path: Path) -> None:
    sess, conns = tmp_path / "s.jsonl", tmp_path / "c.jsonl"
    r = sensor("analyze", str(DEMO), "--sessions", str(sess), "--conns", str(conns))
    assert r.returncode == 0, r.stderr
    assert "smtp sessions" in r.stdout and "connections" in r.stdout
    assert "filtered out by libpcap" in r.stdout and "not counted" in r.stdout
    truth = json.loads((ROOT / "pcaps" / "demo.truth.json").read_text())
    sessions = [json.loads(line) for line in sess.read_text().splitlines()]
    records = [json.loads(line) for line in conns.read_text().splitlines()]
    assert records and all(c["uid"].startswith("C") for c in records)
    mails = sum(len(s["transactions"]) for s in sessions)
    want_mail = sum(k.get("mail", 0) for k in truth["counts"].values())
    assert mails >= want_mail > 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_connection_log_alone_is_the_same_without_the_smtp_stage(
    tmp_path: Path, workers: str
) -> None:
    """A quiet run asking only for --conns skips SMTP parsing; its records do not change."""
    alone, full, stats = tmp_path / "alone.jsonl", tmp_path / "full.jsonl", tmp_path / "st.json"
    r = sensor("analyze", "--quiet", "--workers", workers, "--conns", str(alone), str(DEMO))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    r = sensor("analyze", "--quiet", "--workers", workers, "--conns", str(full),
               "--stats", str(stats), str(DEMO))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert alone.read_bytes() == full.read_bytes() and alone.stat().st_size > 0
    assert json.loads(stats.read_text())["totals"]["sessions"] > 0  # --stats needs SMTP: parsed


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda d: d / "missing.pcap", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.pcap", b""), "empty"),
        (lambda d: _write(d / "page.pcap", b"<html><body>not a capture</body></html>"),
         "not a pcap or pcapng"),
        (lambda d: _write(d / "short.pcap", b"\xd4\xc3\xb2\xa1\x02\x00"), "header"),
    ],
)  # fmt: skip
def test_bad_input_one_line_exit_2(tmp_path: Path, make, expect: str) -> None:  # type: ignore[no-untyped-def]
    bad = make(tmp_path)
    r = sensor("analyze", "--quiet", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(bad) in lines[0] and expect in lines[0].lower(), lines[0]
    assert "Traceback" not in r.stderr


def test_good_files_still_analysed_beside_a_bad_one(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.pcap", b"garbage that is not a capture file")
    gz = tmp_path / "demo.pcap.gz"
    gz.write_bytes(gzip.compress(DEMO.read_bytes()))
    sess = tmp_path / "s.jsonl"
    r = sensor("analyze", "--quiet", str(bad), str(gz), "--sessions", str(sess))
    assert r.returncode == 2
    assert "bad.pcap" in r.stderr and "Traceback" not in r.stderr
    assert len(sess.read_text().splitlines()) > 100


def test_truncated_capture_keeps_what_was_read(tmp_path: Path) -> None:
    data = DEMO.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    stats = tmp_path / "stats.json"
    r = sensor("analyze", "--quiet", str(cut), "--stats", str(stats))
    assert r.returncode == 0, r.stderr
    counters = json.loads(stats.read_text())
    assert counters["capture"]["files_truncated"] == 1
    assert counters["totals"]["sessions"] > 50


def test_bad_bpf_and_ports_are_usage_errors(tmp_path: Path) -> None:
    r = sensor("analyze", "--quiet", "--bpf", "tcp port nonsense", str(DEMO))
    assert r.returncode == 2 and "--bpf" in r.stderr and "Traceback" not in r.stderr
    r = sensor("analyze", "--quiet", "--ports", "25,99999", str(DEMO))
    assert r.returncode == 2 and "--ports" in r.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
