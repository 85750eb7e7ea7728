"""The key fields of an SMTP session dict, read once for every syslog format (--syslog-sessions)."""

from __future__ import annotations

import math
from typing import Any, Final

from sensor import __version__
from sensor.sinks.encoding import (
    PRODUCT,
    VENDOR,
    cef_body,
    epoch_ms,
    is_ip,
    leef_body,
    number,
    rfc3339,
)

SESSION_LIST_MAX: Final = 16  # items kept per list in a session message; the rest is counted
SESSION_SEVERITY: Final = 1  # a session record is information: CEF and LEEF 1, syslog 6
LEEF_TIME_FORMAT: Final = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"  # Java SimpleDateFormat, for devTime
ECS_VERSION: Final = "8.11.0"


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


def as_text(v: object) -> str:
    """A field as text: "" for null."""
    return "" if v is None else v if isinstance(v, str) else str(v)


def as_float(v: object) -> float:
    """A numeric field as a float: NaN for anything else."""
    return float(v) if isinstance(v, int | float) else math.nan


class SessionFields:
    """The key fields of a session dict, read once for every format."""

    __slots__ = ("client", "cport", "d", "helo", "mail_from", "msgs", "rcpts", "server", "sport",
                 "subject", "ts", "txns", "uid", "users")

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d
        self.uid = as_text(d.get("uid"))
        self.ts = as_float(d.get("ts"))
        self.client, self.cport = as_text(d.get("client_ip")), as_text(d.get("client_port"))
        self.server, self.sport = as_text(d.get("server_ip")), as_text(d.get("server_port"))
        self.helo = as_text(d.get("helo"))
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
                self.rcpts += [as_text(r.get("addr")) for r in rc if isinstance(r, dict)]
            if t.get("accepted") and t.get("complete"):
                self.msgs += 1
            if not self.mail_from:
                self.mail_from = as_text(t.get("mail_from"))
            h = t.get("headers")
            if not self.subject and isinstance(h, dict):
                self.subject = as_text(h.get("subject"))
        auth = d.get("auth")
        self.users: list[str] = []
        if isinstance(auth, list):
            self.users = [as_text(a.get("user")) for a in auth
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
        """AUTH exchanges as "MECH:outcome,..." (the first SESSION_LIST_MAX)."""
        auth = self.d.get("auth")
        if not isinstance(auth, list):
            return ""
        parts = [f"{as_text(a.get('mechanism'))}:{as_text(a.get('outcome'))}"
                 for a in auth[:SESSION_LIST_MAX] if isinstance(a, dict)]
        return ",".join(parts)

    def params(self) -> list[tuple[str, str]]:
        """The 5424 structured data (also LEEF's attributes)."""
        d = self.d
        return [("uid", self.uid), ("client_ip", self.client), ("client_port", self.cport),
                ("server_ip", self.server), ("server_port", self.sport),
                ("duration_s", number(d.get("duration_s", 0))), ("helo", self.helo),
                ("helo_kind", as_text(d.get("helo_kind"))),
                ("tls", "1" if d.get("tls_established") else "0"),
                ("auth", self.auth_text()), ("auth_user", ",".join(self.users[:4])),
                ("transactions", str(len(self.txns))), ("messages", str(self.msgs)),
                ("rcpts", str(len(self.rcpts))), ("mail_from", self.mail_from),
                ("rcpt_to", self.rcpt_text()), ("subject", self.subject),
                ("reply_codes", self.tally("reply_codes")),
                ("anomalies", self.tally("anomalies")),
                ("bytes_from_client", number(d.get("bytes_from_client", 0))),
                ("bytes_from_server", number(d.get("bytes_from_server", 0)))]  # fmt: skip

    def summary(self) -> str:
        """One sentence for MSG: uid, endpoints and counts (no attacker-chosen text)."""
        return (f"SMTP session {self.uid} {self.client}:{self.cport} -> {self.server}:"
                f"{self.sport}: {len(self.txns)} transactions, {self.msgs} messages, "
                f"{len(self.rcpts)} recipients")  # fmt: skip

    def cef(self) -> str:
        """The CEF body."""
        d = self.d
        ext: list[tuple[str, str]] = []
        rt = epoch_ms(self.ts)
        if rt is not None:
            ext.append(("rt", str(rt)))
        ext += [("src" if is_ip(self.client) else "shost", self.client), ("spt", self.cport),
                ("dst" if is_ip(self.server) else "dhost", self.server), ("dpt", self.sport),
                ("proto", "TCP"), ("app", "SMTP"), ("cat", "smtp_session"),
                ("externalId", self.uid), ("in", number(d.get("bytes_from_client", 0))),
                ("out", number(d.get("bytes_from_server", 0)))]  # fmt: skip
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
        return cef_body("session", "smtp_session", SESSION_SEVERITY, ext)

    def leef(self) -> str:
        """The LEEF 2.0 body."""
        attrs = [("cat", "smtp_session"), ("devTime", rfc3339(self.ts)),
                 ("devTimeFormat", LEEF_TIME_FORMAT), ("sev", str(SESSION_SEVERITY)),
                 ("src" if is_ip(self.client) else "srcHost", self.client),
                 ("srcPort", self.cport),
                 ("dst" if is_ip(self.server) else "dstHost", self.server),
                 ("dstPort", self.sport), ("proto", "TCP")]  # fmt: skip
        if self.users:
            attrs.append(("usrName", self.users[0]))
        skip = ("client_ip", "client_port", "server_ip", "server_port")
        attrs += [(k, v) for k, v in self.params() if k not in skip]
        return leef_body("session", attrs)

    def ecs(self, hostname: str) -> dict[str, Any]:
        """The ECS document (event.kind "event", category network)."""
        d = self.d
        observer: dict[str, Any] = {"type": "ids", "vendor": VENDOR, "product": PRODUCT,
                                    "version": __version__}
        if hostname:
            observer["hostname"] = hostname
        dur = as_float(d.get("duration_s"))
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
            "source": endpoint(self.client, d.get("client_port")),
            "destination": endpoint(self.server, d.get("server_port")),
            "network": {"transport": "tcp", "protocol": "smtp"},
            "observer": observer,
        }  # fmt: skip
        if email:
            doc["email"] = email
        if self.users:
            doc["user"] = {"name": self.users[0]}
        doc["port25"] = {"session": compact_session(d)}
        return doc


def endpoint(addr: str, port: object) -> dict[str, Any]:
    """An ECS source/destination: ip when the address is one, else address; port if an int."""
    out: dict[str, Any] = {"ip": addr} if is_ip(addr) else {"address": addr}
    if isinstance(port, int) and not isinstance(port, bool):
        out["port"] = port
    return out
