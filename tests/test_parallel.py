"""`sensor analyze --workers N`: flow-split worker processes give the records of one process."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from proc_util import group_members

from sensor import parallel
from sensor.capture.bpf import build_filter
from sensor.capture.source import STOP_CHECK_FRAMES, open_files
from sensor.cli import main
from sensor.errors import CaptureError
from sensor.parallel import MAX_WORKERS_AUTO, resolve_workers
from sensor.pipeline import Pipeline, flow_share
from sensor.records import ConnRecord, SmtpSession

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "pcaps" / "demo.pcap"
OUTPUTS = ("conns", "sessions", "alerts")


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "sensor", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated capture with benign mail and a spambot burst."""
    out = tmp_path_factory.mktemp("sim") / "sim.pcap"
    done = sensor(
        "simulate", "benign", "spambot-burst", "--seed", "3", "--duration", "10m", "-o", str(out)
    )
    assert done.returncode == 0, done.stderr
    return out


def analyze(capture: Path, out: Path, workers: str, *extra: str) -> dict[str, bytes]:
    """Run `sensor analyze` writing every output under `out`; their bytes by name."""
    out.mkdir(parents=True, exist_ok=True)
    args = [f"--{name}={out / name}" for name in (*OUTPUTS, "stats")]
    done = sensor("analyze", "-q", "--workers", workers, *args, *extra, str(capture))
    assert done.returncode == 0, done.stderr
    return {name: (out / name).read_bytes() for name in (*OUTPUTS, "stats")}


def sorted_lines(data: bytes) -> list[bytes]:
    return sorted(data.splitlines())


@pytest.mark.parametrize("which", ["demo", "simulated"])
def test_two_workers_give_the_records_of_one_process(
    which: str, simulated: Path, tmp_path: Path
) -> None:
    capture = DEMO if which == "demo" else simulated
    one = analyze(capture, tmp_path / "one", "1")
    two = analyze(capture, tmp_path / "two", "2")
    for name in OUTPUTS:
        assert one[name], f"{name}: the capture must produce records for the test to mean much"
        assert sorted_lines(two[name]) == sorted_lines(one[name]), name
    s1, s2 = json.loads(one["stats"]), json.loads(two["stats"])
    assert s2["capture"] == s1["capture"]  # every worker reads every frame: counted once
    for stats in (s1, s2):
        del stats["tcp"]["active_peak"]  # with workers: the sum of each one's peak
        del stats["totals"]["wall_s"]
    assert s2["tcp"] == s1["tcp"]
    assert s2["totals"] == s1["totals"]
    assert s2["detect"] == s1["detect"]


def test_same_input_and_workers_give_the_same_bytes(simulated: Path, tmp_path: Path) -> None:
    for workers in ("2", "3"):
        first = analyze(simulated, tmp_path / f"a{workers}", workers)
        again = analyze(simulated, tmp_path / f"b{workers}", workers)
        for name in OUTPUTS:
            assert first[name] == again[name], (workers, name)


def test_summary_counts_packets_once(tmp_path: Path) -> None:
    def packets(workers: str) -> str:
        done = sensor("analyze", "--workers", workers, str(DEMO))
        assert done.returncode == 0, done.stderr
        found = re.search(r"│ packets\s+│\s+([\d,]+) │", done.stdout)
        assert found is not None, done.stdout
        return found.group(1)

    assert packets("2") == packets("1") == "7,040"


def test_bad_file_beside_good_one_is_reported_once_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    good = analyze(DEMO, tmp_path / "good", "1")
    out = tmp_path / "mixed"
    out.mkdir()
    done = sensor("analyze", "-q", "--workers", "2", f"--sessions={out / 's'}", str(bad), str(DEMO))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("sensor: error:")]
    assert errors == [f"sensor: error: {bad}: not a pcap or pcapng file (magic 0x6e6f7420)"]
    assert done.stderr.count("\n") == 1
    assert sorted_lines((out / "s").read_bytes()) == sorted_lines(good["sessions"])


def test_workers_option_values(tmp_path: Path) -> None:
    assert resolve_workers("auto") == min(os.cpu_count() or 1, MAX_WORKERS_AUTO)
    assert resolve_workers("3") == 3
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(ValueError):
            resolve_workers(bad)
    done = sensor("analyze", "-q", "--workers", "0", str(DEMO))
    assert done.returncode == 2
    assert "Invalid value for '--workers'" in done.stderr
    auto = sensor("analyze", "-q", "--workers", "auto", "--sessions", "-", str(DEMO))
    assert auto.returncode == 0, auto.stderr
    one = sensor("analyze", "-q", "--workers", "1", "--sessions", "-", str(DEMO))
    assert sorted(auto.stdout.splitlines()) == sorted(one.stdout.splitlines())
    assert len(one.stdout.splitlines()) > 150


def _failing_work(*args: Any) -> Any:
    raise CaptureError("disk went away")


def _crashing_work(*args: Any) -> Any:
    raise ZeroDivisionError("a bug in a worker")


def _dying_work(*args: Any) -> Any:
    os._exit(3)


def test_worker_errors_reach_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are forked, so a patched worker body runs in every child."""
    runner = CliRunner()
    monkeypatch.setattr(parallel, "_work", _failing_work)
    done = runner.invoke(main, ["analyze", "-q", "--workers", "2", str(DEMO)])
    assert done.exit_code == 2
    assert done.output.strip() == "sensor: error: disk went away"

    monkeypatch.setattr(parallel, "_work", _dying_work)
    done = runner.invoke(main, ["analyze", "-q", "--workers", "2", str(DEMO)])
    assert done.exit_code == 2
    assert "worker 0 ended without its results (exit code 3)" in done.output

    monkeypatch.setattr(parallel, "_work", _crashing_work)
    done = runner.invoke(main, ["analyze", "-q", "--workers", "2", str(DEMO)])
    assert isinstance(done.exception, RuntimeError)
    assert "ZeroDivisionError: a bug in a worker" in str(done.exception)


def _records(capture: Path, workers: int, index: int | None) -> list[ConnRecord | SmtpSession]:
    out: list[ConnRecord | SmtpSession] = []
    pipe = Pipeline(on_conn=out.append, on_session=out.append)
    frames = open_files([str(capture)], build_filter((25,)), pipe.capture_stats, print)
    if index is None:
        pipe.run(frames)
    else:
        pipe.run_share(frames, workers, index)
    pipe.finish()
    return out


@pytest.mark.parametrize("workers", [2, 3])
def test_shares_partition_the_flows(workers: int, simulated: Path) -> None:
    whole = _records(simulated, 1, None)
    shares = [_records(simulated, workers, k) for k in range(workers)]
    assert all(shares), "every worker got some flows"
    merged = [r for share in shares for r in share]
    assert Counter(repr(r) for r in merged) == Counter(repr(r) for r in whole)


addresses = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
ports = st.integers(0, 65535)


@settings(max_examples=200)
@given(addresses, addresses, ports, ports, st.integers(1, 16))
def test_flow_share_is_symmetric_and_in_range(
    a: bytes, b: bytes, pa: int, pb: int, workers: int
) -> None:
    k = flow_share(a, b, pa, pb, workers)
    assert k == flow_share(b, a, pb, pa, workers)
    assert 0 <= k < workers


def test_flow_share_balances_even_client_ports() -> None:
    """Linux clients pick even ephemeral ports: a plain port sum would put them all on one side."""
    client, server = bytes([10, 0, 0, 7]), bytes([192, 0, 2, 25])
    counts = Counter(flow_share(client, server, p, 25, 2) for p in range(32768, 61000, 2))
    assert min(counts.values()) > 0.45 * sum(counts.values())


_WITHOUT_PDEATHSIG = """
import sys
from sensor import parallel
from sensor.cli import main
parallel.die_with_parent = lambda parent: None  # leave only the pipe to tell of the death
main(sys.argv[1:])
"""


def test_workers_of_a_dead_parent_end_on_the_broken_pipe(tmp_path: Path) -> None:
    """Without PR_SET_PDEATHSIG, a worker of a killed parent still ends: it holds no read end of
    any pipe, so its next write fails instead of blocking forever. Its records exceed the pipe
    buffer (1 MiB), so a worker that held a read end would block."""
    from open_smtp import write_open_smtp

    capture = tmp_path / "open.pcap"
    write_open_smtp(capture, 2000, 60)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WITHOUT_PDEATHSIG, "analyze", "-q", "--workers", "2",
         "--conns", os.devnull, "--sessions", os.devnull, str(capture)],
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while len(group_members(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group_members(proc.pid)) == 3, "the workers did not start"
        proc.kill()
        proc.wait(30)
        deadline = time.monotonic() + 60
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(proc.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@settings(max_examples=300)
@given(
    st.lists(st.integers(0, 40), min_size=2, max_size=4),
    st.lists(st.integers(0, 3), max_size=200),
)
def test_workers_agree_on_one_cut(starts: list[int], schedule: list[int]) -> None:
    """Whatever the positions and the interleaving, every worker stops at the same frame."""
    shared = multiprocessing.get_context("fork").Array("q", 2)
    n = len(starts)
    cuts = [parallel._SharedCut(shared, n) for _ in range(n)]
    pos = [s * STOP_CHECK_FRAMES for s in starts]
    stopped: list[int | None] = [None] * n
    order = [k % n for k in schedule] + list(range(n)) * 200
    furthest = None  # of the workers' positions when the last one saw the signal
    for k in order:
        if stopped[k] is None:
            if cuts[k].reached(pos[k]):
                stopped[k] = pos[k]
            else:
                pos[k] += STOP_CHECK_FRAMES
            if furthest is None and shared[1] == n:
                furthest = max(pos)
    assert None not in stopped
    assert len(set(stopped)) == 1
    assert furthest is not None and stopped[0] is not None
    assert stopped[0] <= furthest + STOP_CHECK_FRAMES  # no one reads on for long


def test_a_worker_at_the_end_of_input_takes_the_others_there() -> None:
    shared = multiprocessing.get_context("fork").Array("q", 2)
    done, running = parallel._SharedCut(shared, 2), parallel._SharedCut(shared, 2)
    done.finished()
    assert not running.reached(5 * STOP_CHECK_FRAMES)  # reads on, to the end
    assert running.reached(5 * STOP_CHECK_FRAMES + parallel.CUT_CATCH_UP_FRAMES)  # or the cap


def _flood_capture(path: Path, flows: int, sessions: int) -> list[str]:
    """SYN-only flows with complete SMTP sessions mixed in; the sessions' recipients."""
    from sensor.capture.writer import PcapWriter
    from sensor.simulate.frames import make_direction

    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    rcpts: list[str] = []
    ts = 1_700_000_000.0
    with PcapWriter(str(path)) as w:
        for i in range(flows):
            d = make_direction(f"10.1.{i >> 8}.{i & 255}", "192.0.2.25", 1024 + i, 25, 64, 0, 1, 0)
            w.write(ts, d.frame(i * 7919, 0, syn, 64240, b"", b"", 0))
            ts += 0.001
            if i % (flows // sessions) != 0:
                continue
            k = len(rcpts)
            rcpts.append(f"user{k}@example.org")
            c = make_direction(f"198.51.100.{k + 1}", "192.0.2.25", 30000, 25, 64, 0, 1, 0)
            s = make_direction("192.0.2.25", f"198.51.100.{k + 1}", 25, 30000, 64, 0, 1, 0)
            cs, ss = 1000, 5000
            frames = [c.frame(cs, 0, syn, 64240, b"", b"", 0),
                      s.frame(ss, cs + 1, syn | ack, 65160, b"", b"", 0)]  # fmt: skip
            cs, ss = cs + 1, ss + 1
            frames.append(c.frame(cs, ss, ack, 502, b"", b"", 0))
            for to_server, line in [
                (False, b"220 mx ESMTP\r\n"), (True, b"HELO c\r\n"), (False, b"250 mx\r\n"),
                (True, b"MAIL FROM:<a@example.com>\r\n"), (False, b"250 ok\r\n"),
                (True, f"RCPT TO:<{rcpts[-1]}>\r\n".encode()), (False, b"250 ok\r\n"),
                (True, b"QUIT\r\n"), (False, b"221 bye\r\n"),
            ]:  # fmt: skip
                if to_server:
                    frames.append(c.frame(cs, ss, ack | psh, 502, b"", line, 0))
                    cs += len(line)
                else:
                    frames.append(s.frame(ss, cs, ack | psh, 509, b"", line, 0))
                    ss += len(line)
            frames += [c.frame(cs, ss, ack | fin, 502, b"", b"", 0),
                       s.frame(ss, cs + 1, ack | fin, 509, b"", b"", 0),
                       c.frame(cs + 1, ss + 1, ack, 502, b"", b"", 0)]  # fmt: skip
            for f in frames:
                w.write(ts, f)
                ts += 0.0001
    return rcpts


def test_under_a_memcap_workers_split_it_and_account_for_every_flow(tmp_path: Path) -> None:
    flows = 3000
    cap = tmp_path / "flood.pcap"
    rcpts = _flood_capture(cap, flows, 10)
    cfg = tmp_path / "small.toml"
    cfg.write_text("[bounds]\nmemcap_mb = 1\n")
    per_process = (1 << 20) // 1700  # connections a 1 MiB memcap holds (CONN_BYTES each)
    for workers in ("1", "2"):
        out = analyze(cap, tmp_path / workers, workers, "--config", str(cfg))
        conns = [json.loads(line) for line in out["conns"].splitlines()]
        assert len(conns) == flows + len(rcpts)  # every flow accounted for
        seen = {r["addr"] for line in out["sessions"].splitlines()
                for t in json.loads(line)["transactions"] for r in t["rcpt_to"]}  # fmt: skip
        assert seen == set(rcpts)  # the real sessions were analysed, none evicted
        tcp = json.loads(out["stats"])["tcp"]
        assert tcp["evicted_memcap"] == tcp["evicted_half_open"] > flows // 2
        assert sum(c["end_reason"] == "evicted" for c in conns) == tcp["evicted_memcap"]
        assert tcp["active_peak"] <= per_process + 2  # with workers: the sum of each one's
