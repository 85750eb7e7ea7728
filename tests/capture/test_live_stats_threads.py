"""LiveSource.stats() read from other threads (the stats reporter, the metrics endpoint) while
the capture thread reads packets: only the capture thread ever calls into the libpcap handle,
whose use from two threads at once libpcap does not allow, and the figures still follow the
capture. On a veth end in a network namespace, with tcpreplay sending a capture into the other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netns_util import REPLAY_MTU, SRV_IF, replay, veth_namespaces

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pcaps" / "demo.pcap"
REPLAY_PPS = 2000
STEP_TIMEOUT_S = 30.0

CAPTURE_SCRIPT = r'''
"""Capture on IFACE until a line on stdin; a second thread hammers stats() and the live status
snapshot meanwhile. Every call into the pcapy handle is recorded with the thread that made it."""
import json
import sys
import threading

import pcapy

from sensor.capture.live import LiveSource
from sensor.records import CaptureStats
from sensor.service.stats import LiveStatus

calls: set[tuple[str, str]] = set()  # (thread name, pcapy method)
READER = type(pcapy.create("lo"))  # the type of libpcap handles (never activated)


def profile(frame, event, arg):
    if event == "c_call" and isinstance(getattr(arg, "__self__", None), READER):
        calls.add((threading.current_thread().name, arg.__name__))


src = LiveSource(sys.argv[1], timeout_ms=20)
status = LiveStatus()
status.sources.append(src)
done = threading.Event()
reads: list[tuple[int, int, int]] = []
errors: list[str] = []


def hammer() -> None:
    while not done.is_set():
        try:
            reads.append(src.stats())
            reads.append(tuple(status.snapshot()["interfaces"][src.iface].values()))
        except Exception as exc:
            errors.append(repr(exc))


threading.setprofile(profile)
sys.setprofile(profile)
threading.current_thread().name = "capture"
reader = threading.Thread(target=hammer, name="hammer")
reader.start()
threading.Thread(target=lambda: (sys.stdin.readline(), src.stop()), daemon=True).start()
print("ready", flush=True)
frames = sum(1 for _ in src.frames(CaptureStats()))
done.set()
reader.join()
sys.setprofile(None)
print(json.dumps({"frames": frames, "reads": reads, "errors": errors[:3],
                  "calls": sorted(calls), "final": src.stats()}))
'''


def _frames(pcap: Path) -> int:
    out = subprocess.run(["capinfos", "-c", "-M", str(pcap)], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return int(out.split()[-1])


def test_stats_hammered_from_another_thread_during_a_veth_capture(tmp_path: Path) -> None:
    script = tmp_path / "capture.py"
    script.write_text(CAPTURE_SCRIPT)
    with veth_namespaces(REPLAY_MTU) as net:
        proc = subprocess.Popen(net.in_ns(net.srv_ns, [sys.executable, str(script), SRV_IF]),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr
            replay(net, str(DEMO), pps=REPLAY_PPS)
            out, err = proc.communicate("stop\n", timeout=STEP_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=STEP_TIMEOUT_S)
    assert proc.returncode == 0, err
    got = json.loads(out)
    assert got["errors"] == []
    # libpcap is called by the capture thread alone; the other thread read only what it left
    assert {name for name, _ in got["calls"]} == {"capture"}, got["calls"]
    assert {"next_batch", "stats"} <= {method for _, method in got["calls"]}
    frames = _frames(DEMO)
    assert got["frames"] == frames
    reads = [tuple(r) for r in got["reads"]]
    assert len(reads) > 1000  # hammered
    received = [r[0] for r in reads]
    assert received == sorted(received)  # never backwards
    assert len(set(received)) > 2  # refreshed while the capture ran, not only at its end
    final = got["final"]
    assert final[0] >= frames and final[1] == 0, final
