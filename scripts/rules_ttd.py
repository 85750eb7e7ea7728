#!/usr/bin/env python3
"""Rules alone on the built-in simulated scenarios: detection, time to detect, false positives.

For every scenario and seed, runs `sensor simulate` and `sensor evaluate --json` (with a config
naming the simulated site) as separate processes, then prints one Markdown row per scenario and
kind over all seeds: hosts, detected, median and maximum time to detect (from each attacker's
first session to its first alert of its kind), and the benign hosts alerted with their kinds.
Targets (issue 10): burst attacks within 2 minutes, every kind within 5 minutes except
deliberately low-and-slow actors, no false-positive host.

    scripts/rules_ttd.py                         # the small scenarios, seeds 1-5
    scripts/rules_ttd.py --seeds 1,2,3 site-500  # the hour of a 500-host site (slower)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SMALL = ("benign", "spambot-burst", "spambot-slow", "bruteforce", "compromised", "open-relay",
         "harvest", "inbound-spam", "demo", "stealth")


def sensor(*args: str) -> str:
    """Run the sensor CLI in a child process; its stdout."""
    done = subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"sensor {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def evaluate(folder: Path, name: str, seed: int) -> dict[str, Any]:
    """`sensor evaluate --json` on a fresh capture of one scenario and seed."""
    pcap = folder / f"{name}-{seed}.pcap"
    sensor("simulate", name, "-o", str(pcap), "--seed", str(seed))
    site = json.loads(pcap.with_suffix(".truth.json").read_text())["site"]
    cfg = pcap.with_suffix(".toml")
    cfg.write_text("[site]\n" + "".join(
        f"{k} = {json.dumps(site[k])}\n" for k in ("home_net", "mail_servers", "local_domains")))
    figures: dict[str, Any] = json.loads(sensor(
        "evaluate", "--no-model", "--json", "-", "--labels",
        str(pcap.with_suffix(".labels.csv")), "--config", str(cfg), str(pcap)))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=list(SMALL))
    ap.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| scenario | kind | hosts | detected | TTD median s | TTD max s "
          "| false-positive hosts |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rules-ttd-") as tmp:
        for name in args.scenarios:
            kinds: dict[str, tuple[int, int, list[float]]] = {}
            fps: set[str] = set()
            for seed in seeds:
                ev = evaluate(Path(tmp), name, seed)
                for kind, res in ev["kinds"].items():
                    h, d, t = kinds.get(kind, (0, 0, []))
                    kinds[kind] = (h + len(res["hosts"]), d + len(res["detected"]),
                                   t + list(res["ttd_s"].values()))
                for host, alerted in ev["false_positive_hosts"].items():
                    fps.add(f"{host} ({'/'.join(alerted)}, seed {seed})")
            fp_text = ", ".join(sorted(fps)) or "0"
            for kind, (h, d, t) in sorted(kinds.items()) or [("-", (0, 0, []))]:
                med = f"{statistics.median(t):.0f}" if t else "-"
                top = f"{max(t):.0f}" if t else "-"
                print(f"| {name} | {kind} | {h} | {d} | {med} | {top} | {fp_text} |", flush=True)


if __name__ == "__main__":
    main()
