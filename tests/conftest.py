"""Shared fixtures: where the public parity captures live, and tool checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps" / "zeek"
TRACES = SHARED_PCAPS / "traces"
BASELINES = SHARED_PCAPS / "baselines"


@pytest.fixture(scope="session")
def zeek_traces() -> Path:
    """The public Zeek captures; their absence is an error (they exist in CI), never a skip."""
    if not TRACES.is_dir():
        pytest.fail(f"parity captures not found at {TRACES} (expected ../shared/pcaps/zeek)")
    return TRACES


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of tshark; `make test` installs it, so its absence is a failure, not a skip."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark not installed (make test installs it with apt-get as root)")
    return path
