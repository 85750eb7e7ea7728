"""Fixtures that start real syslog collectors (rsyslog, syslog-ng) on loopback for the tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .collectors import Rsyslog, SyslogNg, TlsFiles, make_tls_files, require_rsyslog


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA with a server certificate for localhost and 127.0.0.1, and a client one."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def rsyslog(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Callable[..., Rsyslog]]:
    """A factory: rsyslog(("tcp", "relp"), tls_auth="anon") starts rsyslogd with those listeners
    (udp, tcp, tls, relp, unix) and returns it (run=False: configured, ports chosen, not
    started); every one is stopped after the test."""
    require_rsyslog()
    started: list[Rsyslog] = []

    def start(kinds: tuple[str, ...], tls_auth: str = "anon", run: bool = True) -> Rsyslog:
        workdir = tmp_path / f"rsyslog{len(started)}"
        workdir.mkdir()
        daemon = Rsyslog(workdir, kinds, tls_files if "tls" in kinds else None, tls_auth)
        started.append(daemon)
        if run:
            daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def syslog_ng(tmp_path: Path) -> Iterator[SyslogNg]:
    """syslog-ng listening for RFC 5424 over TCP, writing the fields it parsed."""
    workdir = tmp_path / "syslog-ng"
    workdir.mkdir()
    daemon = SyslogNg(workdir)
    daemon.start()
    yield daemon
    daemon.stop()
