"""Shared pieces of the benchmark scripts: reference workloads and whole-process timing."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT.parent / "shared" / "bench" / "gen_mixed_pcap.py"
FILTER = "tcp port 25 or (vlan and tcp port 25)"

WORKLOADS = {
    "mixed_2m": ["--packets", "2000000", "--smtp-share", "0.10", "--seed", "1"],
    "smtp_only_500k": ["--packets", "500000", "--smtp-share", "1.0", "--seed", "1"],
}
SUSTAINED_WORKLOADS = {
    "smtp_only_3m": ["--packets", "3000000", "--smtp-share", "1.0", "--seed", "1"],
}
"""Captures long enough that a capture ring cannot hide a rate the sensor does not sustain
(scripts/bench_live.py); not among the workloads the other benchmarks loop over."""


def ensure_workload(name: str, workdir: Path) -> Path:
    """Path of the workload capture, generated once with the shared generator."""
    out = workdir / f"{name}.pcap"
    if not out.exists() or not Path(str(out) + ".json").exists():
        if not GEN.exists():
            sys.exit(f"bench: generator not found at {GEN}")
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"generating {out} ...", flush=True)
        args = WORKLOADS[name] if name in WORKLOADS else SUSTAINED_WORKLOADS[name]
        subprocess.run([sys.executable, str(GEN), *args, "-o", str(out)], check=True)
    return out


def ensure_site(workdir: Path, seed: int = 1, duration: str | None = None) -> Path:
    """The simulated 500-host site (`sensor simulate site-500`), made once in workdir: an hour,
    or `duration` ("30m")."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"site-500-{seed}.pcap" if duration is None else f"site-500-seed{seed}-{duration}.pcap"
    pcap = workdir / name
    if not pcap.exists():
        print(f"generating {pcap} ...", flush=True)
        extra = [] if duration is None else ["--duration", duration]
        subprocess.run([sensor_exe(), "simulate", "site-500", "--seed", str(seed), *extra,
                        "-o", str(pcap)], check=True, capture_output=True)
    return pcap


def sensor_exe() -> str:
    """The `sensor` entry point of the interpreter running the benchmark."""
    return shutil.which("sensor", path=str(Path(sys.executable).parent)) or "sensor"


def require(*tools: str) -> None:
    """Exit with a one-line message when a reference tool is missing."""
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} not found (make test installs it)")


def run_timed(cmd: list[str]) -> tuple[float, float]:
    """Run a command to completion; return (wall seconds, peak RSS in MB) of that process."""
    wall, rss, _ = run_timed_cpu(cmd)
    return wall, rss


def run_timed_cpu(cmd: list[str]) -> tuple[float, float, float]:
    """`run_timed`, and the CPU seconds (user + system) the process used: on a shared machine
    they move less with the neighbours' load than wall time does."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {code}: {err.strip()[:400]}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def median_runs_cpu(cmds: dict[str, list[str]],
                    repeat: int) -> dict[str, tuple[float, float, float]]:
    """`median_runs` with the median CPU seconds as a third figure."""
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            runs[name].append(run_timed_cpu(cmd))
    return {name: (statistics.median(r[0] for r in got), max(r[1] for r in got),
                   statistics.median(r[2] for r in got)) for name, got in runs.items()}


def median_run(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Median wall time and max peak RSS over `repeat` runs."""
    return median_runs({"": cmd}, repeat)[""]


def median_runs(cmds: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """`median_run` of several commands whose times are compared with each other: they run in
    turn, `repeat` rounds, so a load that comes and goes on a shared machine weighs on each."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            runs[name].append(run_timed(cmd))
    return {
        name: (statistics.median(r[0] for r in got), max(r[1] for r in got))
        for name, got in runs.items()
    }


def print_table(rows: dict[str, tuple[float, float]], packets: int, ref: str) -> None:
    """Wall time, packets/s, peak RSS and ratio to the reference row."""
    base = rows[ref][0]
    print(f"{'run':<22}{'wall s':>9}{'pkts/s':>13}{'peak RSS MB':>13}{'x ' + ref:>14}")
    for name, (wall, rss) in rows.items():
        pps = packets / wall if wall and packets else 0
        print(f"{name:<22}{wall:>9.2f}{pps:>13,.0f}{rss:>13.1f}{wall / base:>14.2f}")


def common_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark script takes."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where workloads are kept")
    ap.add_argument("--repeat", type=int, default=3, help="runs per fast tool (median taken)")
    ap.add_argument("--skip-tshark", action="store_true", help="do not time tshark (slow)")
    ap.add_argument("--only", choices=sorted(WORKLOADS), help="one workload only")
    ap.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also time analyze --workers N (1 to skip; default %(default)s)",
    )
    return ap
