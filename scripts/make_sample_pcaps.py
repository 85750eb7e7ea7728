"""Regenerate the committed sample captures in pcaps/ from fixed seeds (run from the repo root)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sensor.simulate import load_scenario, simulate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = (
    # (file name, scenarios, seed, duration in seconds or None for the scenario's own, size cap)
    ("demo.pcap", ("demo",), 1, None, 2_000_000),
    ("train-benign.pcap", ("benign",), 2, 2400.0, 3_000_000),
)


def main() -> int:
    """Write every sample; fail when one outgrows the size the repository allows it."""
    out_dir = ROOT / "pcaps"
    out_dir.mkdir(exist_ok=True)
    status = 0
    for name, scenarios, seed, duration, cap in SAMPLES:
        path = out_dir / name
        began = time.perf_counter()
        result = simulate(
            [load_scenario(s) for s in scenarios], str(path), seed=seed, duration_s=duration
        )
        size = path.stat().st_size
        took = time.perf_counter() - began
        sys.stdout.write(
            f"{path.relative_to(ROOT)}: {result.sessions} sessions, "
            f"{result.packets} packets, {size / 1e6:.2f} MB in {took:.2f} s\n"
        )
        if size > cap:
            sys.stderr.write(f"{name}: {size} bytes is over the {cap} byte cap\n")
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
