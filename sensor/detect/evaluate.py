"""Scores the detector on labelled captures: per-kind recall, false-positive hosts, detect time."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field

from sensor.config import Config
from sensor.detect.detector import Detector, DetectorStats
from sensor.errors import CaptureError, ConfigError
from sensor.records import Alert


@dataclass(slots=True, frozen=True)
class Label:
    """One labelled host (a row of a `sensor simulate` labels CSV)."""

    ip: str
    malicious: bool
    kind: str
    attack_start: float | None


@dataclass(slots=True)
class KindResult:
    """Recall and time to detect for one malicious kind."""

    kind: str
    hosts: list[str] = field(default_factory=list)
    detected: list[str] = field(default_factory=list)
    ttd_s: dict[str, float] = field(default_factory=dict)  # host -> first right alert - start

    @property
    def recall(self) -> float:
        return len(self.detected) / len(self.hosts) if self.hosts else 0.0


@dataclass(slots=True)
class Evaluation:
    """The figures `sensor evaluate` prints."""

    kinds: dict[str, KindResult]
    false_positive_hosts: dict[str, list[str]]  # benign host -> alert kinds
    unlabelled_hosts: dict[str, list[str]]  # host absent from the labels -> alert kinds
    benign_hosts: int
    alerts: int


def read_labels(path: str) -> dict[str, Label]:
    """Labels from a CSV with columns ip,label,kind,attack_start (extra columns ignored)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    out: dict[str, Label] = {}
    for n, row in enumerate(rows, start=2):
        try:
            ip, label, kind = row["ip"], row["label"], row["kind"]
            start = row.get("attack_start") or ""
            out[ip] = Label(ip, label == "malicious", kind, float(start) if start else None)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: line {n}: expected ip,label,kind,attack_start columns"
                              ) from None
    return out


def score_alerts(labels: dict[str, Label], alerts: Iterable[Alert]) -> Evaluation:
    """Per-kind recall, false-positive hosts and time to detect of a list of alerts."""
    kinds: dict[str, KindResult] = {}
    for row in labels.values():
        if row.malicious:
            kinds.setdefault(row.kind, KindResult(row.kind)).hosts.append(row.ip)
    fps: dict[str, list[str]] = {}
    unlabelled: dict[str, list[str]] = {}
    n = 0
    for a in sorted(alerts, key=lambda x: x.ts):
        n += 1
        lab = labels.get(a.host)
        if lab is None:
            unlabelled.setdefault(a.host, [])
            if a.kind not in unlabelled[a.host]:
                unlabelled[a.host].append(a.kind)
        elif not lab.malicious:
            fps.setdefault(a.host, [])
            if a.kind not in fps[a.host]:
                fps[a.host].append(a.kind)
        elif a.kind == lab.kind:
            res = kinds[lab.kind]
            if a.host not in res.ttd_s:
                res.detected.append(a.host)
                res.ttd_s[a.host] = a.ts - (lab.attack_start or a.ts)
    benign = sum(1 for row in labels.values() if not row.malicious)
    return Evaluation(kinds, fps, unlabelled, benign, n)


def run_detection(paths: Iterable[str], config: Config) -> tuple[list[Alert], DetectorStats]:
    """Analyse capture files with the detector; returns every alert and the detector's counters."""
    from sensor.capture.bpf import DEFAULT_PORTS, build_filter
    from sensor.capture.source import open_files
    from sensor.pipeline import Pipeline

    alerts: list[Alert] = []
    det = Detector(config, alerts.append)
    pipe = Pipeline(ports=DEFAULT_PORTS, on_conn=det.on_conn, on_session=det.on_session)
    errors: list[str] = []

    def failed(path: str, reason: str) -> None:
        errors.append(f"{path}: {reason}")

    pipe.run(open_files(list(paths), build_filter(DEFAULT_PORTS), pipe.capture_stats, failed))
    pipe.finish()
    if errors:
        raise CaptureError("; ".join(errors))
    return alerts, det.finish()


def evaluate(label_path: str, paths: Iterable[str], config: Config) -> Evaluation:
    """Run the detector over labelled captures and score its alerts."""
    alerts, _ = run_detection(paths, config)
    return score_alerts(read_labels(label_path), alerts)
