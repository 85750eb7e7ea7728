"""A short coverage-guided run of every fuzz target (atheris), as part of the test command.

About eight seconds each, seeded from our own inputs; a crash fails the test and leaves its
input in the test's temporary folder, to be copied to tests/data/fuzz/<target>/.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.harnesses import TARGETS

SCRIPT = Path(__file__).resolve().parent.parent.parent / "scripts" / "fuzz.py"
SECONDS = 8


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_target_survives_a_short_fuzzing_run(target: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(SCRIPT), target, "--seconds", str(SECONDS),
         "--corpus", str(tmp_path / "corpus"), f"-artifact_prefix={tmp_path}/", "-seed=1"],
        capture_output=True, text=True, timeout=SECONDS * 20,
    )  # fmt: skip
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert r.returncode == 0 and not crashes, f"{crashes}\n{r.stderr[-3000:]}"
    assert "Done" in r.stderr  # libFuzzer's closing line: the target really ran
