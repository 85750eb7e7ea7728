"""Shared fixtures: where the public parity captures live, and tool checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# scikit-learn's estimator checks (tests/detect/test_estimators.py) include one that needs SciPy's
# array API mode, read once when SciPy is first imported: set here, before any test imports it.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "data" / "public" / "zeek"
TRACES = PUBLIC / "traces"
BASELINES = PUBLIC / "baselines"


@pytest.fixture(scope="session")
def zeek_traces() -> Path:
    """The public Zeek captures (tests/data/public): their absence is an error, never a skip."""
    if not TRACES.is_dir():
        pytest.fail(f"parity captures not found at {TRACES} (tests/data/public/zeek)")
    return TRACES


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of tshark; `make test` installs it, so its absence is a failure, not a skip."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark not installed (make test installs it with apt-get as root)")
    return path


@pytest.fixture(scope="session")
def forest_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model with the IsolationForest detector, trained on the bundled benign capture: it has
    no scoring tables, so `analyze` loads it through scikit-learn in a child process."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("forest") / "forest.skops"
    subprocess.run([sys.executable, "-m", "sensor", "train", str(ROOT / "pcaps" /
                    "train-benign.pcap"), "--config", str(ROOT / "pcaps" / "demo.toml"),
                    "--detector", "iforest", "-o", str(path)],
                   check=True, capture_output=True, timeout=600)
    return path
