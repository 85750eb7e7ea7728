#!/usr/bin/env python3
"""Soak benchmark of `sensor live`: replay simulated traffic into a veth for a long time and plot
the sensor's resident memory over time, which must stay flat.

Creates two network namespaces joined by a veth pair (tests/netns_util.py; needs root and
tcpreplay), runs `sensor live` with detection on the server end, and replays `sensor simulate`
captures (`--seeds` different ones, in turn) into the client end with tcpreplay at `--pps` until
`--duration` has passed. Every `--sample` seconds it reads the sensor's VmRSS from /proc. At the
end it writes RSS over time to a PNG (matplotlib) and prints the start, end and peak RSS, the
least-squares slope after the warm-up (until the first hosts expire, [bounds] host_idle_s
scaled, plus one replay, and at least the first fifth of the run: the tables fill), the packets
the sensor saw and the kernel drops and capture-loss estimate from its stats log.

    scripts/soak_live.py [--duration 15m] [--pps 2000] [--time-scale 12] [--out soak_rss.png]
                         [--malloc-stats 60]

With `--malloc-stats S` the sensor's interpreter also dumps its small-object allocator's
statistics every S seconds (SIGUSR2, through a sitecustomize the soak puts on its path), and
`OUT_arenas.png` plots the arenas and the objects in use in them beside RSS: RSS climbs in
steps where the arenas do, when the objects in use pass their earlier peak.

Replayed at these rates, five minutes of a site pass in seconds, so the windows and packet-time
timeouts are divided by `--time-scale` (default 12: the long window is 5 minutes) for the run
to reach the tables' steady state; `--time-scale 1` keeps the defaults (then run for hours).

Target (issue 12): after the warm-up the slope stays within noise (under 1 MB per 10 min)
while the tables hold their caps and idle timeouts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from netns_util import CLI_IF, SRV_IF, VethNet, has_packet_filter, veth_namespaces  # noqa: E402

WARMUP_SHARE = 0.2
"""Share of the run, at the start, left out of the slope at least: the tables fill meanwhile."""
HOST_IDLE_S = 7200
"""[bounds] host_idle_s by default: a host seen once is kept this long in packet time, so the
host table grows until the first hosts of the run expire (divided by --time-scale here)."""


MALLOC_HOOK = """
import os, signal, sys, time

def _dump(signum, frame):
    try:
        _write()
    except Exception:  # never into the sensor's loop
        pass

def _write():
    # sys._debugmallocstats() prints to the C stderr: point fd 2 at the file meanwhile. The
    # first dump may come before the sensor drops to its user: the file is made writable to
    # all.
    fd = os.open(os.path.join(DIR, "%d.txt" % os.getpid()),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    saved = os.dup(2)
    try:
        os.fchmod(fd, 0o666)
    except OSError:
        pass
    try:
        os.write(fd, b"@@ %.3f\\n" % time.monotonic())
        sys.stderr.flush()
        os.dup2(fd, 2)
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)

signal.signal(signal.SIGUSR2, _dump)
"""
"""sitecustomize of the sensor's interpreter with --malloc-stats: SIGUSR2 appends the allocator's
statistics to DIR/PID.txt, after a line with the monotonic time."""
_ARENAS = re.compile(r"# arenas allocated current\s+=\s+([\d,]+)")
_IN_USE = re.compile(r"# bytes in allocated blocks\s+=\s+([\d,]+)")


def seconds(text: str) -> float:
    """'15m', '90s', '1h' or a number of seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB, None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) in MB per hour (0 for fewer than two points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return 3600.0 * sxy / sxx if sxx else 0.0


def make_captures(workdir: Path, seeds: int, scenario: str, length: str) -> list[Path]:
    """`sensor simulate` captures with seeds 1..seeds (made once, kept in workdir)."""
    out = []
    for seed in range(1, seeds + 1):
        pcap = workdir / f"soak-{scenario}-{length}-{seed}.pcap"
        if not pcap.exists():
            subprocess.run([sys.executable, "-m", "sensor", "simulate", scenario, "--seed",
                            str(seed), "--duration", length, "-o", str(pcap)],
                           check=True, capture_output=True)  # fmt: skip
        out.append(pcap)
    return out


def scaled_config(path: Path, scale: int, heap_trim_s: int | None, reserve_mb: int = 0) -> Path:
    """A config whose windows and packet-time timeouts are the defaults divided by `scale`:
    replayed traffic then reaches the tables' steady state within the soak (at 1, the long
    window alone takes an hour to fill). The heap is trimmed every `heap_trim_s` (None: the
    default minute, scaled too; 0: never). `reserve_mb` is [live] reserve_mb: 0 by default, as
    memory made resident at start would hide the tables' growth (and a leak) below it."""
    d = lambda v: max(1, v // scale)  # noqa: E731 - one-line helper
    trim = d(60) if heap_trim_s is None else heap_trim_s
    path.write_text(
        f"[windows]\nshort_s = {d(60)}\nmedium_s = {d(600)}\nlong_s = {d(3600)}\n"
        f"[bounds]\nhost_idle_s = {float(d(7200))}\n"
        f"[reassembly]\nidle_timeout_s = {float(d(300))}\n"
        f"[suppression]\ninterval_s = {d(3600)}\n"
        f"[live]\nheap_trim_s = {trim}\nreserve_mb = {reserve_mb}\n")
    return path


def warmup_s(duration: float, scale: int, replay_s: float) -> float:
    """Seconds left out of the slope: until the first hosts expire (the host table's steady
    state, `HOST_IDLE_S` scaled) plus one replay, and at least `WARMUP_SHARE` of the run."""
    return max(duration * WARMUP_SHARE, HOST_IDLE_S / max(1, scale) + replay_s)


def table_sizes(lines: list[dict[str, Any]]) -> list[tuple[float, int, int]]:
    """(uptime s, hosts tracked, connections open) of each stats line."""
    out = []
    for line in lines:
        snap = line.get("totals", {})
        up = snap.get("process", {}).get("uptime_s")
        if up is None:
            continue
        out.append((float(up), int(snap.get("detect", {}).get("hosts_active", 0)),
                    int(snap.get("state", {}).get("connections_open", 0))))
    return out


def malloc_samples(folder: Path, t0: float) -> list[tuple[float, float, float]]:
    """(seconds since t0, MB of small-object arenas, MB of small objects in use) of each
    statistics dump the hook wrote."""
    out = []
    for path in sorted(folder.glob("*.txt")):
        for block in path.read_text().split("@@ ")[1:]:
            arenas, in_use = _ARENAS.search(block), _IN_USE.search(block)
            if arenas and in_use:
                out.append((float(block.split("\n", 1)[0]) - t0,
                            int(arenas[1].replace(",", "")) * 1.048576,  # 1 MiB arenas (3.10+)
                            int(in_use[1].replace(",", "")) / 1e6))  # fmt: skip
    return sorted(out)


def plot_malloc(samples: list[tuple[float, float]], malloc: list[tuple[float, float, float]],
                png: Path, title: str) -> None:
    """RSS beside the interpreter's small-object arenas and the objects in use in them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot([t / 60 for t, _ in samples], [v for _, v in samples], lw=1.5, label="RSS")
    ax.plot([t / 60 for t, _, _ in malloc], [a for _, a, _ in malloc], lw=1.5, marker=".",
            label="small-object arenas (pymalloc)")
    ax.plot([t / 60 for t, _, _ in malloc], [u for _, _, u in malloc], lw=1, marker=".",
            label="small objects in use")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def plot(samples: list[tuple[float, float]], png: Path, title: str, warmup: float,
         tables: list[tuple[float, int, int]]) -> None:
    """RSS over time, with the warm-up shaded, and the sizes of the tables beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ts = [t / 60 for t, _ in samples]
    ax.plot(ts, [v for _, v in samples], lw=1.5)
    if ts:
        ax.axvspan(0, warmup / 60, color="0.9", label="warm-up (left out of the slope)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("sensor RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if tables:  # the tables' own steady state, on a second axis
        tw = ax.twinx()
        tw.plot([t / 60 for t, _, _ in tables], [h for _, h, _ in tables], color="tab:orange",
                lw=1, label="hosts tracked")
        tw.plot([t / 60 for t, _, _ in tables], [c for _, _, c in tables], color="tab:green",
                lw=1, label="connections open")
        tw.set_ylabel("table entries")
        tw.set_ylim(bottom=0)
        tw.legend(loc="lower center")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def replay(net: VethNet, captures: list[Path], pps: int, until: float) -> int:
    """Replay the captures in turn until the monotonic time `until`; returns the replays."""
    n = 0
    while time.monotonic() < until:
        pcap = captures[n % len(captures)]
        left = max(1, int(until - time.monotonic()))
        # nanosleep between packets: tcpreplay's default timer spins a core, which would take
        # it from the sensor on a small machine (and from anything run beside the soak)
        subprocess.run(net.in_ns(net.cli_ns, ["tcpreplay", "-q", "-i", CLI_IF, "--pps", str(pps),
                                              "--timer", "nano", "--duration", str(left),
                                              str(pcap)]),
                       capture_output=True, check=False)  # fmt: skip
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", default="15m", help="replay time: 15m, 900s, 1h")
    ap.add_argument("--pps", type=int, default=2000, help="tcpreplay packets per second")
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    ap.add_argument("--seeds", type=int, default=3, help="different captures replayed in turn")
    ap.add_argument("--scenario", default="site-benign", help="sensor simulate scenario")
    ap.add_argument("--length", default="5m", help="packet-time length of each capture")
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where captures are kept")
    ap.add_argument("--out", default="soak_rss.png", help="PNG of RSS over time")
    ap.add_argument("--warmup", default=None,
                    help="left out of the slope: 10m, 600s (default: until the first hosts can "
                         "have expired, plus a replay, and at least a fifth of the run)")
    ap.add_argument("--time-scale", type=int, default=12,
                    help="divide the windows and packet-time timeouts by this (1: the defaults)")
    ap.add_argument("--heap-trim-s", type=int, default=None,
                    help="[live] heap_trim_s of the run (default: 60 divided by --time-scale; "
                         "0: no trim, to compare)")
    ap.add_argument("--reserve-mb", type=int, default=0,
                    help="[live] reserve_mb of the run (default 0: the resident size is then the "
                         "tables' own, which a reservation would hide below its size)")
    ap.add_argument("--malloc-stats", type=float, default=0.0,
                    help="every this many seconds, sample the sensor's small-object allocator "
                         "(sys._debugmallocstats) and plot it beside RSS in OUT_arenas.png "
                         "(default 0: off)")
    args = ap.parse_args()
    duration = seconds(args.duration)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    captures = make_captures(workdir, args.seeds, args.scenario, args.length)
    with tempfile.TemporaryDirectory() as tmp, veth_namespaces() as net:
        stats_log = Path(tmp) / "stats.log"
        cfg = scaled_config(Path(tmp) / "soak.toml", max(1, args.time_scale), args.heap_trim_s,
                            args.reserve_mb)
        env = dict(os.environ)
        malloc_dir = Path(tmp) / "malloc"
        if args.malloc_stats > 0:
            hook = Path(tmp) / "hook"
            hook.mkdir()
            malloc_dir.mkdir()
            malloc_dir.chmod(0o777)  # the sensor writes as the user it dropped to
            Path(tmp).chmod(0o755)
            (hook / "sitecustomize.py").write_text(f"DIR = {str(malloc_dir)!r}\n" + MALLOC_HOOK)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(hook), str(ROOT), env.get("PYTHONPATH", "")) if p)
        sensor = subprocess.Popen(net.in_ns(net.srv_ns, [
            sys.executable, "-m", "sensor", "live", "-i", SRV_IF, "--quiet", "--config", str(cfg),
            "--alerts", "/dev/null", "--stats-interval", str(max(1.0, args.sample)),
            "--stats-log", str(stats_log)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        deadline = time.monotonic() + 30
        while not has_packet_filter(net.srv_ns, sensor.pid):
            if sensor.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"soak: the sensor did not start: {sensor.communicate()[1]}")
            time.sleep(0.1)
        t0 = time.monotonic()
        samples: list[tuple[float, float]] = []
        import threading

        done = threading.Event()
        replays: list[int] = []
        feeder = threading.Thread(
            target=lambda: (replays.append(replay(net, captures, args.pps, t0 + duration)),
                            done.set()), daemon=True)  # fmt: skip
        feeder.start()
        next_dump = t0
        while not done.is_set():
            v = rss_mb(sensor.pid)
            if v is None:
                sys.exit(f"soak: the sensor died: {sensor.communicate()[1]}")
            samples.append((time.monotonic() - t0, v))
            if args.malloc_stats > 0 and time.monotonic() >= next_dump:
                os.kill(sensor.pid, signal.SIGUSR2)
                next_dump += args.malloc_stats
            done.wait(args.sample)
        sensor.terminate()
        _, err = sensor.communicate(timeout=60)
        lines = [json.loads(x) for x in stats_log.read_text().splitlines()] if \
            stats_log.exists() else []
        malloc = malloc_samples(malloc_dir, t0) if args.malloc_stats > 0 else []
    last = lines[-1]["totals"] if lines else {}
    packets = last.get("capture", {}).get("packets", 0)
    kernel = sum(v.get("dropped", 0) for v in last.get("interfaces", {}).values())
    tcp = last.get("tcp", {})
    loss = 100.0 * tcp.get("acks_unseen", 0) / tcp["acks"] if tcp.get("acks") else 0.0
    replay_s = duration / max(1, replays[0] if replays else 1)
    warmup = (seconds(args.warmup) if args.warmup is not None
              else warmup_s(duration, args.time_scale, replay_s))
    after = [p for p in samples if p[0] >= warmup]
    slope = slope_mb_per_h(after)
    start, end, peak = samples[0][1], samples[-1][1], max(v for _, v in samples)
    title = (f"sensor live soak: {args.scenario} x{args.seeds} at {args.pps} pps, "
             f"{duration / 60:.1f} min, windows and timeouts / {args.time_scale}")
    plot(samples, Path(args.out), title, warmup, table_sizes(lines))
    if malloc:
        arenas_png = Path(args.out).with_name(Path(args.out).stem + "_arenas.png")
        plot_malloc(samples, malloc, arenas_png, title)
        steady = [u for t, _, u in malloc if t >= warmup] or [u for _, _, u in malloc]
        print(f"small-object arenas MB: first {malloc[0][1]:.0f}, last {malloc[-1][1]:.0f}; "
              f"objects in use MB after warm-up: {min(steady):.0f} to {max(steady):.0f} "
              f"({len(malloc)} samples)  plot: {arenas_png}")
    print(f"soak: {duration:.0f} s at {args.pps} pps, {replays[0] if replays else 0} replays of "
          f"{len(captures)} captures; sensor saw {packets} packets, kernel drops {kernel}, "
          f"capture-loss estimate {loss:.2f}%")
    proc = last.get("process", {})
    print(f"heap trims {proc.get('heap_trims', 0)}, resident bytes they gave back "
          f"{proc.get('heap_released_bytes', 0) / 1e6:.1f} MB")
    print(f"RSS MB: start {start:.1f}  end {end:.1f}  max {peak:.1f}  slope after warm-up "
          f"{slope:+.2f} MB/h ({len(samples)} samples)  plot: {args.out}")
    if sensor.returncode not in (0, 143):
        print(f"soak: sensor exit {sensor.returncode}: {err.strip()[-500:]}", file=sys.stderr)


if __name__ == "__main__":
    main()
