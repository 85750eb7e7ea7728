"""Fixtures of the stream tests: a real redis-server per test, a simulated capture split by
client, as two taps would see it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .capture_split import split_by_client
from .redis_util import RedisServer


def sensor(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI exactly as a user would."""
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, on a free loopback port."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


class Site:
    """A simulated capture, its two halves (split by client) and the whole run's alerts."""

    def __init__(self, root: Path) -> None:
        self.whole = root / "sim.pcap"
        self.halves = [root / "a.pcap", root / "b.pcap"]
        self.alerts = root / "whole.alerts.jsonl"
        self.stats = root / "whole.stats.json"


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """site-500 for 10 minutes of packet time: about 460 hosts, every kind of alert the rules
    and the model raise; `sensor analyze --alerts` run on the whole."""
    s = Site(tmp_path_factory.mktemp("site"))
    done = sensor("simulate", "site-500", "--seed", "7", "--duration", "10m", "-o", str(s.whole))
    assert done.returncode == 0, done.stderr
    clients = split_by_client(s.whole, s.halves)
    assert all(len(c) > 50 for c in clients), [len(c) for c in clients]
    done = sensor("analyze", "-q", "--alerts", str(s.alerts), "--stats", str(s.stats),
                  str(s.whole))
    assert done.returncode == 0, done.stderr
    return s
