"""A run leaves no cyclic garbage: each connection and session is freed by reference counting
as soon as it is done, not when the cyclic collector next runs (a full collection can be hours
away on a busy sensor)."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord, SmtpSession

DEMO = Path(__file__).resolve().parent.parent / "pcaps" / "demo.pcap"


def test_connections_and_sessions_form_no_reference_cycles() -> None:
    out: list[ConnRecord | SmtpSession] = []
    pipe = Pipeline(on_conn=out.append, on_session=out.append)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        pipe.run(open_files([str(DEMO)], build_filter([25]), pipe.capture_stats, print))
        pipe.finish()
        gc.collect()
        garbage = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert sum(isinstance(r, SmtpSession) for r in out) > 100
    assert garbage == Counter(), garbage.most_common(5)
