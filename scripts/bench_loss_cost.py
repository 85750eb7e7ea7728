#!/usr/bin/env python3
"""Cost of the capture-loss accounting in reassembly: this tree against an older revision.

Both source trees are extracted with `git archive` (interpreted, so that a compiled build on one
side does not decide the figure) and time `sensor analyze --quiet --conns /dev/null F`, which
stops after reassembly, in turn for `--repeat` rounds on the same capture. Prints the median CPU
and wall seconds of each and the ratio new/old. Target: the CPU ratio under 1.03.

    scripts/bench_loss_cost.py --base 562d609 [--pcap F | --only smtp_only_500k]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import common_arguments, ensure_workload, median_runs_cpu

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = (
    "import sys; tree = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if not getattr(f, '__module__', '').startswith('__editable__')]; "
    "sys.path.insert(0, tree); from sensor.cli import main; main()"
)


def extract(rev: str, into: Path) -> Path:
    """The `sensor` package of `rev`, unpacked under `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "sensor"],
                             check=True, capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument("--base", default="562d609", help="revision to compare with")
    ap.add_argument("--new", default="HEAD", help="revision measured (default HEAD)")
    ap.add_argument("--pcap", help="capture to replay (default: the SMTP-only workload)")
    args = ap.parse_args()
    pcap = Path(args.pcap) if args.pcap else ensure_workload(
        args.only or "smtp_only_500k", Path(args.workdir))
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"old": extract(args.base, Path(tmp) / "old"),
                 "new": extract(args.new, Path(tmp) / "new")}
        cmds = {name: [sys.executable, "-c", LAUNCH, str(tree), "analyze", "--quiet",
                       "--conns", "/dev/null", str(pcap)] for name, tree in trees.items()}
        res = median_runs_cpu(cmds, args.repeat)
    for name, (wall, rss, cpu) in res.items():
        print(f"{name:4} {args.base if name == 'old' else args.new:>10}  cpu {cpu:7.2f} s  "
              f"wall {wall:7.2f} s  peak RSS {rss:6.1f} MB")
    print(f"ratio new/old: cpu {res['new'][2] / res['old'][2]:.3f}  "
          f"wall {res['new'][0] / res['old'][0]:.3f}")


if __name__ == "__main__":
    main()
