#!/usr/bin/env python3
"""Compare host-model detectors with `sensor evaluate`'s figures on unseen simulated captures.

Trains every detector of sensor.detect.model.DETECTORS on the bundled model's training data
(scripts/train_default_model.py), then evaluates each, with the rules, on captures simulated with
seeds the training never saw. Prints, per detector and capture: model-alone ROC AUC, PR AUC,
recall and false-positive hosts at the threshold, and the same for rules + model.

With --contaminated, also measures tolerance to attacks in the training archive: the models are
trained on site-500 (attackers included) with contamination 0 and with --contamination.

    .venv/bin/python scripts/compare_models.py [--detectors iforest,hbos] [--contaminated 0.02]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from train_default_model import CONFIG, simulate_training

from sensor.config import load_config
from sensor.detect import model as host_model
from sensor.detect import train
from sensor.detect.evaluate import host_level, read_labels, run_detection
from sensor.simulate import load_scenario, simulate

TESTS = (("demo", 11, None), ("demo", 12, None), ("site-500", 11, 3600.0))


def evaluate(model: host_model.HostModel | None, pcap: str, cfg: object) -> dict[str, object]:
    scores: list[dict[str, object]] = []
    alerts, _ = run_detection([pcap], cfg, model, scores, (25, 587))  # type: ignore[arg-type]
    labels = read_labels(str(Path(pcap).with_suffix(".labels.csv")))
    thr = model.threshold if model is not None else float("inf")
    return {k: v for k, v in host_level(labels, alerts, scores, thr).items()}


def row(name: str, test: str, modes: dict[str, object]) -> str:
    m, b = modes["model"], modes["both"]
    return (f"{name:<18} {test:<16} {m.roc_auc:>7.3f} {m.pr_auc:>7.3f} {m.recall:>6.2f} "  # type: ignore[attr-defined]
            f"{len(m.false_positive_hosts):>4} | {b.recall:>6.2f} "  # type: ignore[attr-defined]
            f"{len(b.false_positive_hosts):>4} {b.roc_auc:>7.3f}")  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", default=",".join(host_model.DETECTORS))
    ap.add_argument("--contaminated", type=float, default=0.0,
                    help="also train on site-500 with attacks, contamination 0 and this")
    args = ap.parse_args()
    cfg = load_config(str(CONFIG))
    w = cfg.windows
    windows = {"short": w.short_s, "medium": w.medium_s, "long": w.long_s}
    with tempfile.TemporaryDirectory(prefix="port25-compare-") as tmp_s:
        tmp = Path(tmp_s)
        data = train.from_captures(simulate_training(tmp), cfg, (25, 587), "compare",
                                   progress=False).data
        tests = []
        for name, seed, duration in TESTS:
            pcap = tmp / f"test-{name}-{seed}.pcap"
            simulate([load_scenario(name)], str(pcap), seed=seed, duration_s=duration)
            tests.append((f"{name}/{seed}", str(pcap)))
        sys.stdout.write(f"training: {len(data.X):,} host-windows\n")
        header = (f"{'detector':<18} {'capture':<16} {'ROC AUC':>7} {'PR AUC':>7} {'recall':>6} "
                  f"{'FPs':>4} | {'both: recall':>6} {'FPs':>4} {'ROC AUC':>7}")
        sys.stdout.write(header + "\n")
        for det in args.detectors.split(","):
            began = time.perf_counter()
            model = host_model.fit(data, detector=det, seed=0, windows=windows)
            fit_s = time.perf_counter() - began
            for test, pcap in tests:
                sys.stdout.write(row(det, test, evaluate(model, pcap, cfg)) + "\n")
            sys.stdout.write(f"{det:<18} fit {fit_s:.1f} s\n")
        if args.contaminated:
            dirty = tmp / "site-500-train.pcap"
            simulate([load_scenario("site-500")], str(dirty), seed=1001, duration_s=3600.0)
            mixed = train.from_captures([*simulate_training(tmp)[:3], str(dirty)], cfg,
                                        (25, 587), "compare", progress=False).data
            for share in (0.0, args.contaminated):
                model = host_model.fit(mixed, detector=host_model.DEFAULT_DETECTOR, seed=0,
                                       contamination=share, windows=windows)
                for test, pcap in tests:
                    sys.stdout.write(row(f"attacks c={share:g}", test,
                                         evaluate(model, pcap, cfg)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
