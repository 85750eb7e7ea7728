"""Fixtures of the cluster tests: a simulated capture and a Dask cluster shared by the module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster_helpers import simulate


@pytest.fixture(scope="session")
def sim_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Benign mail and a spambot burst, ten minutes (1676 frames, 70 connections, 2 alerts)."""
    return simulate(tmp_path_factory.mktemp("sim") / "sim.pcap", "benign", "spambot-burst")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The TCP address of a Dask cluster of two worker threads in this process."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=":0") as cluster:  # fmt: skip
        yield cluster.scheduler_address
