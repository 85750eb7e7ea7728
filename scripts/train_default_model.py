#!/usr/bin/env python3
"""Train the bundled model, models/default.skops, reproducibly from benign simulated traffic.

Simulates the benign scenarios with fixed seeds (disjoint from the seeds tests and evaluations
use: 1-99), collects host windows with pcaps/demo.toml's site, and fits the default detector with
seed 0. Run from the repository root; the same sensor version gives the same scores.

    .venv/bin/python scripts/train_default_model.py [--out models/default.skops] [--detector D]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sensor.config import load_config
from sensor.detect import model as host_model
from sensor.detect import train
from sensor.simulate import load_scenario, simulate

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pcaps" / "demo.toml"
# (scenario, seed, duration in seconds): the small campus at several hours of the day, and the
# busy site with its newsletters, backup MX flush, monitoring probes and 150 printers.
TRAINING = (
    ("benign", 1001, 7200.0),
    ("benign", 1002, 7200.0),
    ("benign", 1003, 7200.0),
    ("site-benign", 1001, 3600.0),
    ("site-benign", 1002, 3600.0),
    ("site-benign", 1003, 3600.0),
    ("site-benign", 1004, 3600.0),
)
SEED = 0


def simulate_training(out_dir: Path) -> list[str]:
    """Write the training captures; returns their paths."""
    paths = []
    for name, seed, duration in TRAINING:
        path = out_dir / f"{name}-{seed}.pcap"
        simulate([load_scenario(name)], str(path), seed=seed, duration_s=duration)
        paths.append(str(path))
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "models" / "default.skops"))
    ap.add_argument("--detector", default=host_model.DEFAULT_DETECTOR,
                    choices=host_model.DETECTORS)
    ap.add_argument("--contamination", type=float, default=0.0)
    args = ap.parse_args()
    cfg = load_config(str(CONFIG))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="port25-train-") as tmp:
        paths = simulate_training(Path(tmp))
        simulated = time.perf_counter()
        got = train.from_captures(paths, cfg, (25, 587), "scripts/train_default_model.py",
                                  progress=False)
        collected = time.perf_counter()
        got.data.files = [Path(p).name for p in paths]
        w = cfg.windows
        model = host_model.fit(got.data, detector=args.detector, seed=SEED,
                               contamination=args.contamination,
                               windows={"short": w.short_s, "medium": w.medium_s,
                                        "long": w.long_s})
        fitted = time.perf_counter()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    host_model.save(model, args.out)
    rows = len(got.data.X)
    sys.stdout.write(
        f"{args.out}: {args.detector}, {rows:,} host-windows from {len(paths)} captures "
        f"({got.packets:,} packets); threshold {model.threshold:.4f}; simulate "
        f"{simulated - began:.1f} s, collect {collected - simulated:.1f} s, fit "
        f"{fitted - collected:.1f} s "
        f"({rows / max(fitted - collected, 1e-9):,.0f} host-windows/s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
