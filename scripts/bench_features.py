"""Feature-stage benchmark: HostTable over a simulated capture's records, this tree against a ref.

    python scripts/bench_features.py [--ref main] [--scenario site-500] [--seed 1] [--rounds 15]

Writes the capture with `sensor simulate` (once, in --workdir). Both trees are loaded in this one
process (the reference is `git archive REF`, imported under its own module objects), each parses
the capture into its own connection and session records (not timed), and their feature stages
are timed over those records, rounds alternating between the trees so that the machine's other
load falls on both: (1) `HostTable.on_conn/on_session` alone, the rules' path; (2) the same plus
`vector(HostTable.snapshot(...))` of every host a record changed, the model's path through
snapshots; (3) the same with `HostTable.vector` where the tree has it (else as (2)). Both trees
run as interpreted Python (import from source: use a venv installed with PORT25_PURE_PYTHON=1).
Prints records per second and this tree's time over the reference's (the best round of each, as
other load only ever adds time; < 1.0 is faster).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = {"table": "table updates", "snap": "+ snapshot vectors", "vector": "+ table vectors"}


class Tree:
    """The feature stage of one source tree, imported apart from any other tree's."""

    def __init__(self, name: str, path: Path, config: str, pcap: Path) -> None:
        self.name = name
        for mod in [m for m in sys.modules if m == "sensor" or m.startswith("sensor.")]:
            del sys.modules[mod]
        sys.path.insert(0, str(path))
        try:
            import sensor
            from sensor.config import load_config
            from sensor.features import HostTable, vector

            # its own records: the other tree's would carry enum members of other classes
            self.plan = records(pcap, config)
        finally:
            sys.path.remove(str(path))
        if not str(sensor.__file__).startswith(str(path)):
            sys.exit(f"bench: {name}: imported {sensor.__file__}, not the tree at {path}")
        self.table_cls: Any = HostTable
        self.vector: Callable[[Any], list[float]] = vector
        self.config = load_config(config)
        self.best = {mode: float("inf") for mode in MODES}

    def run(self, mode: str) -> None:
        plan = self.plan
        table = self.table_cls(self.config)
        on_conn, on_session, snapshot = table.on_conn, table.on_session, table.snapshot
        fast = getattr(self.table_cls, "vector", None) if mode == "vector" else None
        vector = self.vector
        t0 = time.perf_counter()
        if mode == "table":
            for is_session, rec in plan:
                on_session(rec) if is_session else on_conn(rec)
        elif fast is not None:
            for is_session, rec in plan:
                for st, _mask in on_session(rec) if is_session else on_conn(rec):
                    fast(st)
        else:
            for is_session, rec in plan:
                for st, _mask in on_session(rec) if is_session else on_conn(rec):
                    vector(snapshot(st))
        self.best[mode] = min(self.best[mode], time.perf_counter() - t0)


def records(pcap: Path, config: str) -> list[tuple[bool, Any]]:
    """(is a session, record) of the capture, in the order the pipeline emits them, made by the
    tree being imported."""
    from sensor.capture.bpf import build_filter
    from sensor.capture.source import open_files
    from sensor.config import load_config
    from sensor.pipeline import Pipeline, limits_from_config
    from sensor.records import ConnRecord, SmtpSession

    cfg = load_config(config)
    out: list[ConnRecord | SmtpSession] = []
    pipe = Pipeline(ports=(25,), on_conn=out.append, on_session=out.append,
                    tcp_limits=limits_from_config(cfg), smtp_limits=cfg.smtp)

    def on_error(path: str, message: str) -> None:
        sys.exit(f"bench: {path}: {message}")

    pipe.run(open_files([str(pcap)], build_filter(), pipe.capture_stats, on_error))
    pipe.finish()
    return [(isinstance(r, SmtpSession), r) for r in out]


def export(ref: str, dest: Path) -> Path:
    """The `sensor` package of `ref` (a commit or branch of this repository), under dest."""
    tar = dest / "ref.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(tar), ref, "sensor"], check=True)
    with tarfile.open(tar) as tf:
        tf.extractall(dest / "ref", filter="data")
    return dest / "ref"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--ref", default="main", help="git ref to compare with (default: main)")
    ap.add_argument("--scenario", default="site-500")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=15, help="timed passes per tree and mode")
    ap.add_argument("--config", default=str(ROOT / "pcaps" / "demo.toml"),
                    help="site TOML (default: pcaps/demo.toml, the simulated campus)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_feat")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    pcap = args.workdir / f"{args.scenario}-seed{args.seed}.pcap"
    if not pcap.exists():
        print(f"simulating {args.scenario} seed {args.seed} -> {pcap} ...", flush=True)
        subprocess.run([sys.executable, "-m", "sensor", "simulate", args.scenario,
                        "--seed", str(args.seed), "-o", str(pcap)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    with tempfile.TemporaryDirectory() as tmp:
        ref = Tree(args.ref, export(args.ref, Path(tmp)), args.config, pcap)
        this = Tree("this tree", ROOT, args.config, pcap)
        if len(ref.plan) != len(this.plan):
            sys.exit(f"bench: the trees parse {len(ref.plan)} and {len(this.plan)} records")
        for r in range(args.rounds):
            for mode in MODES:
                for tree in (ref, this) if r % 2 == 0 else (this, ref):
                    tree.run(mode)
    plan = this.plan
    sessions = sum(1 for is_session, _ in plan if is_session)
    print(f"{pcap.name}: {len(plan)} records ({sessions} sessions), best of {args.rounds} "
          "rounds per tree and mode")
    for mode, label in MODES.items():
        rates = ", ".join(f"{t.name}: {len(plan) / t.best[mode]:,.0f} records/s"
                          for t in (this, ref))
        print(f"{label:20s} {rates}; this tree / {args.ref} = "
              f"{this.best[mode] / ref.best[mode]:.3f}")


if __name__ == "__main__":
    main()
