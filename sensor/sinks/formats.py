"""Syslog messages for alerts and SMTP sessions: RFC 5424/3164, text, JSON, CEF, LEEF, ECS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sensor import __version__
from sensor.detect.alerts import alert_to_dict
from sensor.records import Alert
from sensor.sinks.encoding import (
    NILVALUE,
    PRODUCT,
    VENDOR,
    cef_body,
    epoch_ms,
    header_field,
    is_ip,
    leef_body,
    number,
    one_line_json,
    rfc3339,
    sd_name,
    sd_value,
    text,
    utc,
)
from sensor.sinks.session_fields import (
    ECS_VERSION,
    LEEF_TIME_FORMAT,
    SESSION_LIST_MAX,
    SESSION_SEVERITY,
    SessionFields,
    compact_session,
)

__all__ = ["FORMATS", "SESSION_LIST_MAX", "FormatOptions", "cef_severity", "compact_session",
           "format_alert", "format_session", "leef_severity", "syslog_severity"]  # fmt: skip

FORMATS: Final = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")
HEADERS: Final = ("rfc5424", "rfc3164")
BOM: Final = b"\xef\xbb\xbf"  # RFC 5424 6.4: a UTF-8 MSG starts with the BOM
HOSTNAME_MAX: Final = 255  # RFC 5424 6
APP_NAME_MAX: Final = 48
PROCID_MAX: Final = 128
MSGID_MAX: Final = 32
TAG_MAX: Final = 32  # RFC 3164 4.1.3
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")  # fmt: skip


@dataclass(slots=True, frozen=True)
class FormatOptions:
    """How messages are written: the body format, and the syslog header's fields."""

    format: str = "rfc5424"  # one of FORMATS
    facility: int = 16  # local0
    hostname: str = ""  # "" is written as the NILVALUE "-"
    app_name: str = "port25-sensor"
    procid: str = "-"
    sd_id: str = "port25@32473"  # 32473: the documentation enterprise number (RFC 5612)
    header: str = ""  # "" -> rfc3164 for the rfc3164 format, rfc5424 for the others


def syslog_severity(severity: int) -> int:
    """Our alert severity (1-10) as a syslog severity (0-7, RFC 5424 6.2.1).

        ours   syslog                    CEF (0-10)   LEEF sev (1-10)
        10     1 alert                   10           10
        9      2 critical                9            9
        7-8    3 error                   7-8          7-8
        5-6    4 warning                 5-6          5-6
        3-4    5 notice                  3-4          3-4
        1-2    6 informational           1-2          1-2
        session records: syslog 6 informational, CEF 1, LEEF 1

    0 (emergency: the system is unusable) is never used for a network alert.
    """
    if severity >= 10:
        return 1
    if severity >= 9:
        return 2
    if severity >= 7:
        return 3
    if severity >= 5:
        return 4
    if severity >= 3:
        return 5
    return 6


def cef_severity(severity: int) -> int:
    """Our alert severity as CEF's 0-10."""
    return min(max(severity, 0), 10)


def leef_severity(severity: int) -> int:
    """Our alert severity as LEEF's sev, 1-10."""
    return min(max(severity, 1), 10)


# --- syslog headers -----------------------------------------------------------------------------

def _header_kind(opts: FormatOptions) -> str:
    if opts.header in HEADERS:
        return opts.header
    return "rfc3164" if opts.format == "rfc3164" else "rfc5424"


def _pri(opts: FormatOptions, severity: int) -> int:
    return min(max(opts.facility, 0), 23) * 8 + severity


def _rfc5424(opts: FormatOptions, sev: int, ts: float, msgid: str, sd: str, msg: bytes) -> bytes:
    head = (f"<{_pri(opts, sev)}>1 {rfc3339(ts)} {header_field(opts.hostname, HOSTNAME_MAX)} "
            f"{header_field(opts.app_name, APP_NAME_MAX)} {header_field(opts.procid, PROCID_MAX)} "
            f"{header_field(msgid, MSGID_MAX)} {sd}")  # fmt: skip
    return head.encode("utf-8") + (b" " + msg if msg else b"")


def _rfc3164(opts: FormatOptions, sev: int, ts: float, msg: bytes) -> bytes:
    dt = utc(ts) or datetime.fromtimestamp(0, UTC)
    stamp = f"{_MONTHS[dt.month - 1]} {dt.day:2d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    tag = header_field(opts.app_name, TAG_MAX)
    pid = "" if opts.procid in ("", NILVALUE) else f"[{header_field(opts.procid, PROCID_MAX)}]"
    head = f"<{_pri(opts, sev)}>{stamp} {header_field(opts.hostname, HOSTNAME_MAX)} {tag}{pid}:"
    return head.encode("ascii") + (b" " + msg if msg else b"")


def _sd(sd_id: str, params: list[tuple[str, str]]) -> str:
    """One SD-ELEMENT; values are raw text, escaped here (RFC 5424 6.3.3)."""
    body = "".join(f' {k}="{sd_value(v)}"' for k, v in params)
    return f"[{sd_name(sd_id)}{body}]"


def _message(opts: FormatOptions, sev: int, ts: float, msgid: str, params: list[tuple[str, str]],
             summary: str, doc: dict[str, Any], cef: str, leef: str, ecs: dict[str, Any]) -> bytes:
    """The message of one record in the chosen format (bodies already built by the caller)."""
    fmt = opts.format
    if fmt == "json":
        body = one_line_json(doc).encode("utf-8")
    elif fmt == "cef":
        body = cef.encode("utf-8")
    elif fmt == "leef":
        body = leef.encode("utf-8")
    elif fmt == "ecs":
        body = one_line_json(ecs).encode("utf-8")
    else:
        body = text(summary).encode("utf-8")
    if _header_kind(opts) == "rfc3164":
        return _rfc3164(opts, sev, ts, body)
    sd = _sd(opts.sd_id, params) if fmt == "rfc5424" else NILVALUE
    if fmt == "json":
        body = BOM + body
    return _rfc5424(opts, sev, ts, msgid, sd, body)


# --- alerts -------------------------------------------------------------------------------------

_ALERT_PARAMS: Final = frozenset({"sid", "kind", "host", "severity", "score", "window", "source",
                                  "rule", "sensor", "first_seen", "last_seen", "sessions",
                                  "update", "cat", "devTime", "devTimeFormat", "sev", "src",
                                  "srcHost", "msg"})  # fmt: skip  (LEEF's fixed keys too)


def counts(alert: Alert) -> list[tuple[str, str]]:
    """The alert's evidence numbers (evidence["features"]) as (PARAM-NAME, text) pairs: names
    made SD-NAMEs, a name that clashes with a fixed parameter or an earlier name left out."""
    feats = alert.evidence.get("features")
    out: list[tuple[str, str]] = []
    if not isinstance(feats, dict):
        return out
    seen = set(_ALERT_PARAMS)
    for k, v in feats.items():
        if not isinstance(v, int | float):
            continue
        name = sd_name(str(k))
        if name not in seen:
            seen.add(name)
            out.append((name, number(v)))
    return out


def _sessions(alert: Alert) -> list[str]:
    ids = alert.evidence.get("sessions")
    return [str(x) for x in ids] if isinstance(ids, list) else []


def _alert_params(alert: Alert, nums: list[tuple[str, str]]) -> list[tuple[str, str]]:
    params = [("sid", str(alert.sid)), ("kind", alert.kind), ("host", alert.host),
              ("severity", str(alert.severity)), ("score", number(alert.score)),
              ("window", number(alert.window_s)), ("source", alert.source), ("rule", alert.rule),
              ("sensor", alert.sensor), ("first_seen", rfc3339(alert.first_seen)),
              ("last_seen", rfc3339(alert.last_seen)),
              ("sessions", ",".join(_sessions(alert)))]  # fmt: skip
    update = alert.evidence.get("update")
    if update is not None:
        params.append(("update", str(update)))
    return params + nums


def _alert_cef(alert: Alert, nums: list[tuple[str, str]]) -> str:
    ext: list[tuple[str, str]] = []
    rt, start, end = epoch_ms(alert.ts), epoch_ms(alert.first_seen), epoch_ms(alert.last_seen)
    if rt is not None:
        ext.append(("rt", str(rt)))
    ext.append(("src" if is_ip(alert.host) else "shost", alert.host))
    ext += [("cnt", str(len(_sessions(alert)))), ("cat", alert.kind), ("dvchost", alert.sensor)]
    if start is not None:
        ext.append(("start", str(start)))
    if end is not None:
        ext.append(("end", str(end)))
    ext += [("cs1Label", "rule"), ("cs1", alert.rule), ("cs2Label", "source"),
            ("cs2", alert.source), ("cs3Label", "sessions"), ("cs3", ",".join(_sessions(alert))),
            ("cs4Label", "counts"), ("cs4", " ".join(f"{k}:{v}" for k, v in nums)),
            ("cfp1Label", "score"), ("cfp1", number(alert.score)),
            ("cn1Label", "window_s"), ("cn1", number(alert.window_s))]  # fmt: skip
    ints = [(k, v) for k, v in nums if v.lstrip("-").isdigit()][:2]
    for i, (k, v) in enumerate(ints, start=2):
        ext += [(f"cn{i}Label", k), (f"cn{i}", v)]
    update = alert.evidence.get("update")
    if update is not None:
        ext += [("cs5Label", "update"), ("cs5", str(update))]
    ext.append(("msg", alert.summary))
    return cef_body(str(alert.sid), alert.kind, cef_severity(alert.severity), ext)


def _alert_leef(alert: Alert, nums: list[tuple[str, str]]) -> str:
    attrs = [("cat", alert.kind), ("devTime", rfc3339(alert.ts)),
             ("devTimeFormat", LEEF_TIME_FORMAT), ("sev", str(leef_severity(alert.severity))),
             ("src" if is_ip(alert.host) else "srcHost", alert.host)]  # fmt: skip
    attrs += [(k, v) for k, v in _alert_params(alert, nums)
              if k not in ("kind", "host", "severity")]
    attrs.append(("msg", alert.summary))
    return leef_body(str(alert.sid), attrs)


def _alert_ecs(alert: Alert, doc: dict[str, Any], opts: FormatOptions) -> dict[str, Any]:
    observer: dict[str, Any] = {"name": alert.sensor, "type": "ids", "vendor": VENDOR,
                                "product": PRODUCT, "version": __version__}
    if opts.hostname:
        observer["hostname"] = opts.hostname
    return {
        "@timestamp": rfc3339(alert.ts),
        "message": alert.summary,
        "ecs": {"version": ECS_VERSION},
        "event": {"kind": "alert", "category": ["intrusion_detection", "network"],
                  "type": ["info"], "severity": alert.severity, "module": VENDOR,
                  "dataset": "port25.alert", "provider": PRODUCT,
                  "start": rfc3339(alert.first_seen), "end": rfc3339(alert.last_seen)},
        "rule": {"id": str(alert.sid), "name": alert.rule, "category": alert.kind,
                 "ruleset": VENDOR},
        "source": {"ip": alert.host} if is_ip(alert.host) else {"address": alert.host},
        "observer": observer,
        "port25": {"kind": alert.kind, "score": doc["score"], "window_s": doc["window_s"],
                   "source": alert.source, "severity": alert.severity,
                   "evidence": alert.evidence},
    }  # fmt: skip


def format_alert(alert: Alert, opts: FormatOptions) -> bytes:
    """One complete syslog message for an alert (no transport framing, no trailing LF/NUL)."""
    sev = syslog_severity(alert.severity)
    nums = counts(alert)
    fmt = opts.format
    doc = alert_to_dict(alert) if fmt in ("json", "ecs") else {}
    return _message(
        opts, sev, alert.ts, alert.kind,
        _alert_params(alert, nums) if fmt == "rfc5424" and _header_kind(opts) == "rfc5424" else [],
        alert.summary, doc,
        _alert_cef(alert, nums) if fmt == "cef" else "",
        _alert_leef(alert, nums) if fmt == "leef" else "",
        _alert_ecs(alert, doc, opts) if fmt == "ecs" else {},
    )


def format_session(session: dict[str, Any], opts: FormatOptions) -> bytes:
    """One complete syslog message for an SMTP session dict (``session_to_dict``), MSGID
    "session", severity informational; lists longer than SESSION_LIST_MAX are cut, with a
    marker."""
    s = SessionFields(session)
    fmt = opts.format
    use_sd = fmt == "rfc5424" and _header_kind(opts) == "rfc5424"
    return _message(
        opts, syslog_severity(SESSION_SEVERITY), s.ts, "session", s.params() if use_sd else [],
        s.summary(), compact_session(session) if fmt == "json" else {},
        s.cef() if fmt == "cef" else "", s.leef() if fmt == "leef" else "",
        s.ecs(opts.hostname) if fmt == "ecs" else {},
    )
