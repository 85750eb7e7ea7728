#!/usr/bin/env python3
"""Archive throughput on Dask: one process against `--cluster local:N` over a rotated archive.

The archive is a benchmark workload (scripts/benchlib.py) repeated, each copy later in packet
time than the one before, until it reaches --archive-mb, then cut into files of --file-mb as
`tcpdump -C` does. --stretch spreads each copy's packets over that many times their packet time
(the workload packs 500,000 SMTP frames in 10 s, far denser than any port-25 tap: the worst case
for the read-on of the stitching, docs/scaling.md); --gzip compresses each file as `tcpdump -z
gzip` does. Two sets of runs analyse every file: with sessions and connections written (to
/dev/null), then with alerts as well, whose detection runs in the client alone; each set times
one process, the cluster and `--workers N` (the best one machine does without Dask; --workers 1
skips it). The cluster's times include starting its worker processes. The ratios printed are
one process's wall time over the other's, and the CPU seconds of all processes of a run over one
process's (its overhead); for the cluster, its workers' and the client's CPU seconds too. The
issue's target: 1.7x with 2 workers on a 2 GB archive, on a quiet 2-core machine:
`--archive-mb 2048 --file-mb 100` (realistic: add `--stretch 60 --gzip`).

    .venv/bin/python scripts/bench_cluster.py --archive-mb 200 --file-mb 25 --repeat 1
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib

from sensor.cluster.split import PCAP_HEADER, RECORD_HEADER, split_by_size

_MB = 1 << 20


def make_archive(workload: Path, archive_mb: int, file_mb: int, stretch: float,
                 workdir: Path, compress: bool = False) -> list[str]:
    """The rotated archive's files (made once per size, stretch and compression in workdir)."""
    out = workdir / (f"archive-{workload.stem}-{archive_mb}mb-{file_mb}mb-x{stretch:g}"
                     + ("-gz" if compress else ""))
    done = out / "done"
    if done.exists():
        return sorted(str(p) for p in out.glob("*.pcap.gz" if compress else "*.pcap"))
    out.mkdir(parents=True, exist_ok=True)
    data = workload.read_bytes()
    head = data[:PCAP_HEADER]
    order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    unit = 1e9 if head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    rec = struct.Struct(order + "IIII")
    records: list[tuple[int, bytes, bytes]] = []
    off = PCAP_HEADER
    t0: float | None = None
    while off + RECORD_HEADER <= len(data):
        sec, frac, caplen, wire = rec.unpack_from(data, off)
        body = data[off + RECORD_HEADER : off + RECORD_HEADER + caplen]
        if stretch != 1.0:
            ts = sec + frac / unit
            t0 = ts if t0 is None else t0
            ts = t0 + (ts - t0) * stretch
            sec, frac = int(ts), min(int((ts - int(ts)) * unit), int(unit) - 1)
        records.append((sec, struct.pack(order + "III", frac, caplen, wire), body))
        off += RECORD_HEADER + caplen
    if not records:
        sys.exit(f"bench: {workload} holds no packet")
    span = records[-1][0] - records[0][0] + 600  # copies 10 min apart: no connection overlaps
    whole = out / "whole.tmp"
    print(f"making a {archive_mb} MB archive of {workload.name} in {out} ...", flush=True)
    with open(whole, "wb") as fh:
        fh.write(head)
        size, copy = PCAP_HEADER, 0
        while size < archive_mb * _MB:
            shift = copy * span
            for sec, rest, body in records:
                fh.write(struct.pack(order + "I", sec + shift) + rest + body)
                size += RECORD_HEADER + len(body)
            copy += 1
    parts = split_by_size(str(whole), file_mb * _MB, str(out), stem="smtp.pcap.")
    whole.unlink()
    if compress:  # as `tcpdump -G ... -z gzip` leaves them (gzip's default level)
        for part in parts:
            with open(part, "rb") as src, gzip.open(part + ".gz", "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.unlink(part)
        parts = [part + ".gz" for part in parts]
    done.write_text("ok\n")
    return sorted(parts)


def main() -> None:
    ap = benchlib.common_arguments(__doc__)
    ap.add_argument("--archive-mb", type=int, default=200,
                    help="archive size, at least one copy of the workload (default 200)")
    ap.add_argument("--file-mb", type=int, default=25, help="size of each file (default 25)")
    ap.add_argument("--stretch", type=float, default=1.0,
                    help="packet time of each copy, times the workload's (default 1)")
    ap.add_argument("--gzip", action="store_true",
                    help="compress each file with gzip, as `tcpdump -z gzip` does")
    ap.add_argument("--workload", default="smtp_only_500k", choices=sorted(benchlib.WORKLOADS),
                    help="benchmark workload the archive repeats")
    ap.add_argument("--cluster-workers", type=int, default=2,
                    help="LocalCluster worker processes (default 2)")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workload = benchlib.ensure_workload(args.workload, workdir)
    files = make_archive(workload, args.archive_mb, args.file_mb, args.stretch, workdir,
                         args.gzip)
    exe = benchlib.sensor_exe()
    records = ["-q", "--conns", "/dev/null", "--sessions", "/dev/null"]
    local = f"local:{args.cluster_workers}"
    n = args.cluster_workers
    ceiling = f"records: {n} plain processes"
    cmds: dict[str, list[list[str]]] = {}
    for mode, outputs in (("records", records), ("+alerts", [*records, "--alerts", "/dev/null"])):
        cmds[f"{mode}: one process"] = [[exe, "analyze", *outputs, *files]]
        if mode == "records":  # the cores' own ceiling: no Dask, no merge, no stitching
            cmds[ceiling] = [[exe, "analyze", *outputs, *part] for part in _shares(files, n)]
        cmds[f"{mode}: --cluster {local}"] = [[exe, "analyze", "--cluster", local, *outputs,
                                               *files]]  # fmt: skip
        if args.workers > 1:
            cmds[f"{mode}: --workers {args.workers}"] = [[exe, "analyze", "--workers",
                                                          str(args.workers), *outputs, *files]]
    rows, split = _median_runs(cmds, args.repeat)
    size = sum(Path(f).stat().st_size for f in files)
    print(f"archive: {len(files)} files, {size / _MB:,.0f} MB"
          f"{' (gzip)' if args.gzip else ''}, stretch {args.stretch:g}; "
          f"median of {args.repeat} runs")
    print(f"{'run':<34}{'wall s':>9}{'CPU s':>9}{'MB/s':>9}{'workers CPU':>13}{'client CPU':>12}")
    for name, (wall, _rss, cpu) in rows.items():
        parts = (f"{split[name][0]:>13.2f}{split[name][1]:>12.2f}" if name in split else "")
        print(f"{name:<34}{wall:>9.2f}{cpu:>9.2f}{size / _MB / wall:>9.1f}{parts}")
    one, top = rows["records: one process"], rows[ceiling]
    print(f"{ceiling} (each on a contiguous share of the files, at once): {one[0] / top[0]:.2f}x,"
          f" CPU {top[2] / one[2]:.2f}x one process's: the most any {n}-way split reaches on "
          f"these cores")
    for mode in ("records", "+alerts"):
        one, cluster = rows[f"{mode}: one process"], rows[f"{mode}: --cluster {local}"]
        print(f"{mode}: --cluster {local} speed-up {one[0] / cluster[0]:.2f}x, "
              f"CPU {cluster[2] / one[2]:.2f}x one process's (target, 2 GB, 2 workers on 2 "
              f"cores: 1.7x)")
        if args.workers > 1:
            par = rows[f"{mode}: --workers {args.workers}"]
            print(f"{mode}: --workers {args.workers} speed-up {one[0] / par[0]:.2f}x, "
                  f"CPU {par[2] / one[2]:.2f}x one process's")


_SPLIT = re.compile(r"CPU seconds: workers ([0-9.]+), this process \(client, scheduler, "
                    r"nannies\) ([0-9.]+)")


def _shares(files: list[str], n: int) -> list[list[str]]:
    """The files cut into n runs of consecutive files of about equal bytes."""
    sizes = [Path(f).stat().st_size for f in files]
    total, out, acc = sum(sizes), [[] for _ in range(n)], 0
    for path, size in zip(files, sizes, strict=True):
        out[min(n - 1, int(n * (acc + size / 2) / total))].append(path)
        acc += size
    return [share for share in out if share]


def _median_runs(cmds: dict[str, list[list[str]]], repeat: int
                 ) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float]]]:
    """`benchlib.median_runs_cpu` of each group of commands run at once (wall time until the
    last ends, CPU seconds summed), and for the cluster runs the median CPU seconds of their
    workers and of the client process, from the run's last line on stderr."""
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in cmds}
    splits: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeat):
        for name, group in cmds.items():
            t0 = time.perf_counter()
            procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for cmd in group]  # fmt: skip
            err, rss, cpu = "", 0.0, 0.0
            for cmd, proc in zip(group, procs, strict=True):
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                _, status, usage = os.wait4(proc.pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    sys.exit(f"bench: {' '.join(cmd)} failed: {err.strip()[-400:]}")
                rss = max(rss, usage.ru_maxrss / 1024.0)
                cpu += usage.ru_utime + usage.ru_stime
            wall = time.perf_counter() - t0
            runs[name].append((wall, rss, cpu))
            found = _SPLIT.search(err)
            if found:
                splits.setdefault(name, []).append((float(found[1]), float(found[2])))
    rows = {name: (statistics.median(r[0] for r in got), max(r[1] for r in got),
                   statistics.median(r[2] for r in got)) for name, got in runs.items()}
    split = {name: (statistics.median(w for w, _ in got), statistics.median(c for _, c in got))
             for name, got in splits.items()}
    return rows, split

if __name__ == "__main__":
    main()
