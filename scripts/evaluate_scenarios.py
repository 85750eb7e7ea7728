#!/usr/bin/env python3
"""`sensor evaluate` (rules, model, both) on every built-in scenario, one table row per scenario.

Simulates each scenario with a seed the bundled model never saw (default 11), writes the site
config from its truth file, runs `sensor evaluate --json -` with the bundled model, and prints
per mode: recall, false-positive hosts, ROC AUC (model) and time to detect (median / max).

    .venv/bin/python scripts/evaluate_scenarios.py [--seed 11] [SCENARIO...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SCENARIOS = ("demo", "site-500", "stealth", "submission-spambot", "spambot-burst",
             "spambot-slow", "bruteforce", "compromised", "open-relay", "harvest",
             "inbound-spam", "benign")


def sensor(*args: str) -> str:
    exe = str(Path(sys.executable).parent / "sensor")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout


def ttd(values: dict[str, float]) -> str:
    if not values:
        return "-"
    v = sorted(values.values())
    return f"{statistics.median(v):.0f}/{v[-1]:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = ap.parse_args()
    print(f"{'scenario':<20}{'hosts mal/ben':>14} | {'rules rec':>9}{'FP':>4}{'TTD s':>10} | "
          f"{'model rec':>9}{'FP':>4}{'AUC':>7}{'TTD s':>10} | {'both rec':>8}{'FP':>4}"
          f"{'TTD s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenarios:
            pcap = Path(tmp) / f"{name}.pcap"
            sensor("simulate", name, "--seed", str(args.seed), "-o", str(pcap))
            site = json.loads(pcap.with_suffix(".truth.json").read_text())["site"]
            cfg = pcap.with_suffix(".toml")
            cfg.write_text("[site]\n" + "".join(f"{k} = {json.dumps(site[k])}\n" for k in (
                "home_net", "mail_servers", "local_domains")))
            fig = json.loads(sensor("evaluate", "--labels", str(pcap.with_suffix(".labels.csv")),
                                    "--config", str(cfg), "--json", "-", str(pcap)))
            modes = fig["modes"]
            mal = sum(len(k["hosts"]) for k in fig["kinds"].values())
            r, m, b = modes["rules"], modes["model"], modes["both"]
            auc = "-" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            hosts = f"{mal}/{fig['benign_hosts']}"
            print(f"{name:<20}{hosts:>14} | {r['recall']:>9.2f}"
                  f"{len(r['false_positive_hosts']):>4}{ttd(r['ttd_s']):>10} | "
                  f"{m['recall']:>9.2f}{len(m['false_positive_hosts']):>4}{auc:>7}"
                  f"{ttd(m['ttd_s']):>10} | {b['recall']:>8.2f}"
                  f"{len(b['false_positive_hosts']):>4}{ttd(b['ttd_s']):>10}", flush=True)


if __name__ == "__main__":
    main()
