"""`sensor live` on the loopback interface: a real SMTP dialogue captured and parsed live."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from scripted_smtp import serve


def _scripted_smtp_server(sock: socket.socket) -> None:
    """Answer one SMTP client with fixed, valid replies (enough for smtplib)."""
    conn, _ = sock.accept()
    with conn:
        serve(conn)


def test_live_capture_on_loopback(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    sessions = tmp_path / "sessions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", "live", "-i", "lo", "--ports", str(port),
         "--duration", "4", "--quiet", "--sessions", str(sessions)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # let libpcap open the interface
        t = threading.Thread(target=_scripted_smtp_server, args=(server,))
        t.start()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as c:
            c.sendmail("alice@client.test", ["bob@mx.test"], b"Subject: live\r\n\r\nhello\r\n")
        t.join(5)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        server.close()
    assert proc.returncode == 0, err
    assert "packets received" in err
    rows = [json.loads(line) for line in sessions.read_text().splitlines()]
    assert len(rows) == 1
    s = rows[0]
    assert s["helo"] == "client.test"
    tx = s["transactions"][0]
    assert tx["mail_from"] == "alice@client.test"
    assert [r["addr"] for r in tx["rcpt_to"]] == ["bob@mx.test"]
    assert tx["headers"]["subject"] == "live"


def _hold_one_session(sock: socket.socket, release: threading.Event) -> None:
    """Banner, one EHLO answered, then the connection stays open until `release`."""
    conn, _ = sock.accept()
    with conn:
        conn.sendall(b"220 mx.test ESMTP\r\n")
        conn.recv(1024)
        conn.sendall(b"250 mx.test\r\n")
        release.wait(30)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_live_signal_flushes_the_open_session_and_exits_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """A signal is live's normal way to stop: exit 0, summary, the open session written."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    sessions = tmp_path / "sessions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", "live", "-i", "lo", "--ports", str(port),
         "--sessions", str(sessions)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    release = threading.Event()
    t = threading.Thread(target=_hold_one_session, args=(server, release))
    try:
        time.sleep(1.5)  # let libpcap open the interface
        t.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.recv(1024)
            c.sendall(b"EHLO held.test\r\n")
            c.recv(1024)
            time.sleep(1.0)  # let the sensor read the packets
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
    finally:
        release.set()
        proc.kill()
        t.join(5)
        server.close()
    assert proc.returncode == 0, err
    assert f"sensor: {sig.name}: stopped reading; 1 open connections flushed" in err
    assert "port25-sensor run" in out
    rows = [json.loads(line) for line in sessions.read_text().splitlines()]
    assert [r["helo"] for r in rows] == ["held.test"]
