#!/usr/bin/env python3
"""Benchmark of capture + reassembly against tcpdump and tshark, in one invocation.

Generates (or reuses) the reference workloads with ../shared/bench/gen_mixed_pcap.py, then times
whole processes: `tcpdump -r F -w /dev/null FILTER`, `tshark -r F -Y smtp ...` and
`sensor analyze --quiet --conns /dev/null F`, printing wall seconds, packets/s, peak RSS and
ratios. Targets (issue 2): mixed 2M file: sensor <= 3x tcpdump's time, peak RSS < 150 MB;
SMTP-only 500k file: sensor >= 6x faster than tshark.

That quiet run writes connection records only, so the sensor stops after reassembly. The row
"sensor --conns --stats" also parses every SMTP session (its counts go into --stats): the whole
analysis short of writing sessions. `--workers N` (default 2) adds a flow-split run of the first
command (peak RSS is then the parent's only).

`--filter-cost [EXPR]` times instead, on the mixed file, the sensor's quiet run and tcpdump with
the filter before issue 13 (PREVIOUS_FILTER) and with EXPR (default: today's build_filter()), in
turn, and prints the ratios new/old of the median CPU and wall times. Target (issue 13): the
sensor run under 1.10.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (
    FILTER,
    WORKLOADS,
    common_arguments,
    ensure_workload,
    median_run,
    print_table,
    require,
    run_timed,
    sensor_exe,
)

PREVIOUS_FILTER = "tcp port 25 or (vlan and (tcp port 25 or (vlan and tcp port 25)))"
"""The default filter before issue 13: no IPv6 extension headers, at most two VLAN tags."""


def _cpu_run(cmd: list[str]) -> tuple[float, float]:
    """Run a command to completion; (wall seconds, CPU seconds: user + system) of the process.

    CPU time counts only this process's work, so on a machine shared with other loads it varies
    far less than wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {' '.join(cmd[:3])} ... failed")
    return wall, usage.ru_utime + usage.ru_stime


def filter_cost(expr: str, workdir: Path, repeat: int) -> None:
    """Time the quiet sensor run and tcpdump with PREVIOUS_FILTER and with `expr`, in turn."""
    pcap = ensure_workload("mixed_2m", workdir)
    packets = int(json.loads(Path(str(pcap) + ".json").read_text())["packets"])
    print(f"\n== filter cost, mixed_2m: {pcap} ({packets:,} packets)")
    print(f"new filter: {expr}")
    cmds: dict[str, list[str]] = {}
    for tag, bpf in (("old", PREVIOUS_FILTER), ("new", expr)):
        cmds[f"tcpdump {tag}"] = ["tcpdump", "-r", str(pcap), "-w", "/dev/null", bpf]
        cmds[f"sensor {tag}"] = [sensor_exe(), "analyze", "--quiet", "--conns", "/dev/null",
                                 "--bpf", bpf, str(pcap)]  # fmt: skip
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(repeat):  # in turn, so a load that comes and goes weighs on each
        for name, cmd in cmds.items():
            runs[name].append(_cpu_run(cmd))
    wall = {name: statistics.median(r[0] for r in got) for name, got in runs.items()}
    cpu = {name: statistics.median(r[1] for r in got) for name, got in runs.items()}
    print(f"{'run':<16}{'wall s':>9}{'cpu s':>9}{'pkts/s (cpu)':>15}")
    for name in cmds:
        print(f"{name:<16}{wall[name]:>9.2f}{cpu[name]:>9.2f}{packets / cpu[name]:>15,.0f}")
    print()
    for tool in ("tcpdump", "sensor"):
        kind = "target" if tool == "sensor" else "for information"
        goal = " (< 1.10)" if tool == "sensor" else ""
        print(f"{kind} mixed_2m, {tool} new/old filter: "
              f"cpu {cpu[f'{tool} new'] / cpu[f'{tool} old']:.3f}{goal}, "
              f"wall {wall[f'{tool} new'] / wall[f'{tool} old']:.3f}")  # fmt: skip


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument(
        "--filter-cost",
        nargs="?",
        const="",
        default=None,
        metavar="EXPR",
        help="time the old default filter against EXPR (default: build_filter())",
    )
    args = ap.parse_args()
    if args.filter_cost is not None:
        require("tcpdump")
        from sensor.capture.bpf import build_filter

        filter_cost(args.filter_cost or build_filter(), Path(args.workdir), args.repeat)
        return
    require("tcpdump", "tshark")
    results = {}
    for name in [args.only] if args.only else list(WORKLOADS):
        pcap = ensure_workload(name, Path(args.workdir))
        packets = int(json.loads(Path(str(pcap) + ".json").read_text())["packets"])
        print(f"\n== {name}: {pcap} ({pcap.stat().st_size / 1e6:.0f} MB, {packets:,} packets)")
        rows = {
            "tcpdump": median_run(["tcpdump", "-r", str(pcap), "-w", "/dev/null", FILTER],
                                  args.repeat),
            "sensor --conns": median_run([sensor_exe(), "analyze", "--quiet", "--conns",
                                          "/dev/null", str(pcap)], args.repeat),
        }  # fmt: skip
        rows["sensor --conns --stats"] = median_run(
            [sensor_exe(), "analyze", "--quiet", "--conns", "/dev/null", "--stats", "/dev/null",
             str(pcap)], args.repeat)  # fmt: skip
        if args.workers > 1:
            rows[f"sensor --workers {args.workers}"] = median_run(
                [sensor_exe(), "analyze", "--quiet", "--workers", str(args.workers), "--conns",
                 "/dev/null", str(pcap)], args.repeat)  # fmt: skip
        if not args.skip_tshark:
            rows["tshark -Y smtp"] = run_timed(["tshark", "-r", str(pcap), "-Y", "smtp", "-T",
                                                "fields", "-e", "frame.number", "-e",
                                                "smtp.req.command"])  # fmt: skip
        print_table(rows, packets, "tcpdump")
        results[name] = rows
    print()
    for name, rows in results.items():
        for run in (r for r in rows if r.startswith("sensor")):
            kind = "for information" if "--stats" in run else "target"
            if name == "mixed_2m":
                print(f"{kind} mixed_2m, {run}: sensor/tcpdump = "
                      f"{rows[run][0] / rows['tcpdump'][0]:.2f} (<= 3), "
                      f"peak RSS {rows[run][1]:.0f} MB (< 150)")  # fmt: skip
            elif "tshark -Y smtp" in rows:
                print(f"{kind} {name}, {run}: tshark/sensor = "
                      f"{rows['tshark -Y smtp'][0] / rows[run][0]:.1f} (>= 6)")  # fmt: skip


if __name__ == "__main__":
    main()
