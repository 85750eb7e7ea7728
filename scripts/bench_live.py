"""Benchmark `sensor live` on a veth pair: the SMTP-only workload replayed at rising rates.

For 1 and 2 workers (--workers-list) and each rate (tcpreplay --pps, then --topspeed), the
sensor captures on the server-side end of a fresh veth pair inside two network namespaces while
tcpreplay sends the capture into the client-side end. Printed per run: the rate tcpreplay
reached, packets sent and seen, kernel and interface drops, the upstream-loss counters of the
TCP reassembler (whatever `tcp` counters name acks or loss: helper "metrics" adds them), the
sensor's CPU seconds (every worker included) and its peak memory (PSS summed over its
processes: RSS would count the forked heap and the capture rings once per process; each role's
peak at the end of the row). Then, as ratios
against the one-worker runs of the same invocation: the highest rate each worker count took with
no kernel drop, and the packets seen per second at top speed.

The workload is the SMTP-only capture of 3,000,000 packets (10 s at 300,000 packets/s): a
sustained rate, as a 64 MB ring absorbs a burst of a few hundred thousand packets whatever the
sensor's speed (--workload smtp_only_500k for the short one). The CPU per packet is the
sensor's steady state: its CPU from capture start to the end of the backlog, start-up and the
final flush left out. The alerts column counts what the run raised (the whole workload raises
none; under drops the issue asks for none either), kept per run in
WORKDIR/live-wN-RATE[-ref].runK.alerts (K counts the runs of this invocation), and the table
figures say how the connection table made room (tcp.linger_cut, evicted_*).

Needs root, iproute2 and tcpreplay (scripts/ensure_system.sh test). Full size (the lead's run):
    python scripts/bench_live.py
Small (proves it works in a minute):
    python scripts/bench_live.py --workload smtp_only_500k --limit 20000 --rates 5000,20000
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from benchlib import common_arguments, ensure_workload, require, sensor_exe
from netns_util import (
    REPLAY_MTU,
    SRV_IF,
    LineReader,
    VethNet,
    has_packet_filter,
    replay,
    veth_namespaces,
)

from sensor.service.livefanout import pss_bytes

DEFAULT_RATES = "10000,50000,100000,200000,300000,500000,top"
SETTLE_S = 1.0  # after the replay: the last ring blocks are handed over, the workers report
IDLE_S = 0.6  # CPU flat this long: the sensor has worked off the ring's backlog
BACKLOG_MAX_S = 120.0
START_TIMEOUT_S = 20.0
RSS_POLL_S = 0.2  # how often the sensor's CPU ticks are read, once the replay is over
PSS_POLL_S = 1.0
"""How often the sensor's memory is read while tcpreplay sends. Reading a process's PSS
(/proc/PID/smaps_rollup) walks its page tables under its mmap lock: 5 ms for a 530 MB process
on the 2-core machine. Read every RSS_POLL_S, that took a few percent of a core from the
sensor and tcpreplay, and held off the sensor's mmap calls (new heap arenas) meanwhile."""
_RATED = re.compile(r"Rated: .*?([\d.]+) pps")


def _tree(pid: int) -> list[int]:
    """`pid` and its children (the sensor's workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [pid, *(int(x) for x in f.read().split())]
    except OSError:
        return []


_ROLE_PEAK: dict[str, int] = {}  # the run's peak PSS of each role (parent, model, workers)


def _rss(pids: list[int]) -> int:
    """Memory of the sensor's processes: their PSS summed (each shared page counted once).
    `pids` as _tree gives them, the sensor first; each role's peak goes to _ROLE_PEAK."""
    by_role: dict[str, int] = {}
    for pid in pids:
        role = _role(pid, pids[0])
        by_role[role] = by_role.get(role, 0) + pss_bytes(pid)
    for role, n in by_role.items():
        _ROLE_PEAK[role] = max(_ROLE_PEAK.get(role, 0), n)
    return sum(by_role.values())


def _ticks(pids: list[int]) -> int:
    """CPU clock ticks (user + system) the processes have used so far."""
    return sum(_ticks_by(pids).values())


def _ticks_by(pids: list[int]) -> dict[int, int]:
    """CPU clock ticks (user + system) each process has used so far."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return out


def _role(pid: int, parent: int) -> str:
    """"parent" (the sensor itself: everything, with one process), "model" (the scorer child)
    or "workers" (the capture workers of a fanout)."""
    if pid == parent:
        return "parent"
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as f:
            return "model" if f.read().strip() == "port25-model" else "workers"
    except OSError:
        return "workers"


def _split(before: dict[int, int], after: dict[int, int], parent: int) -> dict[str, float]:
    """CPU seconds per role between two readings of the process tree."""
    out = {"parent": 0.0, "workers": 0.0, "model": 0.0}
    hz = os.sysconf("SC_CLK_TCK")
    for pid, ticks in after.items():
        out[_role(pid, parent)] += (ticks - before.get(pid, 0)) / hz
    return out


def _wait_idle(pid: int) -> int:
    """After the replay: wait until the sensor's processes have worked off the ring's backlog
    (their CPU use stays flat for IDLE_S, at least SETTLE_S, at most BACKLOG_MAX_S), so that a
    slow run is measured by what it read and dropped, not cut short by the stop. Returns the
    peak memory seen meanwhile."""
    t0 = time.monotonic()
    peak = 0
    pss_at = t0  # PSS read at most every PSS_POLL_S, the CPU ticks every RSS_POLL_S
    last, flat_since = -1, time.monotonic()
    while time.monotonic() - t0 < BACKLOG_MAX_S:
        pids = _tree(pid)
        if time.monotonic() >= pss_at:
            peak = max(peak, _rss(pids))
            pss_at = time.monotonic() + PSS_POLL_S
        now_ticks = _ticks(pids)
        if now_ticks != last:
            last, flat_since = now_ticks, time.monotonic()
        elif time.monotonic() - flat_since >= IDLE_S and time.monotonic() - t0 >= SETTLE_S:
            break
        time.sleep(RSS_POLL_S)
    return peak


_RUNS = itertools.count(1)


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_once(pcap: Path, workers: int, rate: str, limit: int | None, detect: bool,
             workdir: Path, records: bool = False, reference: str | None = None,
             replay_cpu: int | None = None, cpus: str = "") -> dict[str, Any]:  # fmt: skip
    """One capture of one replay; the row of figures it gave. `reference`: the sensor imported
    from that checkout instead (built in place), for a before/after comparison. `replay_cpu`:
    the core tcpreplay is kept on (None: anywhere). `cpus`: the sensor's --cpus ("": none,
    and none for a reference build that has no such option)."""
    tag = f"w{workers}-{rate}" + ("-ref" if reference else "")
    stats_path = workdir / f"live-{tag}.stats"
    stats_path.unlink(missing_ok=True)
    # kept, one file a run (the same rate runs several times): what drops made it raise
    alerts_path = workdir / f"live-{tag}.run{next(_RUNS)}.alerts"
    argv = [sensor_exe(), "live", "-i", SRV_IF, "--workers", str(workers), "-q",
            "--stats", str(stats_path)]  # fmt: skip
    if cpus and not (reference and '"--cpus"' not in (Path(reference) / "sensor" / "cli.py")
                     .read_text()):  # fmt: skip
        argv += ["--cpus", cpus]
    else:
        cpus = ""
    if detect:
        argv += ["--alerts", str(alerts_path)]
    if records:  # to look into what a run raised; writing them costs the sensor CPU
        for kind in ("conns", "sessions"):
            argv += [f"--{kind}", str(workdir / f"live-{tag}.{kind}")]
    env = dict(os.environ)
    if reference:
        env["PYTHONPATH"] = reference
    _ROLE_PEAK.clear()
    with veth_namespaces(REPLAY_MTU) as net:
        cpu0 = _cpu()  # children's CPU: the sensor's counts once it (and its workers) are reaped
        sensor = subprocess.Popen(net.in_ns(net.srv_ns, argv), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        assert sensor.stderr is not None
        lines = LineReader(sensor.stderr)
        try:
            _wait_capturing(net, sensor, lines, workers)
            polls_cpu = _cpu() - cpu0  # the ss/ip polls, not the sensor's
            ticks0 = _ticks_by(_tree(sensor.pid))
            report, peak, replay_cpu_s = _replay_polling(net, pcap, rate, limit, sensor.pid,
                                                         replay_cpu)  # fmt: skip
            peak = max(peak, _wait_idle(sensor.pid))
            roles = _split(ticks0, _ticks_by(_tree(sensor.pid)), sensor.pid)
            steady_s = sum(roles.values())
            sensor.send_signal(signal.SIGTERM)
            sensor.wait(timeout=60)
            err = lines.text()
            sensor_cpu = _cpu() - cpu0 - polls_cpu - replay_cpu_s
        finally:
            if sensor.poll() is None:
                sensor.kill()
                sensor.wait()
    if sensor.returncode != 0 or not stats_path.exists():
        sys.exit(f"bench: sensor live exited {sensor.returncode}: {err.strip()[-400:]}")
    stats = json.loads(stats_path.read_text().splitlines()[0])
    iface = stats.get("interfaces", {}).get(SRV_IF, {})
    m = _RATED.search(report)
    sent = re.search(r"Actual: (\d+) packets", report)
    tcp = stats["tcp"]
    return {
        "build": "reference" if reference else "this",
        "workers": workers,
        "cpus": cpus,
        "rate": rate,
        "reached_pps": float(m.group(1)) if m else 0.0,
        "sent": int(sent.group(1)) if sent else 0,
        "seen": stats["capture"]["packets"],
        "kernel_drops": iface.get("dropped", 0),
        "if_drops": iface.get("if_dropped", 0),
        "loss": {k: v for k, v in tcp.items() if "ack" in k or "loss" in k or k == "gaps"},
        "alerts": stats.get("detect", {}).get("alerts_by_kind", {}),
        "table": {k: tcp.get(k, 0) for k in ("active_peak", "linger_cut", "evicted_memcap",
                                             "evicted_half_open", "evicted_lru")},
        "cpu_s": sensor_cpu,
        "steady_cpu_s": steady_s,
        "steady_by_role_s": roles,
        "rss_mb": peak / 2**20,
        "rss_by_role_mb": {k: round(v / 2**20, 1) for k, v in _ROLE_PEAK.items()},
    }


def _wait_capturing(net: VethNet, sensor: subprocess.Popen[str], lines: LineReader,
                    workers: int) -> None:  # fmt: skip
    """Until every handle filters (with workers, the sensor says so once all are in the group)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    if workers > 1:
        if not lines.wait_for("sensor: capturing on", START_TIMEOUT_S):
            sensor.kill()
            sys.exit(f"bench: sensor never started capturing: {lines.text().strip()[-400:]}")
        return
    while not has_packet_filter(net.srv_ns, sensor.pid):
        if sensor.poll() is not None or time.monotonic() > deadline:
            sensor.kill()
            sys.exit(f"bench: sensor never started capturing: {lines.text().strip()[-400:]}")
        time.sleep(0.05)


def _replay_polling(net: VethNet, pcap: Path, rate: str, limit: int | None,
                    pid: int, cpu: int | None) -> tuple[str, int, float]:  # fmt: skip
    """Run tcpreplay (in a thread) while sampling the sensor's RSS; (report, peak RSS, CPU
    seconds tcpreplay used)."""
    out: list[str] = []
    cpu0 = _cpu()
    args: dict[str, Any] = {"topspeed": True} if rate == "top" else {"pps": int(rate)}
    target = pcap
    if limit is not None:
        target = _limited(pcap, limit)
    th = threading.Thread(target=lambda: out.append(replay(net, str(target), timeout_s=3600,
                                                          cpu=cpu, **args)))  # fmt: skip
    th.start()
    peak = 0
    while th.is_alive():
        peak = max(peak, _rss(_tree(pid)))
        th.join(PSS_POLL_S)
    if not out:
        sys.exit("bench: tcpreplay failed")
    return out[0], peak, _cpu() - cpu0


def _limited(pcap: Path, limit: int) -> Path:
    """The first `limit` frames of `pcap` (editcap), made once."""
    out = pcap.with_name(f"{pcap.stem}-first{limit}.pcap")
    if not out.exists():
        require("editcap")
        subprocess.run(["editcap", "-r", str(pcap), str(out), f"1-{limit}"], check=True)
    return out


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument("--rates", default=DEFAULT_RATES,
                    help="replay rates in packets/s, 'top' for tcpreplay --topspeed")
    ap.add_argument("--workers-list", default="1,2", help="worker counts to run")
    ap.add_argument("--limit", type=int, default=None,
                    help="replay only the first N frames of the workload")
    ap.add_argument("--no-detect", action="store_true",
                    help="no detection (by default alerts are computed, as a service would)")
    ap.add_argument("--workload", choices=("smtp_only_3m", "smtp_only_500k"),
                    default="smtp_only_3m", help="capture replayed (default %(default)s)")
    ap.add_argument("--reference", default=None, metavar="DIR",
                    help="also run each replay with the sensor of this checkout (another "
                         "revision, its extensions built in place: `python setup.py build_ext "
                         "--inplace`), alternating with this one, and print the ratios")
    ap.add_argument("--replay-cpu", default="last", metavar="N|last|none",
                    help="the core tcpreplay runs on: a core of its own, as on a real tap the "
                         "sender is another machine; the kernel's side of each send (the veth, "
                         "the copy into the sensor's ring) runs there too. Default: the last "
                         "core (none with a single core); none: wherever the scheduler puts it")
    ap.add_argument("--sensor-cpus", default="auto", metavar="LIST|auto|none",
                    help="the sensor's --cpus (its capture processes' cores). Default auto: "
                         "every core but tcpreplay's, when there are at least as many as "
                         "capture processes (else none), as a deployment would keep the cores "
                         "that take the NIC's interrupts apart. A reference build without "
                         "--cpus runs unpinned (the cpus column says so)")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the rows here")
    ap.add_argument("--records", action="store_true",
                    help="also keep each run's connections and sessions in the workdir (costs "
                         "the sensor CPU: not for the figures)")
    ns = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, packet capture)")
    require("tcpreplay", "ip")
    workdir = Path(ns.workdir)
    pcap = ensure_workload(ns.workload, workdir)
    rates = [r.strip() for r in ns.rates.split(",") if r.strip()]
    counts = [int(w) for w in ns.workers_list.split(",")]
    rows: list[dict[str, Any]] = []
    if ns.reference and not (Path(ns.reference) / "sensor" / "cli.py").is_file():
        sys.exit(f"bench: --reference {ns.reference}: not a checkout of port25-sensor")
    builds = [None, ns.reference] if ns.reference else [None]
    ncpu = os.cpu_count() or 1
    if ns.replay_cpu == "none" or (ns.replay_cpu == "last" and ncpu < 2):
        replay_cpu = None
    elif ns.replay_cpu == "last":
        replay_cpu = ncpu - 1
    elif ns.replay_cpu.isdigit() and int(ns.replay_cpu) < ncpu:
        replay_cpu = int(ns.replay_cpu)
    else:
        sys.exit(f"bench: --replay-cpu {ns.replay_cpu}: expected a core number below {ncpu}, "
                 "last or none")
    head = (f"{'build':>9} {'workers':>7} {'cpus':>5} {'rate':>8} {'reached pps':>12} {'sent':>9} "
            f"{'seen':>9} {'k.drops':>8} {'if.drops':>8} {'cpu s':>7} {'parent us':>9} "
            f"{'mem MB':>7} {'alerts':>6}  loss, table")  # fmt: skip
    # The interpreter's build counts as much as the code: Debian's python3 ran the sensor in
    # 0.83x the CPU per packet of a CPython built from source with default options (pyenv).
    print(f"sensor: {sensor_exe()}, Python {platform.python_version()} "
          f"({os.path.realpath(sys.executable)}); tcpreplay on "
          f"{'any core' if replay_cpu is None else f'core {replay_cpu}'} of {ncpu}", flush=True)
    print(head, flush=True)
    for workers in counts:
        for rate in rates:
            for build in builds:
                row = run_once(pcap, workers, rate, ns.limit, not ns.no_detect, workdir,
                               ns.records, build, replay_cpu,
                               _sensor_cpus(ns.sensor_cpus, workers, replay_cpu))
                rows.append(row)
                _print_row(row)
    _ratios([r for r in rows if r["build"] == "this"], counts)
    if ns.reference:
        _against_reference(rows, counts)
    if ns.json_path:
        Path(ns.json_path).write_text(json.dumps(rows, indent=1))


def _sensor_cpus(choice: str, workers: int, replay_cpu: int | None) -> str:
    """The --cpus of a run with `workers` capture processes (--sensor-cpus)."""
    if choice == "none":
        return ""
    if choice != "auto":
        return choice
    free = [c for c in sorted(os.sched_getaffinity(0)) if c != replay_cpu]
    if replay_cpu is None or len(free) < workers:
        return ""
    return ",".join(map(str, free))


def _print_row(row: dict[str, Any]) -> None:
    """One run; `parent us`: the sensor's own process (the packet loop), steady-state CPU per
    packet seen. A run drops when that passes the time between two packets (3.33 us at
    300,000/s), which on a shared machine depends on its load as much as on the code."""
    workers, rate = row["workers"], row["rate"]
    parent_us = row["steady_by_role_s"]["parent"] / max(1, row["seen"]) * 1e6
    print(f"{row['build']:>9} {workers:>7} {row['cpus'] or '-':>5} {rate:>8} "
          f"{row['reached_pps']:>12,.0f} {row['sent']:>9,} {row['seen']:>9,} "
          f"{row['kernel_drops']:>8,} {row['if_drops']:>8,} "
          f"{row['cpu_s']:>7.2f} {parent_us:>9.2f} {row['rss_mb']:>7.1f} "
          f"{sum(row['alerts'].values()):>6,}  "
          f"{json.dumps(row['loss'])} {json.dumps(row['table'])} "
          f"{json.dumps(row['rss_by_role_mb'])}", flush=True)  # fmt: skip


def _against_reference(rows: list[dict[str, Any]], counts: list[int]) -> None:
    """This build against the reference, per worker count: packets seen, and the steady CPU per
    packet seen (both summed over the rates, which ran alternately)."""
    print(f"\n{'workers':>7} {'seen':>11} {'seen ref':>11} {'x ref':>6} {'us/pkt':>7} "
          f"{'us/pkt ref':>10} {'x ref':>6}")  # fmt: skip
    for w in counts:
        figs = {}
        for build in ("this", "reference"):
            mine = [r for r in rows if r["workers"] == w and r["build"] == build]
            seen = sum(r["seen"] for r in mine)
            figs[build] = (seen, sum(r["steady_cpu_s"] for r in mine) / seen * 1e6 if seen else 0.0)
        (s, c), (rs, rc) = figs["this"], figs["reference"]
        print(f"{w:>7} {s:>11,} {rs:>11,} {s / rs if rs else 0:>6.3f} {c:>7.2f} {rc:>10.2f} "
              f"{c / rc if rc else 0:>6.3f}")  # fmt: skip


def _ratios(rows: list[dict[str, Any]], counts: list[int]) -> None:
    """Per worker count against the first: best rate without drops, top-speed packets seen/s,
    CPU per packet; and a paper estimate for more cores."""
    ref = counts[0]
    best: dict[int, float] = {}
    top: dict[int, float] = {}
    cost: dict[int, float] = {}
    for w in counts:
        mine = [r for r in rows if r["workers"] == w]
        clean = [r["reached_pps"] for r in mine
                 if r["kernel_drops"] == 0 and r["seen"] >= r["sent"]]  # fmt: skip
        best[w] = max(clean, default=0.0)
        tops = [r for r in mine if r["rate"] == "top"]
        if tops:
            t = tops[0]
            top[w] = t["reached_pps"] * (t["seen"] / t["sent"]) if t["sent"] else 0.0
        seen = sum(r["seen"] for r in mine)
        cost[w] = sum(r["steady_cpu_s"] for r in mine) / seen * 1e6 if seen else 0.0
    print()
    print(f"{'workers':>7} {'best no-drop pps':>17} {'x ' + str(ref):>6} "
          f"{'top: seen pps':>14} {'x ' + str(ref):>6} {'cpu us/pkt':>11}")  # fmt: skip
    for w in counts:
        b = f"{best[w] / best[ref]:.2f}" if best[ref] else "n/a"
        tx = f"{top.get(w, 0.0) / top[ref]:.2f}" if top.get(ref) else "n/a"
        print(f"{w:>7} {best[w]:>17,.0f} {b:>6} {top.get(w, 0.0):>14,.0f} {tx:>6} "
              f"{cost[w]:>11.2f}")  # fmt: skip
    print("(best no-drop pps: the highest rate tcpreplay reached with every packet seen and no "
          "kernel drop; 0: none of the rates tried)")
    _estimate(rows, counts)


def _estimate(rows: list[dict[str, Any]], counts: list[int]) -> None:
    """Where the CPU went, per process role, and the rate each worker count would take with a
    core per process (tcpreplay, here on the same 2 cores, elsewhere on its own): one process is
    bound by its own cost per packet; N workers by N cores over the workers' cost per packet,
    or by the parent's merge and detection, whichever is lower."""
    print(f"\n{'workers':>7} {'parent us/pkt':>14} {'workers us/pkt':>15} {'model us/pkt':>13} "
          f"{'pps, a core each':>17} {'x 1 process':>12}")  # fmt: skip
    single = 0.0
    for w in counts:
        mine = [r for r in rows if r["workers"] == w]
        seen = sum(r["seen"] for r in mine)
        if not seen:
            continue
        us = {role: sum(r["steady_by_role_s"][role] for r in mine) / seen * 1e6
              for role in ("parent", "workers", "model")}  # fmt: skip
        if w == 1 or not us["workers"]:  # one process does everything
            rate = 1e6 / us["parent"] if us["parent"] else 0.0
            single = single or rate
        else:
            rate = min(w * 1e6 / us["workers"], 1e6 / us["parent"] if us["parent"] else math.inf)
        ratio = f"{rate / single:.2f}" if single else "n/a"
        print(f"{w:>7} {us['parent']:>14.2f} {us['workers']:>15.2f} {us['model']:>13.2f} "
              f"{rate:>17,.0f} {ratio:>12}")  # fmt: skip
    print("(steady-state CPU per packet seen; the model scorer is a child process of its own)")

if __name__ == "__main__":
    main()
