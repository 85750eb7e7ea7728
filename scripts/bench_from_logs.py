#!/usr/bin/env python3
"""Benchmark of detection from session and connection logs against detection from the capture.

`sensor train --from-sessions` reads the logs that `sensor analyze --sessions S --conns C` wrote
instead of the captures. This times, in one invocation and as whole processes (median of
--repeat rounds, run in turn): `sensor analyze --quiet --alerts A PCAP` (the reference), reading
S and C back with `sensor.output.readers.iter_logged_records` alone, and reading them while
feeding the Detector, with its alerts written like analyze's. It prints wall seconds, records/s,
peak RSS and each row's speed-up over the reference, and checks that the alerts from the logs
equal the analysis' byte for byte. The capture is `sensor simulate site-500 --seed 1 --duration
1h`, made once in --workdir.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import ensure_site, median_runs, sensor_exe


def replay(logs: list[str], alerts: str | None) -> None:
    """Child process: read the logs back, through the Detector when `alerts` is given."""
    from sensor.output.readers import ReadStats, iter_logged_records
    from sensor.records import ConnRecord

    stats = ReadStats()

    def failed(path: str, reason: str) -> None:
        sys.exit(f"bench: {path}: {reason}")

    records = iter_logged_records(logs, failed, stats)
    if alerts is None:
        for _ in records:
            pass
        return
    from sensor.config import load_config
    from sensor.detect.alerts import alert_to_dict
    from sensor.detect.detector import Detector
    from sensor.output.jsonl import JsonlSink

    sink = JsonlSink(alerts)
    det = Detector(load_config(None), lambda a: sink.write(alert_to_dict(a)))
    for rec in records:
        if isinstance(rec, ConnRecord):
            det.on_conn(rec)
        else:
            det.on_session(rec)
    det.finish()
    sink.close()


def count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where the capture is kept")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (median taken)")
    ap.add_argument("--duration", default="1h", help="simulated capture length (default 1h)")
    ap.add_argument("--replay", nargs="+", metavar="LOG", help=argparse.SUPPRESS)
    ap.add_argument("--replay-alerts", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay:
        replay(args.replay, args.replay_alerts)
        return

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pcap = ensure_site(work, 1, args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        s, c = t / "sessions.jsonl", t / "conns.jsonl"
        a_pcap, a_logs = t / "alerts-pcap.jsonl", t / "alerts-logs.jsonl"
        subprocess.run([sensor_exe(), "analyze", "--quiet", "--sessions", str(s), "--conns",
                        str(c), str(pcap)], check=True)  # fmt: skip
        records = count_lines(s) + count_lines(c)
        me = [sys.executable, str(Path(__file__).resolve()), "--replay", str(s), str(c)]
        rows = median_runs({
            "analyze --alerts": [sensor_exe(), "analyze", "--quiet", "--alerts", str(a_pcap),
                                 str(pcap)],
            "read logs": me,
            "read logs + detect": [*me, "--replay-alerts", str(a_logs)],
        }, args.repeat)  # fmt: skip
        same = a_pcap.read_bytes() == a_logs.read_bytes()
        alerts = count_lines(a_pcap)
        size = (s.stat().st_size + c.stat().st_size) / 1e6
    print(f"\n== {pcap.name}: {pcap.stat().st_size / 1e6:.0f} MB capture; logs {size:.0f} MB, "
          f"{records:,} records; {alerts} alerts")  # fmt: skip
    base = rows["analyze --alerts"][0]
    print(f"{'run':<22}{'wall s':>9}{'records/s':>13}{'peak RSS MB':>13}{'speed-up':>10}")
    for name, (wall, rss) in rows.items():
        print(f"{name:<22}{wall:>9.2f}{records / wall:>13,.0f}{rss:>13.1f}{base / wall:>10.2f}")
    print(f"alerts from the logs equal the analysis' alerts: {'yes' if same else 'NO'}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
