"""What travels between a task and the client: records pickled as constructor calls, and the
LocalCluster's forked workers ending on SIGTERM."""

from __future__ import annotations

import pickle
import pickletools
import subprocess
import sys
import textwrap
from pathlib import Path

from sensor.cluster.task import TaskSpec, run_task
from sensor.parallel import WorkerWants
from sensor.records import WIRE_RECORDS
from sensor.tcp.reassembler import TcpLimits


def _nested(obj: object, seen: set[type]) -> None:
    """The record classes found in `obj` and what it holds."""
    if type(obj) in WIRE_RECORDS:
        seen.add(type(obj))
        for name in obj.__slots__:  # type: ignore[attr-defined]
            _nested(getattr(obj, name), seen)
    elif isinstance(obj, tuple | list):
        for x in obj:
            _nested(x, seen)


def test_records_travel_as_constructor_calls(sim_capture: Path) -> None:
    """A task's records come back equal, each pickled as a call of its class on its field
    values (no BUILD of dataclasses' __setstate__, which lists the fields on every record)."""
    wants = WorkerWants(conn_lines=True, session_lines=True, conn_records=True,
                        session_records=True, smtp=True)  # fmt: skip
    res = run_task(TaskSpec.of((str(sim_capture),), "", (25,), wants, TcpLimits()), 0, {})
    records = [item[6] for item in res.items]
    seen: set[type] = set()
    _nested(records, seen)
    assert {c.__name__ for c in seen} >= {"ConnRecord", "SmtpSession", "MailTransaction",
                                          "Recipient"}  # fmt: skip
    data = pickle.dumps(res.items, protocol=5)
    assert pickle.loads(data) == res.items
    assert "BUILD" not in {op.name for op, _arg, _pos in pickletools.genops(data)}


def test_a_forked_worker_ends_on_sigterm() -> None:
    """The LocalCluster's workers are forked from a process whose SIGTERM handler stops a run;
    they get the default action back, so the nanny's terminate ends them."""
    script = textwrap.dedent("""
        import os, signal, time
        import psutil
        from sensor.cluster.run import _client
        from sensor.service.signals import Shutdown

        def main():
            Shutdown().install()
            with _client("local:1", lambda line: None) as (client, _dashboard):
                pid = next(iter(client.run(os.getpid).values()))
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                            break
                    except psutil.NoSuchProcess:
                        break
                    time.sleep(0.1)
                else:
                    raise SystemExit("the worker outlived SIGTERM")

        if __name__ == "__main__":
            main()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
