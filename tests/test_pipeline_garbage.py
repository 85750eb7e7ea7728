"""A run leaves no cyclic garbage: each connection and session is freed by reference counting
as soon as it is done, not when the cyclic collector next runs (a full collection can be hours
away on a busy sensor).

The run is made in an interpreter of its own: in the test process, the threads other tests
leave behind (a Dask cluster's, say) drop cycles of their own while the collector saves them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "pcaps" / "demo.pcap"

_RUN = """
import gc, json, sys
from collections import Counter
from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord, SmtpSession

out = []
pipe = Pipeline(on_conn=out.append, on_session=out.append)
gc.collect()
gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
pipe.run(open_files([sys.argv[1]], build_filter([25]), pipe.capture_stats, print))
pipe.finish()
gc.collect()
garbage = Counter(type(o).__name__ for o in gc.garbage)
print(json.dumps({"sessions": sum(isinstance(r, SmtpSession) for r in out),
                  "garbage": garbage.most_common(10)}))
"""


def test_connections_and_sessions_form_no_reference_cycles() -> None:
    run = subprocess.run([sys.executable, "-c", _RUN, str(DEMO)], capture_output=True,
                         text=True, timeout=300, check=True)  # fmt: skip
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["sessions"] > 100
    assert got["garbage"] == [], got["garbage"]


def test_a_cycle_is_seen() -> None:
    """The check above can fail: a cycle made during the run is reported."""
    leak = _RUN.replace("pipe.finish()", "pipe.finish()\nx = []\nx.append(x)\ndel x")
    run = subprocess.run([sys.executable, "-c", leak, str(DEMO)], capture_output=True,
                         text=True, timeout=300, check=True)  # fmt: skip
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["garbage"] == [["list", 1]]
