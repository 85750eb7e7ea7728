#!/usr/bin/env python3
"""Benchmark of the Redis Streams path: the cost of `--publish` on analyze, and records per
second from publish to alert.

Starts its own redis-server on a free loopback port (never the system service). In one
invocation, as whole processes, median of --repeat rounds run in turn:
1. the cost of --publish: `sensor analyze --quiet --alerts A WORKLOAD` (the reference) against
   the same with `--publish redis://.../0?stream=bench` (the stream is deleted between runs), on
   a workload of scripts/benchlib.py (default smtp_only_500k); the target is under 10% (x1.10).
2. publish to alert: the simulated site (`sensor simulate site-500 --seed 1 --duration D`,
   made once in --workdir) published by `analyze --publish`, then `sensor detect --until-idle`
   over the stream alone (the idle wait subtracted), and both at once (publisher and detector
   side by side, from the publisher's start to the detector's last commit): records/s, and the
   ratio to `analyze --alerts` on the same capture. Checks that the detector's alerts equal
   analyze's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import WORKLOADS, ensure_site, ensure_workload, run_timed_cpu, sensor_exe

IDLE_S = 1.0  # detect --until-idle: subtracted from its wall time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Redis:
    """A private redis-server without persistence."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            sys.exit("bench: redis-server not found (scripts/ensure_system.sh test)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        sys.exit("bench: redis-server did not start")

    def url(self, stream: str) -> str:
        return f"redis://127.0.0.1:{self.port}/0?stream={stream}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def alert_keys(path: Path) -> list[tuple[str, str, int]]:
    return sorted((a["host"], a["kind"], a["window_s"])
                  for a in map(json.loads, path.read_text().splitlines()))


def publish_cost(redis: Redis, pcap: Path, repeat: int, tmp: Path) -> None:
    ref = [sensor_exe(), "analyze", "--quiet", "--alerts", str(tmp / "a.jsonl"), str(pcap)]
    stats = tmp / "pub-stats.json"
    pub = [*ref, "--publish", redis.url("bench"), "--stats", str(stats)]
    runs: dict[str, list[tuple[float, float, float]]] = {"analyze --alerts": [],
                                                         "+ --publish": []}
    for _ in range(repeat):
        runs["analyze --alerts"].append(run_timed_cpu(ref))
        redis.client.delete("bench")
        runs["+ --publish"].append(run_timed_cpu(pub))
    counters = json.loads(stats.read_text())
    (sink,) = counters["sinks"].values()
    records = sink["sent"]
    print(f"\n== cost of --publish: {pcap.name}, {records:,} records published "
          f"(dropped: {sink['dropped_queue_full'] + sink['dropped_undeliverable']})")
    print(f"{'run':<20}{'wall s':>9}{'cpu s':>9}{'peak RSS MB':>13}{'x wall':>9}{'x cpu':>9}")
    base_wall = statistics.median(r[0] for r in runs["analyze --alerts"])
    base_cpu = statistics.median(r[2] for r in runs["analyze --alerts"])
    for name, got in runs.items():
        wall = statistics.median(r[0] for r in got)
        cpu = statistics.median(r[2] for r in got)
        rss = max(r[1] for r in got)
        print(f"{name:<20}{wall:>9.2f}{cpu:>9.2f}{rss:>13.1f}{wall / base_wall:>9.3f}"
              f"{cpu / base_cpu:>9.3f}")
    print("target: + --publish under x1.10")


def publish_to_alert(redis: Redis, site: Path, repeat: int, tmp: Path) -> bool:
    ref_alerts = tmp / "site-alerts.jsonl"
    det_alerts = tmp / "det-alerts.jsonl"
    analyze = [sensor_exe(), "analyze", "--quiet", "--alerts", str(ref_alerts), str(site)]
    publish = [sensor_exe(), "analyze", "--quiet", "--publish", redis.url("site"), str(site)]
    det_stats = tmp / "det-stats.json"
    detect = [sensor_exe(), "detect", "-q", "--from", redis.url("site") + "&group=bench",
              "--alerts", str(det_alerts), "--stats", str(det_stats), "--until-idle", str(IDLE_S)]
    rows: dict[str, list[float]] = {"analyze --alerts": [], "analyze --publish": [],
                                    "detect (stream full)": [], "publish + detect at once": []}
    same = True
    records = 0
    for _ in range(repeat):
        rows["analyze --alerts"].append(run_timed_cpu(analyze)[0])
        redis.client.delete("site", "site:checkpoint:bench")  # a fresh detector each time
        rows["analyze --publish"].append(run_timed_cpu(publish)[0])
        rows["detect (stream full)"].append(run_timed_cpu(detect)[0] - IDLE_S)
        records = json.loads(det_stats.read_text())["stream"]["records"]
        same = same and alert_keys(det_alerts) == alert_keys(ref_alerts)
        redis.client.delete("site", "site:checkpoint:bench")
        t0 = time.perf_counter()
        p = subprocess.Popen(publish, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d = subprocess.Popen(detect, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.wait()
        d.wait()
        rows["publish + detect at once"].append(time.perf_counter() - t0 - IDLE_S)
        same = same and alert_keys(det_alerts) == alert_keys(ref_alerts)
    print(f"\n== publish to alert: {site.name}, {records:,} records, "
          f"{len(alert_keys(ref_alerts))} alerts")
    base = statistics.median(rows["analyze --alerts"])
    print(f"{'run':<26}{'wall s':>9}{'records/s':>12}{'x analyze':>11}")
    for name, walls in rows.items():
        wall = statistics.median(walls)
        print(f"{name:<26}{wall:>9.2f}{records / wall:>12,.0f}{wall / base:>11.2f}")
    print(f"detect's alerts equal analyze's (host, kind, window): {'yes' if same else 'NO'}")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where workloads are kept")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (median taken)")
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="smtp_only_500k",
                    help="capture of the --publish cost (default %(default)s)")
    ap.add_argument("--workload-pcap", metavar="PCAP",
                    help="time the --publish cost on this capture instead")
    ap.add_argument("--duration", default="1h", help="simulated site length (default 1h)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pcap = Path(args.workload_pcap) if args.workload_pcap else ensure_workload(args.workload, work)
    site = ensure_site(work, 1, args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp))
        try:
            publish_cost(redis, pcap, args.repeat, Path(tmp))
            same = publish_to_alert(redis, site, args.repeat, Path(tmp))
        finally:
            redis.stop()
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
