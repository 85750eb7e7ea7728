#!/usr/bin/env python3
"""What `--syslog` costs `sensor analyze --alerts` (issue 11's target: under 5%).

Runs in turn, median of --repeat, into a local rsyslog started for the benchmark:
1. the issue-5 detection benchmark (the shared generator's SMTP-only 500k workload):
   `analyze -q --alerts /dev/null` alone, with `--syslog tcp://...`, and with `--syslog
   relp://...`;
2. the simulated 500-host site (an hour, seed --site-seed), where alerts are many, the same
   three, and with `--syslog-sessions` over TCP: one message per SMTP session as well.
Each line gives wall seconds, the ratio to the run without syslog, and the messages rsyslog
wrote (to check nothing was left out).

    .venv/bin/python scripts/bench_syslog_cost.py [--repeat 3]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchlib import common_arguments, ensure_site, ensure_workload, median_runs_cpu, sensor_exe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from sinks.collectors import Rsyslog  # noqa: E402

CONFIG = str(ROOT / "pcaps" / "demo.toml")


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument("--site-seed", type=int, default=1)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    site = ensure_site(work, args.site_seed)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Rsyslog(Path(tmp), ("tcp", "relp"))
        daemon.start()
        try:
            for name, pcap, cfg in (
                    ("smtp_only_500k", ensure_workload("smtp_only_500k", work), []),
                    (f"site-500 seed {args.site_seed}", site, ["--config", CONFIG])):
                base = [sensor_exe(), "analyze", "-q", "--alerts", "/dev/null", *cfg, str(pcap)]
                tcp = ["--syslog", daemon.url("tcp")]
                runs = {"no syslog": base, "--syslog tcp": [*base, *tcp],
                        "--syslog relp": [*base, "--syslog", daemon.url("relp")]}
                if name.startswith("site"):
                    runs["--syslog tcp --syslog-sessions"] = [*base, *tcp, "--syslog-sessions"]
                before = {k: _lines(daemon.output(k)) for k in ("tcp", "relp")}
                got = median_runs_cpu(runs, args.repeat)
                after = {k: _lines(daemon.output(k)) for k in ("tcp", "relp")}
                ref, ref_cpu = got["no syslog"][0], got["no syslog"][2]
                print(f"\nanalyze --alerts on {name} (median of {args.repeat}, in turn)")
                print(f"{'run':<34}{'wall s':>8}{'x no syslog':>13}{'cpu s':>8}"
                      f"{'x no syslog':>13}{'peak MB':>9}")
                for label, (wall, rss, cpu) in got.items():
                    print(f"{label:<34}{wall:>8.2f}{wall / ref:>13.3f}{cpu:>8.2f}"
                          f"{cpu / ref_cpu:>13.3f}{rss:>9.0f}")
                print(f"rsyslog wrote {after['tcp'] - before['tcp']:,} messages over tcp and "
                      f"{after['relp'] - before['relp']:,} over relp in these runs")
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
