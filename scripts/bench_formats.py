#!/usr/bin/env python3
"""Cost of the syslog formats per message, against writing the same record as a JSON line.

    .venv/bin/python scripts/bench_formats.py [--scenario NAME]... [--seconds S]

Simulates scenarios (default: benign, many ordinary sessions, and compromised, for alerts),
runs the real pipeline on them, then formats every session (as `--syslog-sessions` does) and
every alert in each format, repeating for about S seconds per row. It prints messages/s and
the ratio of the time to `to_json_line` of the same records (the `--sessions`/`--alerts` log
writer), measured in the same invocation. Session formats run thousands of times a second on
a busy link, so their ratio is the figure to watch. Alerts are rare, and their row is only
for information.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sensor.capture.bpf import DEFAULT_PORTS, build_filter
from sensor.capture.source import open_files
from sensor.config import parse_config
from sensor.detect import alert_to_dict
from sensor.detect.evaluate import run_detection
from sensor.output.jsonl import to_json_line
from sensor.pipeline import Pipeline
from sensor.records import Alert, SmtpSession
from sensor.simulate.engine import simulate
from sensor.simulate.scenario import load_scenario
from sensor.sinks.formats import FORMATS, FormatOptions, format_alert, format_session
from sensor.smtp.schema import session_to_dict


def records(scenarios: list[str]) -> tuple[list[dict[str, Any]], list[Alert]]:
    """The session dicts and rule alerts of the pipeline on a simulated capture."""
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "sim.pcap"
        simulate([load_scenario(s) for s in scenarios], str(pcap), seed=1)
        sessions: list[SmtpSession] = []
        pipe = Pipeline(ports=DEFAULT_PORTS, on_session=sessions.append)
        pipe.run(open_files([str(pcap)], build_filter(DEFAULT_PORTS), pipe.capture_stats,
                            lambda p, r: None))  # fmt: skip
        pipe.finish()
        site = json.loads(pcap.with_suffix(".truth.json").read_text())["site"]
        cfg = parse_config("[site]\n" + "".join(f"{k} = {json.dumps(site[k])}\n" for k in (
            "home_net", "mail_servers", "local_domains")), "site.toml")
        alerts, _ = run_detection([str(pcap)], cfg)
    return [session_to_dict(s) for s in sessions], alerts


def rate(fn: Callable[[Any], bytes], items: list[Any], seconds: float) -> float:
    """Items per second of fn over the list, repeated for about `seconds`."""
    n = 0
    start = time.perf_counter()
    while True:
        for it in items:
            fn(it)
        n += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", help="repeatable (default: benign and "
                    "compromised)")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    scenarios = args.scenario or ["benign", "compromised"]
    sessions, alerts = records(scenarios)
    opts = FormatOptions(hostname="sensor1.example.net")
    print(f"{len(sessions)} sessions, {len(alerts)} alerts from {'+'.join(scenarios)}")
    ref = rate(to_json_line, sessions, args.seconds)
    print(f"{'sessions':10} {'msgs/s':>10} {'time vs JSON line':>18}")
    print(f"{'json line':10} {ref:10.0f} {1.0:18.2f}")
    for fmt in FORMATS:
        o = replace(opts, format=fmt)
        r = rate(lambda d, o=o: format_session(d, o), sessions, args.seconds)
        print(f"{fmt:10} {r:10.0f} {ref / r:18.2f}")
    if alerts:
        aref = rate(lambda a: to_json_line(alert_to_dict(a)), alerts, args.seconds)
        print(f"\n{'alerts':10} {'msgs/s':>10} {'time vs JSON line':>18}")
        print(f"{'json line':10} {aref:10.0f} {1.0:18.2f}")
        for fmt in FORMATS:
            o = replace(opts, format=fmt)
            r = rate(lambda a, o=o: format_alert(a, o), alerts, args.seconds)
            print(f"{fmt:10} {r:10.0f} {aref / r:18.2f}")


if __name__ == "__main__":
    main()
