"""Scores the detector on labelled captures: per-kind recall, false-positive hosts, detect time."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sensor.config import Config
from sensor.detect.detector import Detector, DetectorStats
from sensor.errors import CaptureError, ConfigError
from sensor.records import Alert

if TYPE_CHECKING:
    from sensor.detect.model import HostModel


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


def run_detection(paths: Iterable[str], config: Config, model: HostModel | None = None,
                  host_scores: list[dict[str, Any]] | None = None,
                  ports: tuple[int, ...] | None = None) -> tuple[list[Alert], DetectorStats]:
    """Analyse capture files with the detector (and `model`, scored in this process); returns
    every alert and the detector's counters, and fills `host_scores` when given."""
    from sensor.capture.bpf import DEFAULT_PORTS, build_filter
    from sensor.capture.source import open_files
    from sensor.pipeline import Pipeline

    ports = DEFAULT_PORTS if ports is None else ports
    alerts: list[Alert] = []
    scorer = None
    if model is not None:
        from sensor.detect.scoring import LocalScorer

        scorer = LocalScorer(model)
    det = Detector(config, alerts.append, scorer, "model" if model is not None else "")
    if det.stage is not None and host_scores is not None:
        det.stage.explain_all = True
    pipe = Pipeline(ports=ports, on_conn=det.on_conn, on_session=det.on_session)
    errors: list[str] = []

    def failed(path: str, reason: str) -> None:
        errors.append(f"{path}: {reason}")

    pipe.run(open_files(list(paths), build_filter(ports), pipe.capture_stats, failed))
    pipe.finish()
    if errors:
        raise CaptureError("; ".join(errors))
    stats = det.finish()
    if host_scores is not None:
        host_scores.extend(det.host_scores())
    return alerts, stats


MODES = ("rules", "model", "both")


@dataclass(slots=True)
class ModeResult:
    """Host-level figures of one detection mode (rules alone, model alone, both together)."""

    mode: str
    precision: float
    recall: float
    roc_auc: float | None  # None when the labels hold only one class
    pr_auc: float | None
    detected: list[str]
    false_positive_hosts: list[str]
    ttd_s: dict[str, float]  # malicious host -> first flag - attack start
    curve: tuple[list[float], list[float]]  # ROC (fpr, tpr) for the plot


def host_level(labels: dict[str, Label], alerts: list[Alert],
               host_scores: list[dict[str, Any]], threshold: float) -> dict[str, ModeResult]:
    """Precision, recall, ROC AUC, PR AUC, false-positive hosts and time to detect per mode.

    A host is flagged by the rules when any rule alert (source rule or both) names it, by the
    model when its highest score is over the threshold (an anomalous_host alert, or a rule alert
    the model confirmed). The ranking scores: the rules' highest alert score; the model's
    highest score; for both, the larger of the two on the rules' scale (0.5 at the threshold)."""
    rule_score: dict[str, float] = {}
    rule_first: dict[str, float] = {}
    model_first: dict[str, float] = {}
    for a in sorted(alerts, key=lambda x: x.ts):
        if a.source in ("rule", "both") and a.kind != "anomalous_host" and \
                a.rule != "model_confirms":
            rule_score[a.host] = max(rule_score.get(a.host, 0.0), a.score)
            rule_first.setdefault(a.host, a.ts)
        if a.source in ("model", "both"):
            model_first.setdefault(a.host, a.ts)
    model_score = {str(h["host"]): float(h["score"]) for h in host_scores}
    hosts = [ip for ip in labels]
    truth = [labels[ip].malicious for ip in hosts]

    def scaled(ip: str) -> float:
        s = model_score.get(ip, 0.0)
        if threshold <= 0 or threshold == float("inf"):
            return 0.0
        return 0.5 * s / threshold if s <= threshold else 1.0 - 0.5 * threshold / s

    out: dict[str, ModeResult] = {}
    for mode in MODES:
        if mode == "rules":
            score = {ip: rule_score.get(ip, 0.0) for ip in hosts}
            first = rule_first
        elif mode == "model":
            score = {ip: model_score.get(ip, 0.0) for ip in hosts}
            first = model_first
        else:
            score = {ip: max(rule_score.get(ip, 0.0), scaled(ip)) for ip in hosts}
            first = {ip: min(t for t in (rule_first.get(ip), model_first.get(ip))
                             if t is not None)
                     for ip in set(rule_first) | set(model_first)}
        flagged = {ip for ip in hosts if ip in first}
        out[mode] = _figures(mode, labels, hosts, truth, [score[ip] for ip in hosts], flagged,
                             first)
    return out


def _figures(mode: str, labels: dict[str, Label], hosts: list[str], truth: list[bool],
             scores: list[float], flagged: set[str], first: dict[str, float]) -> ModeResult:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    mal = [ip for ip, t in zip(hosts, truth, strict=True) if t]
    detected = sorted(ip for ip in mal if ip in flagged)
    fps = sorted(ip for ip, t in zip(hosts, truth, strict=True) if not t and ip in flagged)
    n_flag = len(detected) + len(fps)
    both_classes = 0 < len(mal) < len(hosts)
    roc = pr = None
    curve: tuple[list[float], list[float]] = ([], [])
    if both_classes:
        y = [1 if t else 0 for t in truth]
        roc = float(roc_auc_score(y, scores))
        pr = float(average_precision_score(y, scores))
        fpr, tpr, _ = roc_curve(y, scores)
        curve = ([float(v) for v in fpr], [float(v) for v in tpr])
    ttd = {ip: first[ip] - (labels[ip].attack_start or first[ip]) for ip in detected}
    return ModeResult(mode, len(detected) / n_flag if n_flag else 1.0,
                      len(detected) / len(mal) if mal else 1.0, roc, pr, detected, fps, ttd,
                      curve)
