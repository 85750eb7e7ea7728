"""Feature-stage benchmark: HostTable over a simulated capture's records, this tree against a ref.

    python scripts/bench_features.py [--ref main] [--scenario site-500] [--seed 1] [--rounds 5]

Writes the capture with `sensor simulate` (once, in --workdir), then runs a child process per
tree, alternating: each parses the capture into its own connection and session records (not
timed) and times, over the same records, (1) `HostTable.on_conn/on_session` alone, the rules'
path, (2) the same plus `vector(HostTable.snapshot(...))` of every host a record changed, the
model's path through snapshots, and (3) the same with `HostTable.vector` where the tree has it
(the reference falls back to (2)). The reference tree is `git archive REF`, run from source
like this tree (pure Python: run it in a venv installed with PORT25_PURE_PYTHON=1 so that both
sides are interpreted). Prints
records per second per tree and the ratios of this tree's times to the reference's (medians
over rounds; < 1.0 is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = {"table_s": "table updates", "snap_s": "+ snapshot vectors", "vector_s": "+ table vectors"}


def child(pcap: str, config: str | None, rounds: int) -> None:
    """Parse the capture, then time the feature table over its records; one JSON line out."""
    import sensor
    from sensor.capture.bpf import build_filter
    from sensor.capture.source import open_files
    from sensor.config import load_config
    from sensor.features import HostTable, vector
    from sensor.pipeline import Pipeline, limits_from_config
    from sensor.records import ConnRecord, SmtpSession

    cfg = load_config(config)
    records: list[ConnRecord | SmtpSession] = []
    pipe = Pipeline(ports=(25,), on_conn=records.append, on_session=records.append,
                    tcp_limits=limits_from_config(cfg), smtp_limits=cfg.smtp)

    def on_error(path: str, message: str) -> None:
        sys.exit(f"bench: {path}: {message}")

    pipe.run(open_files([pcap], build_filter(), pipe.capture_stats, on_error))
    pipe.finish()
    plan = [(isinstance(r, SmtpSession), r) for r in records]
    sessions = sum(1 for is_session, _ in plan if is_session)
    times: dict[str, list[float]] = {key: [] for key in MODES}
    fast = getattr(HostTable, "vector", None)
    for _ in range(rounds):
        for mode, out in times.items():
            table = HostTable(cfg)
            on_conn, on_session, snapshot = table.on_conn, table.on_session, table.snapshot
            t0 = time.perf_counter()
            for is_session, rec in plan:
                changed = on_session(rec) if is_session else on_conn(rec)  # type: ignore[arg-type]
                if mode == "table_s":
                    continue
                for st, _mask in changed:
                    if mode == "vector_s" and fast is not None:
                        fast(st)
                    else:
                        vector(snapshot(st))
            out.append(time.perf_counter() - t0)
    print(json.dumps({"module": sensor.__file__, "records": len(plan), "sessions": sessions,
                      **times}))


def run_child(tree: Path, pcap: Path, config: str | None, rounds: int) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(pcap),
           "--rounds", str(rounds)]
    if config:
        cmd += ["--config", config]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        sys.exit(f"bench: child for {tree} failed: {out.stderr.strip()[-600:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    if not str(result["module"]).startswith(str(tree)):
        sys.exit(f"bench: the child for {tree} imported {result['module']}")
    return result


def export(ref: str, dest: Path) -> Path:
    """The tree of `ref` (a commit or branch of this repository), unpacked under dest."""
    tar = dest / "ref.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), ref, "sensor"], check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(dest / "ref", filter="data")
    return dest / "ref"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", metavar="PCAP", help=argparse.SUPPRESS)
    ap.add_argument("--ref", default="main", help="git ref to compare with (default: main)")
    ap.add_argument("--scenario", default="site-500")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="timed passes per child")
    ap.add_argument("--runs", type=int, default=3, help="children per tree, alternating")
    ap.add_argument("--config", default=str(ROOT / "pcaps" / "demo.toml"),
                    help="site TOML (default: pcaps/demo.toml, the simulated campus)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_feat")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.config, args.rounds)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    pcap = args.workdir / f"{args.scenario}-seed{args.seed}.pcap"
    if not pcap.exists():
        print(f"simulating {args.scenario} seed {args.seed} -> {pcap} ...", flush=True)
        subprocess.run([sys.executable, "-m", "sensor", "simulate", args.scenario,
                        "--seed", str(args.seed), "-o", str(pcap)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    config = args.config
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": ROOT, args.ref: export(args.ref, Path(tmp))}
        times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in MODES} for n in trees}
        info: dict[str, dict[str, object]] = {}
        for _ in range(args.runs):
            for name, tree in trees.items():
                res = run_child(tree, pcap, config, args.rounds)
                info[name] = res
                for key in MODES:
                    times[name][key].extend(res[key])  # type: ignore[arg-type]
    ref = args.ref
    first = info["this tree"]
    print(f"{pcap.name}: {first['records']} records ({first['sessions']} sessions), "
          f"{args.runs} x {args.rounds} rounds per tree")
    for key, label in MODES.items():
        med = {n: statistics.median(t[key]) for n, t in times.items()}
        rates = ", ".join(f"{n}: {int(first['records']) / s:,.0f} records/s"  # type: ignore[call-overload]
                          for n, s in med.items())
        print(f"{label:22s} {rates}; this tree / {ref} = {med['this tree'] / med[ref]:.3f}")


if __name__ == "__main__":
    main()
