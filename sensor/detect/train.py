"""Training data for the host model: host-window rows from captures or from logged records.

Rows are taken exactly as `analyze --model` takes them: every [model] score_interval_s of packet
time, one snapshot of each host whose features changed, so the model learns the same kind of
rows it later scores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sensor.config import Config
from sensor.detect.detector import Detector
from sensor.detect.model import MODEL_FEATURES, ROLES, TrainingSet
from sensor.detect.scoring import CollectingScorer
from sensor.errors import CaptureError, ModelError
from sensor.records import ConnRecord, SmtpSession

Frame = tuple[float, int, bytes]


@dataclass(slots=True)
class Collected:
    """What a collection run saw, for the closing summary."""

    data: TrainingSet
    packets: int = 0
    records: int = 0
    errors: list[str] = field(default_factory=list)


class _Span:
    """First and last packet time of the records fed."""

    __slots__ = ("first", "last")

    def __init__(self) -> None:
        self.first = float("inf")
        self.last = 0.0

    def see(self, ts: float, end: float) -> None:
        if ts < self.first:
            self.first = ts
        if end > self.last:
            self.last = end


def _collector(config: Config) -> tuple[Detector, CollectingScorer, _Span,
                                        Callable[[ConnRecord], None],
                                        Callable[[SmtpSession], None]]:
    scorer = CollectingScorer()
    det = Detector(config, lambda _a: None, scorer)
    span = _Span()

    def on_conn(rec: ConnRecord) -> None:
        span.see(rec.ts, rec.ts + rec.duration_s)
        det.on_conn(rec)

    def on_session(s: SmtpSession) -> None:
        span.see(s.ts, s.ts + s.duration_s)
        det.on_session(s)

    return det, scorer, span, on_conn, on_session


def _finish(det: Detector, scorer: CollectingScorer, span: _Span, files: list[str],
            command: str) -> TrainingSet:
    import numpy as np

    stage = det.stage
    assert stage is not None
    hosts = {role: 0 for role in ROLES}
    det.finish()  # scores (nothing) the last batch and fills the per-host roles
    for hs in stage.best.values():
        hosts[ROLES[hs.role]] += 1
    if not scorer.count:
        raise ModelError("training: the inputs gave no host-window to learn from (no SMTP "
                         "session or connection)")
    X = np.concatenate([np.frombuffer(r, dtype=np.float64) for r in scorer.rows]).reshape(
        scorer.count, len(MODEL_FEATURES))
    first = span.first if span.first != float("inf") else 0.0
    return TrainingSet(X, hosts, files, (first, span.last), command)


def from_captures(paths: list[str], config: Config, ports: tuple[int, ...], command: str,
                  progress: bool) -> Collected:
    """Host-window rows of capture files (pcap, pcapng, gzip)."""
    from sensor.capture.bpf import build_filter
    from sensor.capture.source import open_files
    from sensor.pipeline import Pipeline, limits_from_config

    det, scorer, span, on_conn, on_session = _collector(config)
    pipe = Pipeline(ports=ports, on_conn=on_conn, on_session=on_session,
                    tcp_limits=limits_from_config(config), smtp_limits=config.smtp,
                    decode_limits=config.decode)
    errors: list[str] = []

    def failed(path: str, reason: str) -> None:
        errors.append(f"{path}: {reason}")
        sys.stderr.write(f"sensor: error: {path}: {reason}\n")

    frames = open_files(paths, build_filter(ports, config.decode.max_vlan_tags),
                        pipe.capture_stats, failed)
    if progress:
        frames = _with_progress(frames, len(paths), lambda: pipe.capture_stats.files)
    pipe.run(frames)
    totals = pipe.finish()
    if errors and len(errors) >= len(paths):
        raise CaptureError("; ".join(errors))
    data = _finish(det, scorer, span, [str(p) for p in paths], command)
    return Collected(data, pipe.capture_stats.packets,
                     totals.connections + totals.sessions, errors)


def from_records(records: Iterable[ConnRecord | SmtpSession], files: list[str], config: Config,
                 command: str) -> Collected:
    """Host-window rows of records read back from `analyze` logs (sessions and connections)."""
    det, scorer, span, on_conn, on_session = _collector(config)
    n = 0
    for rec in records:
        n += 1
        if isinstance(rec, SmtpSession):
            on_session(rec)
        else:
            on_conn(rec)
    data = _finish(det, scorer, span, files, command)
    return Collected(data, 0, n)


def _with_progress(frames: Iterator[Frame], n_files: int,
                   files_done: Callable[[], int]) -> Iterator[Frame]:
    """Frames passed through while a progress bar over files and packets runs on a terminal."""
    if not sys.stderr.isatty():
        yield from frames
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("training: files"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[packets]:,} packets"),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("files", total=n_files, packets=0)
        for n, fr in enumerate(frames, 1):
            if not n & 0x3FFF:
                bar.update(task, completed=max(0, files_done() - 1), packets=n)
            yield fr
        bar.update(task, completed=n_files)
