"""Training data for the host model: host-window rows from captures or from logged records.

Rows are taken exactly as `analyze --model` takes them: every [model] score_interval_s of packet
time, one snapshot of each host whose features changed, so the model learns the same kind of
rows it later scores.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sensor.config import Config
from sensor.detect.card import MODEL_FEATURES, ROLES
from sensor.detect.detector import Detector
from sensor.detect.model import TrainingSet
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
    X = np.concatenate(scorer.rows).reshape(scorer.count, len(MODEL_FEATURES))
    first = span.first if span.first != float("inf") else 0.0
    return TrainingSet(X, hosts, files, (first, span.last), command,
                       host_folds(scorer.row_hosts, files))


def host_folds(hosts: list[str], files: list[str]) -> Any:
    """Calibration fold of each row: a stable hash of its host (and input), so that a host's
    rows are all held out together, scored by a model of the other hosts."""
    import zlib

    import numpy as np

    from sensor.detect.model import CALIBRATION_FOLDS

    salt = "|".join(os.path.basename(f) for f in files)  # not where they were: reproducible
    return np.asarray([zlib.crc32(f"{salt}/{h}".encode()) % CALIBRATION_FOLDS for h in hosts],
                      dtype=np.intp)


def from_captures(paths: list[str], config: Config, ports: tuple[int, ...], command: str,
                  progress: bool) -> Collected:
    """Host-window rows of capture files (pcap, pcapng, gzip).

    Each file is analysed on its own, with fresh host state: captures from several sensors or
    simulations may cover the same hours, and one stream would run their packet time backwards.
    (A rotated archive loses only the continuity of its windows at each file boundary.)"""
    from sensor.capture.bpf import build_filter
    from sensor.capture.source import open_files
    from sensor.pipeline import Pipeline, limits_from_config

    errors: list[str] = []

    def failed(path: str, reason: str) -> None:
        errors.append(f"{path}: {reason}")
        sys.stderr.write(f"sensor: error: {path}: {reason}\n")

    parts: list[TrainingSet] = []
    packets = records = 0
    bar = _Bar(len(paths), progress)
    expr = build_filter(ports, config.decode.max_vlan_tags)
    for path in paths:
        det, scorer, span, on_conn, on_session = _collector(config)
        pipe = Pipeline(ports=ports, on_conn=on_conn, on_session=on_session,
                        tcp_limits=limits_from_config(config), smtp_limits=config.smtp,
                        decode_limits=config.decode)
        frames = open_files([path], expr, pipe.capture_stats, failed)
        try:
            pipe.run(bar.frames(frames))
        except BaseException:
            bar.close()
            raise
        totals = pipe.finish()
        bar.file_done()
        packets += pipe.capture_stats.packets
        records += totals.connections + totals.sessions
        if scorer.count or not pipe.capture_stats.packets:
            with contextlib.suppress(ModelError):
                parts.append(_finish(det, scorer, span, [path], command))
    bar.close()
    if errors and len(errors) >= len(paths):
        raise CaptureError("; ".join(errors))
    return Collected(_merge(parts, [str(p) for p in paths], command), packets, records, errors)


def _merge(parts: list[TrainingSet], files: list[str], command: str) -> TrainingSet:
    import numpy as np

    if not parts:
        raise ModelError("training: the inputs gave no host-window to learn from (no SMTP "
                         "session or connection)")
    hosts = {role: sum(p.hosts_per_role.get(role, 0) for p in parts) for role in ROLES}
    first = min(p.span[0] for p in parts)
    last = max(p.span[1] for p in parts)
    folds = np.concatenate([np.asarray(p.folds) for p in parts])
    return TrainingSet(np.concatenate([np.asarray(p.X) for p in parts]), hosts, files,
                       (first, last), command, folds)


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


class _Bar:
    """A progress bar over files and packets on a terminal (nothing elsewhere)."""

    def __init__(self, n_files: int, show: bool) -> None:
        self.bar: Any = None
        self.packets = 0
        if show and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(TextColumn("training: files"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[packets]:,} packets"),
                                console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("files", total=n_files, packets=0)
            self.bar.start()

    def frames(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        if self.bar is None:
            yield from frames
            return
        for fr in frames:
            self.packets += 1
            if not self.packets & 0x3FFF:
                self.bar.update(self.task, packets=self.packets)
            yield fr

    def file_done(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, packets=self.packets)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
