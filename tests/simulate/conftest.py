"""Fixtures of the simulator tests: small captures of every built-in scenario, made once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from simhelp import SHORTENED, SMALL, Generated

from sensor.simulate import load_scenario, simulate


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Generated]:
    """Every built-in scenario at its own duration (the big one shortened), seed 7."""
    folder = tmp_path_factory.mktemp("sim")
    out: dict[str, Generated] = {}
    for name in SMALL:
        pcap = folder / f"{name}.pcap"
        result = simulate([load_scenario(name)], str(pcap), seed=7,
                          duration_s=SHORTENED.get(name))
        out[name] = Generated(pcap, Path(result.labels),
                              json.loads(Path(result.truth).read_text()))
    return out
