"""`sensor analyze` on stdin and FIFOs, and its shutdown on SIGINT/SIGTERM, run as a user would."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import pty
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from open_smtp import open_smtp_chunks, write_open_smtp
from proc_util import children_of, group_members
from scripted_smtp import serve

from sensor.capture.source import STOP_CHECK_FRAMES
from sensor.capture.writer import PcapngWriter

CONNS = 20


def sensor_proc(*args: str, **kw: object) -> subprocess.Popen[str]:
    """Start the installed CLI exactly as a user would, in its own process group."""
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "sensor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kw,
    )


def kill_group(proc: subprocess.Popen[str]) -> None:
    """End whatever the test started (the sensor and any worker), even when the test failed."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """proc's (stdout, stderr); the whole group is killed if it does not end in time."""
    try:
        return proc.communicate(timeout=timeout)  # type: ignore[no-any-return]
    finally:
        kill_group(proc)


def sessions_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def wait_drained(fd: int, timeout: float = 20.0) -> None:
    """Wait until the reader has taken every byte written into the pipe, then a little more
    for the frames to pass through the pipeline."""
    deadline = time.monotonic() + timeout
    buf = bytearray(4)
    while time.monotonic() < deadline:
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        if int.from_bytes(buf, sys.byteorder) == 0:
            time.sleep(0.5)
            return
        time.sleep(0.02)
    raise AssertionError("the sensor did not read the FIFO")


def wait_opened(pid: int, path: Path, timeout: float = 30.0) -> None:
    """Wait until process `pid` has `path` open (from /proc/<pid>/fd)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                        return
        time.sleep(0.02)
    raise AssertionError(f"{path} was not opened")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "in.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def closed_file(tmp_path: Path) -> Path:
    """Five complete SMTP connections (clients 10.2.x.x), earlier than any stream's."""
    path = tmp_path / "closed.pcap"
    write_open_smtp(path, 5, 3, net=2, start=1_600_000_000.0, close=True)
    return path


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_stream_flushes_open_connections(
    tmp_path: Path, fifo: Path, closed_file: Path, sig: signal.Signals, code: int
) -> None:
    """The run is held on a FIFO kept open: the signal ends it; the open sessions are written and
    go through detection (their servers strip STARTTLS: one alert per client)."""
    sessions = tmp_path / "sessions.jsonl"
    conns = tmp_path / "conns.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    proc = sensor_proc(
        "analyze", "--sessions", str(sessions), "--conns", str(conns), "--alerts", str(alerts),
        str(closed_file), str(fifo),
    )  # fmt: skip
    chunks = open_smtp_chunks(CONNS, 3, ehlo_reply=b"250-mx.test\r\n250 XXXXXXXA\r\n")
    fd = os.open(fifo, os.O_WRONLY)  # returns once the sensor has opened the FIFO
    try:
        os.write(fd, b"".join(chunks))
        wait_drained(fd)
        proc.send_signal(sig)
        out, err = finish(proc, 30)
    finally:
        os.close(fd)
        kill_group(proc)
    assert proc.returncode == code, err
    assert f"sensor: {sig.name}: stopped reading; {CONNS} open connections flushed" in err
    assert "port25-sensor run" in out  # the summary
    assert "Traceback" not in err
    rows = sessions_of(sessions)
    assert len(rows) == 5 + CONNS
    open_rows = [r for r in rows if str(r["client_ip"]).startswith("10.1.")]
    assert len(open_rows) == CONNS
    assert {r["helo"] for r in open_rows} == {"c.test"}
    assert len(conns.read_text().splitlines()) == 5 + CONNS
    flagged = sessions_of(alerts)
    assert {a["kind"] for a in flagged} == {"starttls_downgrade"}
    assert sorted(a["host"] for a in flagged) == sorted(str(r["client_ip"]) for r in open_rows)


def test_fifo_without_writer_is_reported_and_the_run_goes_on(
    tmp_path: Path, fifo: Path, closed_file: Path
) -> None:
    sessions = tmp_path / "sessions.jsonl"
    t0 = time.monotonic()
    proc = sensor_proc(
        "analyze", "-q", "--stream-wait", "0.5", "--sessions", str(sessions), str(fifo),
        str(closed_file),
    )  # fmt: skip
    _, err = finish(proc, 30)
    assert time.monotonic() - t0 < 8
    assert proc.returncode == 2, err
    assert err.strip() == f"sensor: error: {fifo}: no data within 0.5 s (no writer?)"
    assert len(sessions_of(sessions)) == 5


def test_sigint_while_waiting_for_a_fifo_writer(fifo: Path, closed_file: Path) -> None:
    """The default wait is 10 s; SIGINT ends it at once, and the file is still analysed."""
    proc = sensor_proc("analyze", "--stats", "-", str(fifo), str(closed_file))
    wait_opened(proc.pid, fifo)  # by then the handlers are in place: it waits for a writer
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, 30)
    assert time.monotonic() - t0 < 3
    assert proc.returncode == 130, err
    assert "sensor: SIGINT: stopped reading; 0 open connections flushed" in err
    stats = json.loads(out.splitlines()[0])
    assert stats["capture"]["files_failed"] == 1
    assert stats["totals"]["sessions"] == 0  # the signal came before any packet was read


def _stdin_run(data: bytes, *args: str) -> tuple[subprocess.CompletedProcess[bytes], dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "-q", "--stats", "-", *args, "-"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip
    return done, json.loads(done.stdout.decode().splitlines()[0])


def test_stdin_pcap_gzip_and_pcapng(tmp_path: Path) -> None:
    """`cat x | sensor analyze -`, `zcat`-like gzip streams and pcapng all read like the file."""
    pcap = b"".join(open_smtp_chunks(7, 4, close=True))
    ng = tmp_path / "x.pcapng"
    with PcapngWriter(str(ng)) as w:
        w.add_interface(1)
        for ts, frame in _frames(pcap):
            w.write(ts, frame)
    expected = 7 * (6 + 8 + 5)
    for data in (pcap, gzip.compress(pcap), ng.read_bytes(), gzip.compress(ng.read_bytes())):
        done, stats = _stdin_run(data)
        assert done.returncode == 0, done.stderr
        assert stats["capture"]["packets"] == expected
        assert stats["totals"]["sessions"] == 7
        assert stats["capture"]["files_truncated"] == 0


def _frames(pcap: bytes) -> Iterator[tuple[float, bytes]]:
    pos = 24
    while pos < len(pcap):
        sec, usec, caplen, _ = (int.from_bytes(pcap[pos + i : pos + i + 4], "little")
                                for i in (0, 4, 8, 12))  # fmt: skip
        yield sec + usec / 1e6, pcap[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen


def test_stdin_not_a_capture_given_twice_a_terminal_or_closed(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "-q", "-"],
        input=b"<html>nope</html>", capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "sensor: error: -: not a pcap or pcapng file (magic 0x3c68746d)"
    )
    done, stats = _stdin_run(b"".join(open_smtp_chunks(2, 1, close=True)), "-")
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "sensor: error: -: standard input given more than once"
    assert stats["totals"]["sessions"] == 2  # the first "-" is read
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sensor", "analyze", "-q", "-"],
            stdin=terminal, capture_output=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(controller)
        os.close(terminal)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == (
        "sensor: error: -: standard input is a terminal, not a capture stream"
    )
    done = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "-q", "-"],
        capture_output=True, timeout=60, preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "sensor: error: -: standard input is closed"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fifo_and_file_read_in_first_packet_order(
    tmp_path: Path, fifo: Path, closed_file: Path, workers: str
) -> None:
    """A FIFO fed by a thread is read with the files; with --workers, one process reads all."""
    chunks = open_smtp_chunks(CONNS, 2, close=True)  # later than closed_file's packets
    conns = tmp_path / "conns.jsonl"

    def writer() -> None:
        time.sleep(0.3)
        with open(fifo, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    proc = sensor_proc(
        "analyze", "-q", "--workers", workers, "--conns", str(conns), "--stats", "-", str(fifo),
        str(closed_file),
    )  # fmt: skip
    out, err = finish(proc, 60)
    t.join()
    assert proc.returncode == 0, err
    if workers == "2":
        assert "one process reads everything (--workers ignored)" in err
    stats = json.loads(out.splitlines()[0])
    assert stats["capture"]["files"] == 2
    assert stats["totals"]["sessions"] == 5 + CONNS
    ips = [json.loads(line)["client_ip"] for line in conns.read_text().splitlines()]
    assert all(ip.startswith("10.2.") for ip in ips[:5])  # the file's first packet is earlier


def test_writer_gone_mid_record_counts_truncation(tmp_path: Path, fifo: Path) -> None:
    data = b"".join(open_smtp_chunks(3, 2))

    def writer() -> None:
        with open(fifo, "wb") as fh:
            fh.write(data[:-10])  # the last record is cut, then the writer goes away

    t = threading.Thread(target=writer)
    t.start()
    proc = sensor_proc("analyze", "-q", "--stats", "-", str(fifo))
    out, err = finish(proc, 60)
    t.join()
    assert proc.returncode == 0, err
    stats = json.loads(out.splitlines()[0])
    assert stats["capture"]["files_truncated"] == 1
    assert stats["capture"]["packets"] == 3 * 10 - 1
    assert stats["totals"]["sessions"] == 3


@pytest.fixture(scope="module")
def big_open(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """400k frames of 200 connections that never close (seconds of work per worker); their
    servers strip STARTTLS, so detection has something to say about each client."""
    path = tmp_path_factory.mktemp("big") / "open.pcap"
    return path, write_open_smtp(path, 200, 1000, ehlo_reply=b"250-mx.test\r\n250 XXXXXXXA\r\n")


def _hold_workers(proc: subprocess.Popen[str], n: int) -> list[int]:
    """Wait for the `n` children of `proc` (its workers, and the model's process when a model
    scores) and freeze them (SIGSTOP) early in their work: past
    the opening of every connection (1,200 frames), far from the end (400k)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = children_of(proc.pid)
        if len(kids) >= n:
            time.sleep(0.3)
            for pid in kids:
                os.kill(pid, signal.SIGSTOP)
            return kids
        time.sleep(0.005)
    raise AssertionError("workers did not start")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_workers_flush_on_the_parents_signal(
    tmp_path: Path, big_open: tuple[Path, int], sig: signal.Signals, code: int
) -> None:
    """The parent forwards the signal; workers flush what they hold; nothing survives."""
    capture, total = big_open
    sessions = tmp_path / "sessions.jsonl"
    conns = tmp_path / "conns.jsonl"
    alerts = tmp_path / "alerts.jsonl"
    proc = sensor_proc(
        "analyze", "--workers", "2", "--sessions", str(sessions), "--conns", str(conns),
        "--alerts", str(alerts), "--stats", str(tmp_path / "st"), str(capture),
    )  # fmt: skip
    try:
        kids = _hold_workers(proc, 3)  # the two workers and the bundled model's process
        proc.send_signal(sig)  # to the parent only: the workers learn it from the parent
        time.sleep(0.3)
        for pid in kids:
            os.kill(pid, signal.SIGCONT)
        out, err = finish(proc, 60)
    finally:
        kill_group(proc)
    assert proc.returncode == code, err
    assert f"sensor: {sig.name}: stopped reading; 200 open connections flushed" in err
    assert "port25-sensor run" in out
    stats = json.loads((tmp_path / "st").read_text())
    assert 0 < stats["capture"]["packets"] < total  # cut mid-run
    assert stats["stopped_by"] == {"signal": sig.name, "flushed": 200}
    rows = sessions_of(sessions)
    assert len(rows) == 200
    assert {r["helo"] for r in rows} == {"c.test"}
    time.sleep(0.2)
    assert group_members(proc.pid) == []
    # The workers agreed on one cut: the output is one process's on the frames up to it.
    cut = stats["capture"]["packets"]
    assert cut % STOP_CHECK_FRAMES == 0
    head = tmp_path / "head.pcap"
    head.write_bytes(first_records(capture.read_bytes(), cut))
    single = subprocess.run(
        [sys.executable, "-m", "sensor", "analyze", "-q", "--sessions", str(tmp_path / "s1"),
         "--conns", str(tmp_path / "c1"), "--alerts", str(tmp_path / "a1"), str(head)],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    assert len(sessions_of(alerts)) == 200
    pairs = ((tmp_path / "s1", sessions), (tmp_path / "c1", conns), (tmp_path / "a1", alerts))
    for one, two in pairs:
        # the same records; their order may differ, as without a signal
        assert sorted(one.read_bytes().splitlines()) == sorted(two.read_bytes().splitlines())


def first_records(pcap: bytes, n: int) -> bytes:
    """A classic little-endian pcap cut after its first `n` records."""
    pos = 24
    for _ in range(n):
        pos += 16 + int.from_bytes(pcap[pos + 8 : pos + 12], "little")
    return pcap[:pos]


@pytest.mark.parametrize("alerts", [False, True])
def test_workers_die_with_a_killed_parent(big_open: tuple[Path, int], alerts: bool,
                                          forest_model: Path) -> None:
    """SIGKILL leaves the parent no say: the kernel kills the workers and the model's process
    (PR_SET_PDEATHSIG), here that of a model without scoring tables (skops in the child)."""
    capture, _ = big_open
    detect = ["--alerts", os.devnull, "--model", str(forest_model)] if alerts else []
    proc = sensor_proc("analyze", "-q", "--workers", "2", "--sessions", os.devnull, *detect,
                       str(capture))
    try:
        _hold_workers(proc, 3 if alerts else 2)  # stopped, they would stay if nothing killed them
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 10
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        kill_group(proc)
    assert group_members(proc.pid) == []


def test_second_signal_aborts_without_orphans(tmp_path: Path, big_open: tuple[Path, int]) -> None:
    capture, _ = big_open
    proc = sensor_proc(
        "analyze", "-q", "--workers", "2", "--sessions", str(tmp_path / "s"), str(capture)
    )
    try:
        _hold_workers(proc, 2)  # frozen: they cannot flush before the second signal
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = finish(proc, 60)
    finally:
        kill_group(proc)
    assert proc.returncode == 143, err
    assert "sensor: second SIGTERM: flush abandoned, outputs may be incomplete" in err
    assert "Traceback" not in err
    assert group_members(proc.pid) == []


def _serve_one(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        serve(conn)


def test_tcpdump_piped_into_analyze(tmp_path: Path) -> None:
    """`tcpdump -w - | sensor analyze -` on loopback: a real SMTP dialogue, ended by tcpdump."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.fail("tcpdump not installed (make test installs it with apt-get as root)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    dump = subprocess.Popen(
        # --immediate-mode: each packet is handed over at once, not when a ring block times out
        [tcpdump, "-i", "lo", "--immediate-mode", "-U", "-w", "-", f"tcp port {port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert dump.stdout is not None and dump.stderr is not None
    proc = sensor_proc("analyze", "-q", "--stream-wait", "120", "--ports", str(port),
                       "--sessions", "-", "-", stdin=dump.stdout)  # fmt: skip
    dump.stdout.close()
    try:
        assert b"listening on lo" in dump.stderr.readline()  # tcpdump is capturing
        t = threading.Thread(target=_serve_one, args=(server,))
        t.start()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=5) as c:
            c.sendmail("alice@client.test", ["bob@mx.test"], b"Subject: piped\r\n\r\nhi\r\n")
        t.join(5)
        time.sleep(0.5)
        dump.terminate()  # its end of the pipe closes: the stream ends
        dump.wait(30)
        out, err = finish(proc, 60)
    finally:
        dump.kill()
        server.close()
    assert proc.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["helo"] for r in rows] == ["client.test"], err
    assert rows[0]["transactions"][0]["headers"]["subject"] == "piped"
