"""Alert records from rule findings, with per-(host, kind) suppression and escalation updates."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sensor.config import SuppressionConfig
from sensor.detect.rules import Finding
from sensor.records import Alert, HostFeatures


def iso_time(ts: float) -> str:
    """Packet time as ISO 8601 UTC with milliseconds: 2026-11-29T15:26:40.123Z."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def alert_to_dict(a: Alert) -> dict[str, Any]:
    """The alert as the JSON object of DESIGN.md (field order as there)."""
    return {"ts": a.ts, "time": a.time, "sensor": a.sensor, "host": a.host, "kind": a.kind,
            "severity": a.severity, "sid": a.sid, "rule": a.rule, "score": a.score,
            "source": a.source, "window_s": _num(a.window_s), "summary": a.summary,
            "evidence": a.evidence, "first_seen": a.first_seen, "last_seen": a.last_seen}


def _num(x: float) -> float:
    return int(x) if float(x).is_integer() else round(x, 3)


@dataclass(slots=True)
class _Episode:
    """What was last alerted for one (host, kind) within the current suppression interval."""

    started: float
    severity: int
    magnitudes: dict[str, float] = field(default_factory=dict)  # per rule id


class Suppressor:
    """One alert per (host, kind) per interval, plus an update on escalation (severity up or the
    same rule's count reaching escalate_factor times what was last alerted)."""

    def __init__(self, cfg: SuppressionConfig, max_entries: int) -> None:
        self._cfg = cfg
        self._max = max_entries
        self._episodes: OrderedDict[tuple[str, str], _Episode] = OrderedDict()
        self.suppressed = 0
        self.updates = 0

    def reconfigure(self, cfg: SuppressionConfig) -> None:
        """New interval and escalation factor (SIGHUP); the open episodes are kept."""
        self._cfg = cfg
    def _expire(self, now: float) -> None:
        """Forget the episodes whose interval passed an interval ago (the oldest first): the
        next finding of their host and kind starts a new one anyway. The extra interval is for
        the model's findings, decided when their batch is scored, after rule findings of later
        packet time: an episode one of them may still fall in is kept, so that the alerts do
        not depend on when the scores came back."""
        episodes = self._episodes
        keep = 2 * self._cfg.interval_s
        while episodes:
            if now - next(iter(episodes.values())).started < keep:
                break
            episodes.popitem(last=False)

    def decide(self, host: str, finding: Finding, now: float) -> str | None:
        """None to stay quiet, "" for a new alert, or the escalation text of an update."""
        self._expire(now)
        key = (host, finding.kind.value)
        ep = self._episodes.get(key)
        if ep is None or now - ep.started >= self._cfg.interval_s:
            if ep is None and len(self._episodes) >= self._max:
                self._episodes.popitem(last=False)
            self._episodes[key] = _Episode(now, finding.severity, {finding.rule: finding.magnitude})
            self._episodes.move_to_end(key)
            return ""
        last = ep.magnitudes.get(finding.rule)
        if finding.severity > ep.severity:
            why = f"severity {ep.severity} -> {finding.severity}"
        elif last is None or finding.magnitude < last * self._cfg.escalate_factor:
            self.suppressed += 1
            return None
        else:
            why = f"{finding.rule} count {last:g} -> {finding.magnitude:g}"
        ep.severity = max(ep.severity, finding.severity)
        ep.magnitudes[finding.rule] = finding.magnitude
        self.updates += 1
        return why


def make_alert(sensor: str, f: HostFeatures, finding: Finding, update: str) -> Alert:
    """The alert record of a finding on a host (update: escalation text, "" for a first alert)."""
    evidence: dict[str, object] = {"features": dict(finding.features),
                                   "sessions": list(f.sessions)}
    summary = finding.summary
    if update:
        evidence["update"] = update
        summary = f"{summary} (update: {update})"
    return Alert(ts=f.ts, time=iso_time(f.ts), sensor=sensor, host=f.host,
                 kind=finding.kind.value, severity=finding.severity, sid=finding.sid,
                 rule=finding.rule, score=finding.score, source="rule",
                 window_s=finding.window_s, summary=summary, evidence=evidence,
                 first_seen=min(finding.first_seen, f.ts), last_seen=f.ts)
