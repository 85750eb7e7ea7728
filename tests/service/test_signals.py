"""Tests of the stop-signal state (Shutdown) and of workers dying with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sensor.service.signals import Aborted, Shutdown


def test_first_signal_stops_and_calls_hooks_second_aborts() -> None:
    seen: list[int] = []
    shutdown = Shutdown()
    shutdown.add_hook(seen.append)
    before = signal.getsignal(signal.SIGTERM)
    shutdown.install()
    try:
        assert not shutdown.stop.is_set() and shutdown.exit_code == 0 and shutdown.name == ""
        os.kill(os.getpid(), signal.SIGTERM)
        assert shutdown.stop.is_set() and seen == [signal.SIGTERM]
        assert (shutdown.signum, shutdown.exit_code, shutdown.name) == (15, 143, "SIGTERM")
        with pytest.raises(Aborted) as info:
            os.kill(os.getpid(), signal.SIGINT)
        assert info.value.signum == signal.SIGINT
        assert seen == [signal.SIGTERM]  # hooks run once
        late: list[int] = []
        shutdown.add_hook(late.append)  # added after the signal: called at once
        assert late == [signal.SIGTERM]
    finally:
        shutdown.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_workers_ignore_repeated_signals() -> None:
    """A worker gets the terminal's SIGINT and the parent's forward: one stop, no abort."""
    shutdown = Shutdown(abort_on_second=False)
    shutdown.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        shutdown.restore()
    assert shutdown.stop.is_set() and shutdown.signum == signal.SIGINT


_PDEATHSIG = """
import ctypes, os
from sensor.service.signals import die_with_parent
die_with_parent(os.getppid())
got = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(got), 0, 0, 0)  # PR_GET_PDEATHSIG
print(got.value)
"""


def test_die_with_parent_sets_the_kernels_parent_death_signal() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PDEATHSIG], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == signal.SIGKILL


def test_die_with_parent_exits_when_the_parent_is_already_gone() -> None:
    code = "from sensor.service.signals import die_with_parent\ndie_with_parent(1)\nprint('x')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
