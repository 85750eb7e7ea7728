"""`sensor live --publish` on loopback: a live SMTP dialogue reaches the stream, between ticks
that carry the wall clock, and one `sensor detect` reads it."""

from __future__ import annotations

import json
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from scripted_smtp import serve

from .conftest import sensor
from .redis_util import RedisServer


@pytest.mark.parametrize("workers", ["1", "2"])
def test_live_publish_ticks_then_records_then_end(redis_server: RedisServer, tmp_path: Path,
                                                  workers: str) -> None:
    """One process, or fanout workers whose records this process publishes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    url = f"{redis_server.url}?stream=live"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensor", "live", "-i", "lo", "--ports", str(port),
         "--duration", "5", "--quiet", "--workers", workers, "--publish", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # libpcap opens the interface; a tick or two go out meanwhile

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                serve(conn)

        t = threading.Thread(target=answer)
        t.start()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as c:
            c.sendmail("alice@client.test", ["bob@mx.test"], b"Subject: live\r\n\r\nhello\r\n")
        t.join(5)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        server.close()
    assert proc.returncode == 0, err
    got: Any = redis_server.client().xrange("live")
    kinds = [f[b"type"] for _, f in got]
    assert kinds[0] == b"tick" and kinds[-1] == b"end", kinds
    assert kinds.count(b"conn") == 1 and kinds.count(b"session") == 1
    keys = [float(f[b"t"]) for _, f in got]
    assert keys == sorted(keys)
    assert abs(keys[0] - time.time()) < 60  # live packet time is wall time
    session = json.loads(next(f[b"rec"] for _, f in got if f[b"type"] == b"session"))
    assert session["helo"] == "client.test"
    done = sensor("detect", "-q", "--from", f"{url}&group=g", "--until-idle", "1", "--stats",
                  str(tmp_path / "stats.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "stats.json").read_text())["stream"]["records"] == 2


def test_detect_usage_errors_are_one_line_exit_2() -> None:
    for args, what in ((["--from", "redis://h/0?stream=s"], "&group=NAME"),
                       (["--from", "redis://h/0?group=g"], "?stream=NAME"),
                       (["--from", "redis://h/0?stream=s&group=g", "--shard", "2/2"], "I/N")):
        done = sensor("detect", *args)
        assert done.returncode == 2, done.stderr
        assert what in done.stderr and "Traceback" not in done.stderr, done.stderr
