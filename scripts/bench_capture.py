#!/usr/bin/env python3
"""Benchmark of the capture+reassembly stages against tcpdump and tshark, in one invocation.

Generates (or reuses) the reference workloads with ../shared/bench/gen_mixed_pcap.py, then times
whole processes: `tcpdump -r F -w /dev/null FILTER`, `tshark -r F -Y smtp ...` and
`sensor analyze --conns /dev/null F`, printing wall seconds, packets/s, peak RSS and ratios.
Targets (issue 2): mixed 2M file: sensor <= 3x tcpdump time, peak RSS < 150 MB;
SMTP-only 500k file: sensor >= 6x faster than tshark.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_mixed_pcap.py"
FILTER = "tcp port 25 or (vlan and tcp port 25)"

WORKLOADS = {
    "mixed_2m": ["--packets", "2000000", "--smtp-share", "0.10", "--seed", "1"],
    "smtp_only_500k": ["--packets", "500000", "--smtp-share", "1.0", "--seed", "1"],
}


def ensure_workload(name: str, workdir: Path) -> Path:
    """Path of the workload capture, generated once with the shared generator."""
    out = workdir / f"{name}.pcap"
    if not out.exists() or not Path(str(out) + ".json").exists():
        if not GEN.exists():
            sys.exit(f"bench: generator not found at {GEN}")
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"generating {out} ...", flush=True)
        subprocess.run([sys.executable, str(GEN), *WORKLOADS[name], "-o", str(out)], check=True)
    return out


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """Run a command to completion; return (wall seconds, peak RSS in MB) of that process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {code}: {err.strip()[:400]}")
    return wall, usage.ru_maxrss / 1024.0


def median_run(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Median wall time and max RSS over `repeat` runs."""
    runs = [run_timed(cmd) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where workloads are kept")
    ap.add_argument("--repeat", type=int, default=3, help="runs per fast tool (median taken)")
    ap.add_argument("--skip-tshark", action="store_true", help="do not time tshark (slow)")
    ap.add_argument("--only", choices=sorted(WORKLOADS), help="one workload only")
    ap.add_argument(
        "--sensor-args",
        default="--conns /dev/null",
        help="outputs given to sensor analyze (default: %(default)s)",
    )
    args = ap.parse_args()
    workdir = Path(args.workdir)
    sensor = shutil.which("sensor", path=str(Path(sys.executable).parent)) or "sensor"
    for tool in ("tcpdump", "tshark"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (make test installs it)")
    results = {}
    for name in [args.only] if args.only else list(WORKLOADS):
        pcap = ensure_workload(name, workdir)
        truth = json.loads(Path(str(pcap) + ".json").read_text())
        packets = int(truth["packets"])
        print(f"\n== {name}: {pcap} ({pcap.stat().st_size / 1e6:.0f} MB, {packets:,} packets)")
        rows = {}
        rows["tcpdump"] = median_run(
            ["tcpdump", "-r", str(pcap), "-w", "/dev/null", FILTER], args.repeat
        )
        sensor_cmd = [sensor, "analyze", "--quiet", *args.sensor_args.split(), str(pcap)]
        rows["sensor"] = median_run(sensor_cmd, args.repeat)
        if not args.skip_tshark:
            rows["tshark"] = run_timed(
                [
                    "tshark",
                    "-r",
                    str(pcap),
                    "-Y",
                    "smtp",
                    "-T",
                    "fields",
                    "-e",
                    "frame.number",
                    "-e",
                    "smtp.req.command",
                ]
            )
        ref = rows["tcpdump"][0]
        print(f"{'reader':<10}{'wall s':>9}{'pkts/s':>13}{'peak RSS MB':>13}{'x tcpdump':>11}")
        for tool, (wall, rss) in rows.items():
            pps = packets / wall if wall and packets else 0
            print(f"{tool:<10}{wall:>9.2f}{pps:>13,.0f}{rss:>13.1f}{wall / ref:>11.2f}")
        if "tshark" in rows:
            print(f"sensor is {rows['tshark'][0] / rows['sensor'][0]:.1f}x faster than tshark")
        results[name] = rows
    if "mixed_2m" in results:
        s, t = results["mixed_2m"]["sensor"], results["mixed_2m"]["tcpdump"]
        print(
            f"\ntarget mixed_2m: sensor/tcpdump = {s[0] / t[0]:.2f} (<= 3), "
            f"peak RSS {s[1]:.0f} MB (< 150)"
        )
    if "smtp_only_500k" in results and "tshark" in results["smtp_only_500k"]:
        r = results["smtp_only_500k"]
        print(
            f"target smtp_only_500k: tshark/sensor = {r['tshark'][0] / r['sensor'][0]:.1f} (>= 6)"
        )


if __name__ == "__main__":
    main()
