"""The live sensor's CPU per packet at a given rate, without a replay: a steadier A/B than
scripts/bench_live.py for a change of code.

The SMTP-only workload gets the timestamps tcpreplay --pps RATE gives its packets on the wire
(evenly spaced), so `sensor analyze` on it holds the connection table a live sensor holds at that
rate (the linger and the memcap run on packet time); then it is analysed with detection (no
model), alternately by this checkout and a reference one (`--reference DIR`, built in place:
`python setup.py build_ext --inplace`). CPU seconds (user + system) are counted per process, so a
neighbour's load weighs less than on the live replay, where tcpreplay shares the machine; the
start-up is taken off with a run on the first STARTUP packets.

What it does not count: the capture (the kernel ring, pcapy's batches, the C decode loop of
`sensor live`: the Python decoder runs here) and the model scorer's process. bench_live.py stays
the measure of the live target; this one says whether a change moves it.

With --batched, the live per-packet path instead: the paced capture is read into libpcap batches
(pcapy's next_batch, as `sensor live` gets them) before the clock starts, then a Pipeline in the
measuring process decodes and feeds them in the C batch loop, reassembles and parses (no
detection, no outputs), with the collector settings of the CLI; the CPU of that alone is
counted.

    python scripts/bench_paced.py --rate 300000 --reference /tmp/ref
    python scripts/bench_paced.py --rate 300000 --reference /tmp/ref --batched --packets 400000
"""

from __future__ import annotations

import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from benchlib import common_arguments, ensure_workload, sensor_exe

STARTUP = 20_000
_USEC_MAGIC = (0xA1B2C3D4, 1_000_000)
_NSEC_MAGIC = (0xA1B23C4D, 1_000_000_000)


def paced(src: Path, out: Path, packets: int, rate: float) -> int:
    """Write the first `packets` records of the pcap `src` to `out` with the i-th at i / rate
    seconds after the first; returns the records written."""
    with src.open("rb") as f, out.open("wb") as o:
        head = f.read(24)
        if len(head) < 24:
            sys.exit(f"bench: {src}: not a pcap file (no 24-byte header)")
        for order in ("<", ">"):
            (magic,) = struct.unpack(order + "I", head[:4])
            per_s = dict((_USEC_MAGIC, _NSEC_MAGIC)).get(magic)
            if per_s is not None:
                break
        else:
            sys.exit(f"bench: {src}: not a pcap file (magic {head[:4].hex()})")
        rec = struct.Struct(order + "IIII")
        o.write(head)
        t0 = None
        n = 0
        while n < packets:
            raw = f.read(16)
            if len(raw) < 16:
                break
            sec, _, caplen, origlen = rec.unpack(raw)
            t0 = sec if t0 is None else t0
            ticks = round(n * per_s / rate)
            o.write(rec.pack(t0 + ticks // per_s, ticks % per_s, caplen, origlen))
            o.write(f.read(caplen))
            n += 1
    return n


def cpu_of(pcap: Path, reference: str | None) -> float:
    """CPU seconds of `sensor analyze` on `pcap` (detection, no model)."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    if reference:
        env["PYTHONPATH"] = reference
    cmd = [sensor_exe(), "analyze", "-q", str(pcap), "--alerts", os.devnull, "--no-model"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed: {err.strip()[-400:]}")
    return usage.ru_utime + usage.ru_stime


_BATCHED = """
import sys, time
import pcapy
from sensor.capture.common import BatchedFrames
from sensor.pipeline import Pipeline

handle = pcapy.open_offline(sys.argv[1])
batches = []
while True:
    packets, meta = handle.next_batch(512)
    if not meta:
        break
    batches.append((packets, meta))


class Batches(BatchedFrames):
    linktype = handle.datalink()

    def batches(self):
        return iter(batches)

    def __next__(self):
        raise StopIteration


from sensor.cli import _tune_gc

_tune_gc()  # the collector settings every command runs with
pipe = Pipeline()
t = time.process_time()
pipe.run(Batches())
pipe.finish()
print(time.process_time() - t)
"""


def batched_cpu_of(pcap: Path, reference: str | None) -> float:
    """CPU seconds of the live per-packet path (C batch loop, reassembly, parsing) on `pcap`,
    its batches read beforehand."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    if reference:
        env["PYTHONPATH"] = reference
    out = subprocess.run([sys.executable, "-c", _BATCHED, str(pcap)], env=env, cwd="/",
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: the batched run on {pcap} failed: {out.stderr.strip()[-400:]}")
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = common_arguments(__doc__)
    ap.add_argument("--rate", type=float, default=300_000.0, help="packets per second")
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets analysed")
    ap.add_argument("--reference", metavar="DIR",
                    help="another checkout of port25-sensor, its extensions built in place")
    ap.add_argument("--batched", action="store_true",
                    help="time the live per-packet path (libpcap batches, no detection)")
    ns = ap.parse_args()
    if ns.reference and not (Path(ns.reference) / "sensor" / "cli.py").is_file():
        sys.exit(f"bench: --reference {ns.reference}: not a checkout of port25-sensor")
    if ns.packets <= STARTUP:
        sys.exit(f"bench: --packets must be above {STARTUP:,}")
    workdir = Path(ns.workdir)
    src = ensure_workload("smtp_only_3m", workdir)
    tag = f"{int(ns.rate)}-{ns.packets}"
    big, small = workdir / f"paced-{tag}.pcap", workdir / f"paced-{tag}-startup.pcap"
    if not big.exists() or not small.exists():
        n = paced(src, big, ns.packets, ns.rate)
        paced(big, small, STARTUP, ns.rate)
    else:
        n = ns.packets
    builds = {"this": None, **({"reference": ns.reference} if ns.reference else {})}
    what = "the live per-packet path (batched)" if ns.batched else f"sensor: {sensor_exe()}"
    print(f"{what}, Python {platform.python_version()} "
          f"({os.path.realpath(sys.executable)}); {n:,} packets paced at {ns.rate:,.0f}/s")
    per_packet: dict[str, list[float]] = {b: [] for b in builds}
    t0 = time.monotonic()
    for _ in range(ns.repeat):  # in turn: a load that comes and goes weighs on each build
        for name, where in builds.items():
            if ns.batched:
                cpu = batched_cpu_of(big, where) - batched_cpu_of(small, where)
            else:
                cpu = cpu_of(big, where) - cpu_of(small, where)
            per_packet[name].append(cpu / (n - STARTUP) * 1e6)
    print(f"{'build':>9} {'us/pkt min':>10} {'median':>7} {'pps a core':>11}  runs")
    for name, got in per_packet.items():
        print(f"{name:>9} {min(got):>10.2f} {statistics.median(got):>7.2f} "
              f"{1e6 / min(got):>11,.0f}  {' '.join(f'{v:.2f}' for v in got)}")
    if ns.reference:
        this, ref = per_packet["this"], per_packet["reference"]
        pairs = sorted(a / b for a, b in zip(this, ref, strict=True))
        print(f"x reference: min {min(this) / min(ref):.3f}, median of the pairs "
              f"{statistics.median(pairs):.3f} ({len(pairs)} pairs, {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    main()
