"""Syslog messages for alerts and SMTP sessions: RFC 5424/3164, text, JSON, CEF, LEEF, ECS.

Every function here is pure: an alert or a session dict in, one complete syslog message out
(header and body, no transport framing, no trailing LF or NUL), and no string content can make
it raise or split the message. docs/siem.md shows one line per format.

Severity mapping (our alert severity is 1-10, DESIGN.md):

    ours   syslog (RFC 5424 6.2.1)   CEF (0-10)   LEEF sev (1-10)
    10     1 alert                   10           10
    9      2 critical                9            9
    7-8    3 error                   7-8          7-8
    5-6    4 warning                 5-6          5-6
    3-4    5 notice                  3-4          3-4
    1-2    6 informational           1-2          1-2
    session records: syslog 6 informational, CEF 1, LEEF 1

Attacker-chosen text (HELO names, subjects, addresses, summaries that quote them) is escaped,
never dropped: a backslash becomes ``\\\\``, LF/CR/TAB become ``\\n``/``\\r``/``\\t``, every
other C0 or C1 control, DEL and a lone surrogate become ``\\uXXXX``; each format then adds its
own escapes (RFC 5424 PARAM-VALUE: ``\\"`` and ``\\]``; CEF header: ``\\|``; CEF extension:
``\\=``). The result is valid UTF-8 on one line, and reads back exactly with those rules.
Header fields (HOSTNAME, APP-NAME, PROCID, MSGID, SD-ID and PARAM-NAMEs) allow printable
US-ASCII only (RFC 5424 6): anything else becomes ``_`` (non-ASCII ``?``), cut at the RFC's
length limits.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, Final

import orjson

from sensor import __version__
from sensor.detect.alerts import alert_to_dict
from sensor.records import Alert

FORMATS: Final = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")
HEADERS: Final = ("rfc5424", "rfc3164")

VENDOR: Final = "port25"
PRODUCT: Final = "port25-sensor"
NILVALUE: Final = "-"  # RFC 5424 6
BOM: Final = b"\xef\xbb\xbf"  # RFC 5424 6.4: a UTF-8 MSG starts with the BOM
HOSTNAME_MAX: Final = 255  # RFC 5424 6
APP_NAME_MAX: Final = 48
PROCID_MAX: Final = 128
MSGID_MAX: Final = 32
SD_NAME_MAX: Final = 32  # SD-ID and PARAM-NAME (RFC 5424 6.3)
TAG_MAX: Final = 32  # RFC 3164 4.1.3
SESSION_SEVERITY: Final = 1  # a session record is information, not an alert
LEEF_DELIMITER: Final = "x09"  # LEEF 2.0 header field 6: the tab, in its hex form
LEEF_TIME_FORMAT: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"  # Java SimpleDateFormat, for devTime
ECS_VERSION: Final = "8.11.0"
SESSION_LIST_MAX: Final = 16  # items kept per list in a session message; the rest is counted
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
    """Our alert severity (1-10) as a syslog severity (0-7, RFC 5424 6.2.1), see the table."""
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


# --- escaping -----------------------------------------------------------------------------------

def _table(extra: str) -> dict[int, str]:
    """A str.translate table: every ASCII character listed (a miss costs an exception inside
    translate), controls, DEL, C1 and surrogates escaped, and backslash plus `extra` escaped."""
    table = {c: chr(c) for c in range(0x80)}
    table.update({c: f"\\u{c:04x}" for c in (*range(0x20), *range(0x7F, 0xA0),
                                            *range(0xD800, 0xE000))})  # fmt: skip
    table.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"})
    table.update({ord(c): "\\" + c for c in extra})
    return table


_TEXT: Final = _table("")  # free text (MSG) and LEEF values
_SD_VALUE: Final = _table('"]')  # RFC 5424 6.3.3
_CEF_HEAD: Final = _table("|")  # CEF header fields (also LEEF's)
_CEF_EXT: Final = _table("=")  # CEF extension values


# A string that is printable (no control, separator other than space, or surrogate) and has
# none of its escaped characters is its own escape: most values are, and skip translate.
def text(s: str) -> str:
    """Free text on one line: controls, DEL, lone surrogates and backslashes escaped."""
    return s if s.isprintable() and "\\" not in s else s.translate(_TEXT)


def _sd_value(s: str) -> str:
    if s.isprintable() and "\\" not in s and '"' not in s and "]" not in s:
        return s
    return s.translate(_SD_VALUE)


def _cef_head(s: str) -> str:
    return s if s.isprintable() and "\\" not in s and "|" not in s else s.translate(_CEF_HEAD)


def _cef_ext(s: str) -> str:
    return s if s.isprintable() and "\\" not in s and "=" not in s else s.translate(_CEF_EXT)


_PRINTUSASCII: Final = bytes(c if 33 <= c <= 126 else 0x5F for c in range(256))
_SD_NAME: Final = bytes(0x5F if c in b'= ]"' else _PRINTUSASCII[c] for c in range(256))


def _field(s: str, limit: int, table: bytes = _PRINTUSASCII) -> str:
    """A header field: printable US-ASCII, at most ``limit`` characters, never empty."""
    out = s.encode("ascii", "replace").translate(table)[:limit].decode("ascii")
    return out or NILVALUE


def sd_name(s: str) -> str:
    """An SD-ID or PARAM-NAME (RFC 5424 6.3.2): printable US-ASCII but ``= ]"``, 1-32 chars."""
    return _field(s, SD_NAME_MAX, _SD_NAME)


def _num(x: object) -> str:
    """A number as text: integers without a fraction, floats as their shortest repr."""
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isfinite(x) and x.is_integer() and abs(x) < 1e18:
            return str(int(x))
        return repr(x)
    return str(x)


def _utc(ts: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def rfc3339(ts: float) -> str:
    """Packet time as RFC 3339 UTC with milliseconds (as the alert's ``time``), "-" if none."""
    dt = _utc(ts)
    if dt is None:
        return NILVALUE
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond // 1000:03d}Z")  # fmt: skip


def _ms(ts: float) -> int | None:
    return int(ts * 1000) if math.isfinite(ts) and abs(ts) < 1e15 else None


def _json(obj: object) -> str:
    """Compact JSON on one line (control characters escaped; a lone surrogate as \\udcXX)."""
    try:
        return orjson.dumps(obj).decode("utf-8")
    except orjson.JSONEncodeError:
        out = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
        return out.encode("utf-8", "backslashreplace").decode("utf-8")


@lru_cache(maxsize=4096)  # the same clients and servers come back session after session
def _is_ip(s: str) -> bool:
    try:
        ip_address(s)
    except ValueError:
        return False
    return True


# --- syslog headers -----------------------------------------------------------------------------

def _header_kind(opts: FormatOptions) -> str:
    if opts.header in HEADERS:
        return opts.header
    return "rfc3164" if opts.format == "rfc3164" else "rfc5424"


def _pri(opts: FormatOptions, severity: int) -> int:
    return min(max(opts.facility, 0), 23) * 8 + severity


def _rfc5424(opts: FormatOptions, sev: int, ts: float, msgid: str, sd: str, msg: bytes) -> bytes:
    head = (f"<{_pri(opts, sev)}>1 {rfc3339(ts)} {_field(opts.hostname, HOSTNAME_MAX)} "
            f"{_field(opts.app_name, APP_NAME_MAX)} {_field(opts.procid, PROCID_MAX)} "
            f"{_field(msgid, MSGID_MAX)} {sd}")  # fmt: skip
    return head.encode("utf-8") + (b" " + msg if msg else b"")


def _rfc3164(opts: FormatOptions, sev: int, ts: float, msg: bytes) -> bytes:
    dt = _utc(ts) or datetime.fromtimestamp(0, UTC)
    stamp = f"{_MONTHS[dt.month - 1]} {dt.day:2d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    tag = _field(opts.app_name, TAG_MAX)
    pid = "" if opts.procid in ("", NILVALUE) else f"[{_field(opts.procid, PROCID_MAX)}]"
    head = f"<{_pri(opts, sev)}>{stamp} {_field(opts.hostname, HOSTNAME_MAX)} {tag}{pid}:"
    return head.encode("ascii") + (b" " + msg if msg else b"")


def _sd(sd_id: str, params: list[tuple[str, str]]) -> str:
    """One SD-ELEMENT; values are raw text, escaped here (RFC 5424 6.3.3)."""
    body = "".join(f' {k}="{_sd_value(v)}"' for k, v in params)
    return f"[{sd_name(sd_id)}{body}]"


def _message(opts: FormatOptions, sev: int, ts: float, msgid: str, params: list[tuple[str, str]],
             summary: str, doc: dict[str, Any], cef: str, leef: str, ecs: dict[str, Any]) -> bytes:
    """The message of one record in the chosen format (bodies already built by the caller)."""
    fmt = opts.format
    if fmt == "json":
        body = _json(doc).encode("utf-8")
    elif fmt == "cef":
        body = cef.encode("utf-8")
    elif fmt == "leef":
        body = leef.encode("utf-8")
    elif fmt == "ecs":
        body = _json(ecs).encode("utf-8")
    else:
        body = text(summary).encode("utf-8")
    if _header_kind(opts) == "rfc3164":
        return _rfc3164(opts, sev, ts, body)
    sd = _sd(opts.sd_id, params) if fmt == "rfc5424" else NILVALUE
    if fmt == "json":
        body = BOM + body
    return _rfc5424(opts, sev, ts, msgid, sd, body)


# --- CEF and LEEF -------------------------------------------------------------------------------

def _cef(event_id: str, name: str, severity: int, ext: list[tuple[str, str]]) -> str:
    head = "|".join(_cef_head(s) for s in (VENDOR, PRODUCT, __version__, event_id, name))
    return (f"CEF:0|{head}|{cef_severity(severity)}|"
            + " ".join(f"{k}={_cef_ext(v)}" for k, v in ext))


def _leef(event_id: str, attrs: list[tuple[str, str]]) -> str:
    head = "|".join(_cef_head(s) for s in (VENDOR, PRODUCT, __version__, event_id))
    return (f"LEEF:2.0|{head}|{LEEF_DELIMITER}|"
            + "\t".join(f"{k}={text(v)}" for k, v in attrs))


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
            out.append((name, _num(v)))
    return out


def _sessions(alert: Alert) -> list[str]:
    ids = alert.evidence.get("sessions")
    return [str(x) for x in ids] if isinstance(ids, list) else []


def _alert_params(alert: Alert, nums: list[tuple[str, str]]) -> list[tuple[str, str]]:
    params = [("sid", str(alert.sid)), ("kind", alert.kind), ("host", alert.host),
              ("severity", str(alert.severity)), ("score", _num(alert.score)),
              ("window", _num(alert.window_s)), ("source", alert.source), ("rule", alert.rule),
              ("sensor", alert.sensor), ("first_seen", rfc3339(alert.first_seen)),
              ("last_seen", rfc3339(alert.last_seen)),
              ("sessions", ",".join(_sessions(alert)))]  # fmt: skip
    update = alert.evidence.get("update")
    if update is not None:
        params.append(("update", str(update)))
    return params + nums


def _alert_cef(alert: Alert, nums: list[tuple[str, str]]) -> str:
    ext: list[tuple[str, str]] = []
    rt, start, end = _ms(alert.ts), _ms(alert.first_seen), _ms(alert.last_seen)
    if rt is not None:
        ext.append(("rt", str(rt)))
    ext.append(("src" if _is_ip(alert.host) else "shost", alert.host))
    ext += [("cnt", str(len(_sessions(alert)))), ("cat", alert.kind), ("dvchost", alert.sensor)]
    if start is not None:
        ext.append(("start", str(start)))
    if end is not None:
        ext.append(("end", str(end)))
    ext += [("cs1Label", "rule"), ("cs1", alert.rule), ("cs2Label", "source"),
            ("cs2", alert.source), ("cs3Label", "sessions"), ("cs3", ",".join(_sessions(alert))),
            ("cs4Label", "counts"), ("cs4", " ".join(f"{k}:{v}" for k, v in nums)),
            ("cfp1Label", "score"), ("cfp1", _num(alert.score)),
            ("cn1Label", "window_s"), ("cn1", _num(alert.window_s))]  # fmt: skip
    ints = [(k, v) for k, v in nums if v.lstrip("-").isdigit()][:2]
    for i, (k, v) in enumerate(ints, start=2):
        ext += [(f"cn{i}Label", k), (f"cn{i}", v)]
    update = alert.evidence.get("update")
    if update is not None:
        ext += [("cs5Label", "update"), ("cs5", str(update))]
    ext.append(("msg", alert.summary))
    return _cef(str(alert.sid), alert.kind, alert.severity, ext)


def _alert_leef(alert: Alert, nums: list[tuple[str, str]]) -> str:
    attrs = [("cat", alert.kind), ("devTime", rfc3339(alert.ts)),
             ("devTimeFormat", LEEF_TIME_FORMAT), ("sev", str(leef_severity(alert.severity))),
             ("src" if _is_ip(alert.host) else "srcHost", alert.host)]  # fmt: skip
    attrs += [(k, v) for k, v in _alert_params(alert, nums)
              if k not in ("kind", "host", "severity")]
    attrs.append(("msg", alert.summary))
    return _leef(str(alert.sid), attrs)


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
        "source": {"ip": alert.host} if _is_ip(alert.host) else {"address": alert.host},
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


# --- sessions -----------------------------------------------------------------------------------

def compact_session(d: dict[str, Any]) -> dict[str, Any]:
    """The session dict with every list cut at SESSION_LIST_MAX items; what was cut is counted
    under "truncated" (path -> items left out), absent when nothing was."""
    out = dict(d)
    cut: dict[str, int] = {}
    for key in ("extensions", "commands", "auth", "transactions"):
        v = out.get(key)
        if isinstance(v, list) and len(v) > SESSION_LIST_MAX:
            cut[key] = len(v) - SESSION_LIST_MAX
            out[key] = v[:SESSION_LIST_MAX]
    txns = out.get("transactions")
    if isinstance(txns, list):
        new = []
        for i, t in enumerate(txns):
            if isinstance(t, dict):
                t = dict(t)
                for key in ("rcpt_to", "attachments", "received_ips"):
                    v = t.get(key)
                    if isinstance(v, list) and len(v) > SESSION_LIST_MAX:
                        cut[f"transactions[{i}].{key}"] = len(v) - SESSION_LIST_MAX
                        t[key] = v[:SESSION_LIST_MAX]
            new.append(t)
        out["transactions"] = new
    if cut:
        out["truncated"] = cut
    return out


def _str(v: object) -> str:
    return "" if v is None else v if isinstance(v, str) else str(v)


def _float(v: object) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


class _Session:
    """The key fields of a session dict, read once for every format."""

    __slots__ = ("client", "cport", "d", "helo", "mail_from", "msgs", "rcpts", "server", "sport",
                 "subject", "ts", "txns", "uid", "users")

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d
        self.uid = _str(d.get("uid"))
        self.ts = _float(d.get("ts"))
        self.client, self.cport = _str(d.get("client_ip")), _str(d.get("client_port"))
        self.server, self.sport = _str(d.get("server_ip")), _str(d.get("server_port"))
        self.helo = _str(d.get("helo"))
        txns = d.get("transactions")
        self.txns: list[dict[str, Any]] = [t for t in txns if isinstance(t, dict)] if isinstance(
            txns, list) else []
        self.rcpts: list[str] = []
        self.msgs = 0
        self.mail_from = ""
        self.subject = ""
        for t in self.txns:
            rc = t.get("rcpt_to")
            if isinstance(rc, list):
                self.rcpts += [_str(r.get("addr")) for r in rc if isinstance(r, dict)]
            if t.get("accepted") and t.get("complete"):
                self.msgs += 1
            if not self.mail_from:
                self.mail_from = _str(t.get("mail_from"))
            h = t.get("headers")
            if not self.subject and isinstance(h, dict):
                self.subject = _str(h.get("subject"))
        auth = d.get("auth")
        self.users: list[str] = []
        if isinstance(auth, list):
            self.users = [_str(a.get("user")) for a in auth
                          if isinstance(a, dict) and a.get("user")]

    def rcpt_text(self) -> str:
        """Recipients, comma-separated, the first SESSION_LIST_MAX with a "+N more" marker."""
        shown = ",".join(self.rcpts[:SESSION_LIST_MAX])
        more = len(self.rcpts) - SESSION_LIST_MAX
        return f"{shown},+{more} more" if more > 0 else shown

    def tally(self, key: str) -> str:
        """An object of counts (reply codes, anomalies) as "k:n,k:n"."""
        v = self.d.get(key)
        return ",".join(f"{k}:{n}" for k, n in v.items()) if isinstance(v, dict) else ""

    def auth_text(self) -> str:
        auth = self.d.get("auth")
        if not isinstance(auth, list):
            return ""
        parts = [f"{_str(a.get('mechanism'))}:{_str(a.get('outcome'))}"
                 for a in auth[:SESSION_LIST_MAX] if isinstance(a, dict)]
        return ",".join(parts)

    def params(self) -> list[tuple[str, str]]:
        """The 5424 structured data (also LEEF's attributes)."""
        d = self.d
        return [("uid", self.uid), ("client_ip", self.client), ("client_port", self.cport),
                ("server_ip", self.server), ("server_port", self.sport),
                ("duration_s", _num(d.get("duration_s", 0))), ("helo", self.helo),
                ("helo_kind", _str(d.get("helo_kind"))),
                ("tls", "1" if d.get("tls_established") else "0"),
                ("auth", self.auth_text()), ("auth_user", ",".join(self.users[:4])),
                ("transactions", str(len(self.txns))), ("messages", str(self.msgs)),
                ("rcpts", str(len(self.rcpts))), ("mail_from", self.mail_from),
                ("rcpt_to", self.rcpt_text()), ("subject", self.subject),
                ("reply_codes", self.tally("reply_codes")),
                ("anomalies", self.tally("anomalies")),
                ("bytes_from_client", _num(d.get("bytes_from_client", 0))),
                ("bytes_from_server", _num(d.get("bytes_from_server", 0)))]  # fmt: skip

    def summary(self) -> str:
        return (f"SMTP session {self.uid} {self.client}:{self.cport} -> {self.server}:"
                f"{self.sport}: {len(self.txns)} transactions, {self.msgs} messages, "
                f"{len(self.rcpts)} recipients")  # fmt: skip

    def cef(self) -> str:
        d = self.d
        ext: list[tuple[str, str]] = []
        rt = _ms(self.ts)
        if rt is not None:
            ext.append(("rt", str(rt)))
        ext += [("src" if _is_ip(self.client) else "shost", self.client), ("spt", self.cport),
                ("dst" if _is_ip(self.server) else "dhost", self.server), ("dpt", self.sport),
                ("proto", "TCP"), ("app", "SMTP"), ("cat", "smtp_session"),
                ("externalId", self.uid), ("in", _num(d.get("bytes_from_client", 0))),
                ("out", _num(d.get("bytes_from_server", 0)))]  # fmt: skip
        if self.users:
            ext.append(("suser", self.users[0]))
        ext += [("cs1Label", "helo"), ("cs1", self.helo), ("cs2Label", "mail_from"),
                ("cs2", self.mail_from), ("cs3Label", "rcpt_to"), ("cs3", self.rcpt_text()),
                ("cs4Label", "subject"), ("cs4", self.subject), ("cs5Label", "anomalies"),
                ("cs5", self.tally("anomalies")), ("cs6Label", "auth"), ("cs6", self.auth_text()),
                ("cn1Label", "transactions"), ("cn1", str(len(self.txns))),
                ("cn2Label", "rcpts"), ("cn2", str(len(self.rcpts))),
                ("cn3Label", "messages"), ("cn3", str(self.msgs)),
                ("msg", self.summary())]  # fmt: skip
        return _cef("session", "smtp_session", SESSION_SEVERITY, ext)

    def leef(self) -> str:
        attrs = [("cat", "smtp_session"), ("devTime", rfc3339(self.ts)),
                 ("devTimeFormat", LEEF_TIME_FORMAT), ("sev", str(SESSION_SEVERITY)),
                 ("src" if _is_ip(self.client) else "srcHost", self.client),
                 ("srcPort", self.cport),
                 ("dst" if _is_ip(self.server) else "dstHost", self.server),
                 ("dstPort", self.sport), ("proto", "TCP")]  # fmt: skip
        if self.users:
            attrs.append(("usrName", self.users[0]))
        skip = ("client_ip", "client_port", "server_ip", "server_port")
        attrs += [(k, v) for k, v in self.params() if k not in skip]
        return _leef("session", attrs)

    def ecs(self, opts: FormatOptions) -> dict[str, Any]:
        d = self.d
        observer: dict[str, Any] = {"type": "ids", "vendor": VENDOR, "product": PRODUCT,
                                    "version": __version__}
        if opts.hostname:
            observer["hostname"] = opts.hostname
        dur = _float(d.get("duration_s"))
        event: dict[str, Any] = {"kind": "event", "category": ["network"],
                                 "type": ["connection", "protocol"], "module": VENDOR,
                                 "dataset": "port25.session", "provider": PRODUCT,
                                 "severity": SESSION_SEVERITY, "id": self.uid}
        if math.isfinite(dur) and 0 <= dur < 1e9:
            event["duration"] = int(dur * 1e9)  # ECS: nanoseconds
        email: dict[str, Any] = {}
        if self.mail_from:
            email["from"] = {"address": [self.mail_from]}
        if self.rcpts:
            email["to"] = {"address": self.rcpts[:SESSION_LIST_MAX]}
        if self.subject:
            email["subject"] = self.subject
        doc: dict[str, Any] = {
            "@timestamp": rfc3339(self.ts), "message": self.summary(),
            "ecs": {"version": ECS_VERSION}, "event": event,
            "source": _endpoint(self.client, d.get("client_port")),
            "destination": _endpoint(self.server, d.get("server_port")),
            "network": {"transport": "tcp", "protocol": "smtp"},
            "observer": observer,
        }  # fmt: skip
        if email:
            doc["email"] = email
        if self.users:
            doc["user"] = {"name": self.users[0]}
        doc["port25"] = {"session": compact_session(d)}
        return doc


def _endpoint(addr: str, port: object) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": addr} if _is_ip(addr) else {"address": addr}
    if isinstance(port, int) and not isinstance(port, bool):
        out["port"] = port
    return out


def format_session(session: dict[str, Any], opts: FormatOptions) -> bytes:
    """One complete syslog message for an SMTP session dict (``session_to_dict``), MSGID
    "session", severity informational; lists longer than SESSION_LIST_MAX are cut, with a
    marker."""
    s = _Session(session)
    fmt = opts.format
    use_sd = fmt == "rfc5424" and _header_kind(opts) == "rfc5424"
    return _message(
        opts, syslog_severity(SESSION_SEVERITY), s.ts, "session", s.params() if use_sd else [],
        s.summary(), compact_session(session) if fmt == "json" else {},
        s.cef() if fmt == "cef" else "", s.leef() if fmt == "leef" else "",
        s.ecs(opts) if fmt == "ecs" else {},
    )
