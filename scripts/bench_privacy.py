#!/usr/bin/env python3
"""Benchmark of the [privacy] transform: what it costs `sensor analyze` writing every log.

Times whole processes, in one invocation (median of --repeat rounds, run in turn), of `sensor
analyze --quiet --sessions S --conns C --alerts A --host-scores H PCAP`: without a
configuration (the reference), with an empty [privacy] section, with every field pseudonymised
and with every field dropped; with --workers N also the first and third with N processes. It
prints wall seconds, records/s, peak RSS and each row's ratio to the reference, and checks that
the empty section writes the reference's bytes and that the transformed runs raise the same
alerts. The capture is `sensor simulate site-500 --seed 1 --duration D`, made once in --workdir.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchlib import ensure_site, median_runs, sensor_exe

LOGS = ("sessions", "conns", "alerts", "host-scores")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where the capture is kept")
    ap.add_argument("--repeat", type=int, default=3, help="rounds (median taken)")
    ap.add_argument("--duration", default="30m", help="simulated capture length (default 30m)")
    ap.add_argument("--workers", type=int, default=2, help="also time N processes (1: skip)")
    args = ap.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    pcap = ensure_site(work, 1, args.duration)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "key").write_bytes(b"benchmark key, 32 bytes long...\n")
        configs = {
            "empty": "[privacy]\n",
            "pseudonymise all": f'[privacy]\npseudonymise = ["all"]\nkey_file = "{t / "key"}"\n',
            "drop all": '[privacy]\ndrop = ["all"]\n',
        }
        for name, text in configs.items():
            (t / f"{name}.toml").write_text(text)

        def cmd(name: str, config: str | None, workers: int = 1) -> list[str]:
            out = t / name
            out.mkdir(exist_ok=True)
            c = [sensor_exe(), "analyze", "--quiet", "--workers", str(workers), str(pcap)]
            for log in LOGS:
                c += [f"--{log}", str(out / f"{log}.jsonl")]
            return c + (["--config", str(t / f"{config}.toml")] if config else [])

        runs = {
            "no [privacy]": cmd("off", None),
            "empty [privacy]": cmd("empty", "empty"),
            "pseudonymise all": cmd("pseudo", "pseudonymise all"),
            "drop all": cmd("drop", "drop all"),
        }
        if args.workers > 1:
            w = args.workers
            runs[f"no [privacy] -w{w}"] = cmd("off-w", None, w)
            runs[f"pseudonymise all -w{w}"] = cmd("pseudo-w", "pseudonymise all", w)
        rows = median_runs(runs, args.repeat)
        records = sum(_lines(t / "off" / f"{log}.jsonl") for log in LOGS)
        same = all((t / "off" / f"{log}.jsonl").read_bytes()
                   == (t / "empty" / f"{log}.jsonl").read_bytes() for log in LOGS)
        kinds = {d: _alert_kinds(t / d / "alerts.jsonl") for d in ("off", "pseudo", "drop")}
    print(f"\n== {pcap.name}: {pcap.stat().st_size / 1e6:.0f} MB capture; {records:,} records "
          f"written per run")
    ref_wall = rows["no [privacy]"][0]
    ref_w = rows.get(f"no [privacy] -w{args.workers}", (ref_wall, 0.0))[0]
    print(f"{'run':<26}{'wall s':>9}{'records/s':>13}{'peak RSS MB':>13}{'x reference':>13}")
    for name, (wall, rss) in rows.items():
        base = ref_w if name.endswith(f"-w{args.workers}") else ref_wall
        print(f"{name:<26}{wall:>9.2f}{records / wall:>13,.0f}{rss:>13.1f}{wall / base:>13.3f}")
    print(f"empty [privacy] writes the reference's bytes: {'yes' if same else 'NO'}")
    agree = kinds["off"] == kinds["pseudo"] == kinds["drop"]
    print(f"transformed runs raise the same alerts: {'yes' if agree else 'NO'}")
    if not (same and agree):
        sys.exit(1)


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _alert_kinds(path: Path) -> list[tuple[str, float]]:
    with path.open() as fh:
        return [(a["kind"], a["ts"]) for a in map(json.loads, fh)]


if __name__ == "__main__":
    main()
