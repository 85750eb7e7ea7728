"""Pseudonymisation and removal of personal data in every record the sensor writes ([privacy])."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from bisect import bisect_left
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, Final

from sensor.errors import ConfigError
from sensor.records import (
    Alert,
    Attachment,
    AuthAttempt,
    ConnRecord,
    MailTransaction,
    Recipient,
    SmtpSession,
)

if TYPE_CHECKING:
    from sensor.config import PrivacyConfig

REDACTED: Final = "[redacted]"
"""What a dropped value becomes where it is quoted inside text (a reply line, a summary)."""
PREFIX: Final = "h:"
"""Every pseudonym starts with it: h:<hex>, or h:<hex>@domain with keep_domain."""
MIN_KEY_BYTES: Final = 16
"""Shortest key file accepted (128 bits, the HMAC-SHA256 security level RFC 2104 asks for)."""
MIN_HEX, MAX_HEX = 8, 64
"""Bounds of privacy.pseudonym_hex (32 to 256 bits of the HMAC-SHA256)."""
MIN_QUOTED: Final = 4
"""Values shorter than this are replaced in text only where they are the whole text: replacing
every "a" or "ok" inside reply lines would destroy them and protect nobody."""
CACHE_ENTRIES: Final = 65536
"""Pseudonyms remembered (the same IPs and addresses recur in every record); the cache is
emptied when full, so it stays bounded whatever the traffic."""

# Kinds of value: how a value is normalised before it is keyed, and how it is written.
VALUE: Final = "value"  # the text as it is
ADDRESS: Final = "address"  # a mailbox local@domain: domain lower-cased, kept with keep_domain
ADDRESSES: Final = "addresses"  # a header's address list: each mailbox, display names dropped
IP: Final = "ip"  # an IPv4/IPv6 address in canonical form
USER: Final = "user"  # an AUTH user name: a mailbox when it has an @, else as it is

_T: Final = ("transactions", "*")
_H: Final = (*_T, "headers")

FIELDS: Final[dict[str, tuple[tuple[str, tuple[str, ...], str], ...]]] = {
    # name users write: (record type, path in the record's JSON object, kind), ...
    # ("*" is every element of a list)
    "client_ip": (("session", ("client_ip",), IP), ("conn", ("client_ip",), IP)),
    "server_ip": (("session", ("server_ip",), IP), ("conn", ("server_ip",), IP)),
    "host": (("alert", ("host",), IP), ("host_score", ("host",), IP)),
    "uid": (("session", ("uid",), VALUE), ("conn", ("uid",), VALUE),
            ("alert", ("evidence", "sessions"), VALUE)),
    "banner": (("session", ("banner",), VALUE),),
    "helo": (("session", ("helo",), VALUE),),
    "auth_user": (("session", ("auth", "*", "user"), USER),),
    "mail_from": (("session", (*_T, "mail_from"), ADDRESS),),
    "rcpt_to": (("session", (*_T, "rcpt_to", "*", "addr"), ADDRESS),),
    "reply_text": (("session", ("tls_reply",), VALUE),
                   ("session", (*_T, "rcpt_to", "*", "text"), VALUE),
                   ("session", (*_T, "last_reply"), VALUE)),
    "header_from": (("session", (*_H, "from"), ADDRESSES),),
    "header_to": (("session", (*_H, "to"), ADDRESSES),),
    "header_cc": (("session", (*_H, "cc"), ADDRESSES),),
    "header_reply_to": (("session", (*_H, "reply_to"), ADDRESSES),),
    "subject": (("session", (*_H, "subject"), VALUE),),
    "message_id": (("session", (*_H, "msg_id"), VALUE), ("session", (*_H, "in_reply_to"), VALUE)),
    "user_agent": (("session", (*_H, "user_agent"), VALUE),),
    "x_originating_ip": (("session", (*_H, "x_originating_ip"), IP),),
    "received": (("session", (*_H, "first_received"), VALUE),
                 ("session", (*_H, "second_received"), VALUE),
                 ("session", (*_T, "received_ips"), IP)),
    "attachment_name": (("session", (*_T, "attachments", "*", "filename"), VALUE),),
    "attachment_type": (("session", (*_T, "attachments", "*", "content_type"), VALUE),),
    "attachment_hash": (("session", (*_T, "attachments", "*", "sha256"), VALUE),),
}  # fmt: skip

TEXT_FIELDS: Final = frozenset({"banner", "reply_text", "subject", "user_agent", "received"})
"""Fields that are prose (the server's or the sender's): when not named themselves, every
mailbox and IP in them is replaced like those in text outside the vocabulary. The other fields
not named are left as they are, but for values of named fields found in them."""
_ADDRESS_FIELDS: Final = ("mail_from", "rcpt_to", "header_from", "header_to", "header_cc",
                          "header_reply_to", "auth_user")
_IP_FIELDS: Final = ("client_ip", "server_ip", "host", "x_originating_ip", "received")
_MESSAGE: Final = ("subject", "message_id", "user_agent", "attachment_name")
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "addresses": _ADDRESS_FIELDS,
    "ips": (*_IP_FIELDS, "uid"),
    "message": _MESSAGE,
    "attachments": ("attachment_name", "attachment_type", "attachment_hash"),
    "personal": (*_ADDRESS_FIELDS, *_MESSAGE, "helo"),
    "all": tuple(FIELDS),
}
"""Names standing for several fields."""
IMPLIED: Final = {"client_ip": ("host", "uid"), "server_ip": ("host", "uid")}
"""An endpoint's IP is also the alert's host, and the uid is an unkeyed hash of the endpoints
(anyone can recompute it for every candidate IP): both follow the IP when not named."""
RECORDS: Final = ("session", "conn", "alert", "host_score")

_OWN_KEYS: Final = frozenset(
    [f.name for r in (SmtpSession, MailTransaction, Recipient, Attachment, AuthAttempt,
                      ConnRecord, Alert) for f in fields(r)]
    + ["schema", "date", "from", "to", "cc", "reply_to", "subject", "msg_id", "in_reply_to",
       "x_originating_ip", "user_agent", "first_received", "second_received", "features",
       "sessions", "update", "model", "threshold", "flagged", "role", "rule_kinds",
       "top_features", "feature", "value", "training_p999", "text"])
"""Keys the sensor's records use themselves: public words, not searched for personal data."""

# Free text (reply lines, Received headers, summaries, parameters): mailboxes and IPs in it.
_DELIM: Final = r"\s<>()\[\]\\,;:@\"'`"
_MAILBOX: Final = re.compile(
    rf"(?<![^{_DELIM}])[^{_DELIM}]+@(?:\[[^\]\s]*\]|[^{_DELIM}]+)")
_IPV4: Final = re.compile(r"(?<!\d)(?:\d{1,3}\.){3}\d{1,3}(?!\d)")
_IPV6: Final = re.compile(r"(?:(?<=[Ii][Pp][Vv]6:)|(?<![0-9A-Za-z:.]))"
                          r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})"
                          r"(?![0-9A-Fa-f:])")
_HEX_LOCAL: Final = re.compile(r"[0-9a-f]+")


def expand(names: tuple[str, ...] | list[str], where: str = "privacy") -> set[str]:
    """The field names a list of field and group names stands for; ConfigError on unknown ones."""
    out: set[str] = set()
    for name in names:
        if name in GROUPS:
            out.update(GROUPS[name])
        elif name in FIELDS:
            out.add(name)
        else:
            known = ", ".join([*FIELDS, *GROUPS])
            raise ConfigError(f"{where}: expected field or group names ({known}), got "
                              f"\"{name}\"")
    return out


KEEP, PSEUDO, DROP = 0, 1, 2  # what happens to a field: kept (but for named values), ...


class _Leaf:
    """What happens to the value at the end of one field's path."""

    __slots__ = ("kind", "mode")

    def __init__(self, kind: str, mode: int) -> None:
        self.kind = kind
        self.mode = mode


Trie = dict[str, Any]  # key -> Trie or _Leaf


def _tries(drop: set[str], pseudo: set[str]) -> dict[str, Trie]:
    """Per record type, the paths of the vocabulary's fields as a tree of keys."""
    tries: dict[str, Trie] = {r: {} for r in RECORDS}
    for name, places in FIELDS.items():
        mode = DROP if name in drop else PSEUDO if name in pseudo else KEEP
        if mode == KEEP and name in TEXT_FIELDS:
            continue  # searched like any text
        for record, path, kind in places:
            node = tries[record]
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = _Leaf(kind, mode)
    return tries


class _Known:
    """The values of one record's transformed fields and what they became, to find in its text."""

    __slots__ = ("exact", "quoted", "sizes")

    def __init__(self) -> None:
        self.exact: dict[str, str] = {}
        self.quoted: list[tuple[str, str]] = []
        self.sizes: list[int] = []  # minus the length of each of quoted, ascending

    def done(self) -> _Known:
        """Sort the values to look for inside text, longest first."""
        self.quoted = sorted(((k, v) for k, v in self.exact.items() if len(k) >= MIN_QUOTED),
                             key=lambda kv: -len(kv[0]))
        self.sizes = [-len(k) for k, _ in self.quoted]
        return self


class Privacy:
    """Drops and pseudonymises the configured fields of sessions, conns, alerts and host scores.

    Detection runs on the raw records; only what is written passes through here. Values are
    keyed with HMAC-SHA256, so the same value and key give the same pseudonym in every record,
    run and sensor sharing the key. Text fields not named (reply lines, summaries, parameters)
    are searched for the record's transformed values and, when an address or IP field is
    configured, for anything shaped like a mailbox or an IP, which are treated the same way.
    No value of any type makes a method raise.
    """

    def __init__(self, drop: set[str] | None = None, pseudonymise: set[str] | None = None,
                 key: bytes = b"", keep_domain: bool = False, pseudonym_hex: int = 16,
                 fold_local_case: bool = False) -> None:
        drop = set(drop or ())
        pseudo = set(pseudonymise or ())
        for name, implied in IMPLIED.items():
            for other in implied:
                if other in drop or other in pseudo:
                    continue  # named explicitly: as written
                if name in pseudo:
                    pseudo.add(other)
        for name, implied in IMPLIED.items():
            for other in implied:
                if name in drop and other not in pseudo:
                    drop.add(other)
        if pseudo and len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"privacy: a key of at least {MIN_KEY_BYTES} bytes is needed to "
                              "pseudonymise")
        self.drop = frozenset(drop)
        self.pseudonymise = frozenset(pseudo)
        self.enabled = bool(drop or pseudo)
        self._key = key
        self._keep_domain = keep_domain
        self._hex = pseudonym_hex
        self._fold = fold_local_case
        self._tries = _tries(drop, pseudo)
        self._cache: dict[str, str] = {}
        self._mailbox = self._action(_ADDRESS_FIELDS)
        self._ip = self._action(_IP_FIELDS)

    @classmethod
    def from_config(cls, cfg: PrivacyConfig) -> Privacy:
        """The transform of a [privacy] section; reads its key file when the key is not loaded."""
        key = cfg.key
        if cfg.pseudonymise and not key:
            from sensor.config import read_key

            key = read_key(cfg.key_file, "privacy.key_file")
        return cls(expand(cfg.drop), expand(cfg.pseudonymise), key, cfg.keep_domain,
                   cfg.pseudonym_hex, cfg.fold_local_case)

    def _action(self, names: tuple[str, ...]) -> str | None:
        """For mailboxes or IPs found in text: "pseudo", "drop" or None (left alone)."""
        if any(n in self.pseudonymise for n in names):
            return "pseudo"
        if any(n in self.drop for n in names):
            return "drop"
        return None

    # --- the records ------------------------------------------------------------------------

    def session(self, d: dict[str, Any]) -> dict[str, Any]:
        """A session_to_dict object with the configured fields dropped or pseudonymised."""
        return self._record(d, "session")

    def conn(self, d: dict[str, Any]) -> dict[str, Any]:
        """A conn_to_dict object with the configured fields dropped or pseudonymised."""
        return self._record(d, "conn")

    def host_score(self, d: dict[str, Any]) -> dict[str, Any]:
        """A host-score line (Detector.host_scores) with its host transformed."""
        return self._record(d, "host_score")

    def alert(self, a: Alert) -> Alert:
        """The alert with host, summary and evidence transformed (a dropped host is "")."""
        if not self.enabled:
            return a
        trie = self._tries["alert"]
        known = _Known()
        self._collect({"host": a.host, "evidence": a.evidence}, trie, known)
        known.done()
        host: Any = a.host
        leaf = trie.get("host")
        if isinstance(leaf, _Leaf) and leaf.mode != KEEP:
            host = "" if leaf.mode == DROP else self._value(leaf.kind, a.host)
        else:
            host = self._replace_known(a.host, known)
        evidence = self._walk(a.evidence, trie.get("evidence"), known)
        return replace(a, host=host if isinstance(host, str) else str(host),
                       summary=self._scrub(a.summary, known),
                       evidence=evidence if isinstance(evidence, dict) else {})

    def text(self, s: str) -> str:
        """Free text printed or sent by the CLI, with mailboxes and IPs treated as configured."""
        if not self.enabled:
            return s
        return self._scrub(s, _Known())

    def _record(self, d: dict[str, Any], record: str) -> dict[str, Any]:
        if not self.enabled:
            return d
        trie = self._tries[record]
        known = _Known()
        self._collect(d, trie, known)
        out = self._walk(d, trie, known.done())
        return out if isinstance(out, dict) else {}

    # --- walking ----------------------------------------------------------------------------

    def _collect(self, v: Any, node: Trie, known: _Known) -> None:
        """Remember every value found at a transformed field's path, with its replacement."""
        if isinstance(v, dict):
            for key, child in node.items():
                if key in v:
                    self._remember(v[key], child, known)
        elif isinstance(v, (list, tuple)) and "*" in node:
            for item in v:
                self._remember(item, node["*"], known)

    def _remember(self, v: Any, child: Trie | _Leaf, known: _Known) -> None:
        if not isinstance(child, _Leaf):
            self._collect(v, child, known)
            return
        if child.mode == KEEP:
            return
        for s in _strings(v):
            if s and s not in known.exact:
                known.exact[s] = REDACTED if child.mode == DROP else self._value(child.kind, s)

    def _walk(self, v: Any, node: Trie | None, known: _Known) -> Any:
        """A copy of v: fields on the tree transformed, every other string searched."""
        if isinstance(v, str):
            return self._scrub(v, known)
        if isinstance(v, dict):
            out: dict[Any, Any] = {}
            for key, item in v.items():
                child = node.get(key) if node is not None and isinstance(key, str) else None
                if isinstance(child, _Leaf):
                    if child.mode == PSEUDO:
                        out[key] = self._value(child.kind, item)
                    elif child.mode == KEEP:
                        out[key] = self._walk_known(item, known)
                    continue
                if child is None and isinstance(key, str) and key not in _OWN_KEYS:
                    key = self._scrub(key, known)
                kind = type(item)
                if kind is int or kind is float or kind is bool or item is None:
                    out[key] = item  # most of a record: numbers, flags, absent values
                elif kind is str:
                    out[key] = self._scrub(item, known)
                else:
                    out[key] = self._walk(item, child, known)
            return out
        if isinstance(v, (list, tuple)):
            child = node.get("*") if node is not None else None
            return [self._walk(x, child if isinstance(child, dict) else None, known) for x in v]
        return v

    def _walk_known(self, v: Any, known: _Known) -> Any:
        """A copy of v with the record's named values replaced in its strings, nothing else."""
        if isinstance(v, str):
            return self._replace_known(v, known)
        if isinstance(v, dict):
            return {self._replace_known(k, known) if isinstance(k, str) else k:
                    self._walk_known(x, known) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self._walk_known(x, known) for x in v]
        return v

    # --- values -----------------------------------------------------------------------------

    def _value(self, kind: str, v: Any) -> Any:
        """The pseudonym of a field's value; lists and tables element by element."""
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, str):
            return self._pseudonym(kind, v)
        if isinstance(v, (list, tuple)):
            return [self._value(kind, x) for x in v]
        if isinstance(v, dict):
            return {self._pseudonym(VALUE, _text(k)): self._value(kind, x) for k, x in v.items()}
        return self._pseudonym(VALUE, _text(v))

    def _pseudonym(self, kind: str, s: str) -> str:
        if not s:
            return s  # the null sender <>, an empty subject: nothing personal, and meaningful
        tag = kind + "\0" + s
        got = self._cache.get(tag)
        if got is None:
            if kind == ADDRESS or (kind == USER and "@" in s):
                got = self._mailbox_pseudonym(s)
            elif kind == ADDRESSES:
                found = [m.group(0) for m in _MAILBOX.finditer(s)]
                got = ", ".join(self._pseudonym(ADDRESS, a) for a in found) if found \
                    else self._keyed(s)
            elif kind == IP:
                got = self._keyed(_canonical_ip(s) or s)
            else:
                got = self._keyed(s)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[tag] = got
        return got

    def _keyed(self, s: str) -> str:
        mac = hmac.new(self._key, s.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return PREFIX + mac.hexdigest()[: self._hex]

    def _mailbox_pseudonym(self, s: str) -> str:
        """local@domain keyed as local@domain-lower-cased; h:<hex>@domain with keep_domain."""
        local, at, domain = s.strip().strip("<>").rpartition("@")
        if not at or not local or not domain:
            return self._keyed(s)
        domain = domain.lower().rstrip(".")
        if self._fold:
            local = local.casefold()
        hexed = self._keyed(f"{local}@{domain}")
        return f"{hexed}@{domain}" if self._keep_domain and domain else hexed

    # --- text -------------------------------------------------------------------------------

    def _replace_known(self, s: str, known: _Known) -> str:
        """Text with the values of the record's named fields replaced."""
        got = known.exact.get(s)
        if got is not None:
            return got
        quoted = known.quoted
        for i in range(bisect_left(known.sizes, -len(s)), len(quoted)):  # those not longer
            value, replacement = quoted[i]
            if value in s:
                s = s.replace(value, replacement)
        return s

    def _scrub(self, s: str, known: _Known) -> str:
        """Text with the record's named values, mailboxes and IPs replaced."""
        got = known.exact.get(s)
        if got is not None:
            return got
        s = self._replace_known(s, known)
        if self._mailbox is not None and "@" in s:
            s = _MAILBOX.sub(self._mailbox_match, s)
        if self._ip is not None:
            if "." in s:
                s = _IPV4.sub(self._ip_match, s)
            if ":" in s:
                s = _IPV6.sub(self._ip_match, s)
        return s

    def _mailbox_match(self, m: re.Match[str]) -> str:
        text = m.group(0)
        start = m.start()
        local = text.partition("@")[0]
        if m.string[max(0, start - 2):start] == PREFIX and len(local) == self._hex \
                and _HEX_LOCAL.fullmatch(local):
            return text  # one of our pseudonyms, kept with its domain
        return REDACTED if self._mailbox == "drop" else self._pseudonym(ADDRESS, text)

    def _ip_match(self, m: re.Match[str]) -> str:
        text = m.group(0)
        rest = ""
        if _canonical_ip(text) is None:
            trimmed = text.rstrip(":")  # "[::]:25" written without brackets: ":::25"
            if trimmed == text or _canonical_ip(trimmed) is None:
                return text  # 999.1.2.3, a time of day 12:30:45: not an address
            text, rest = trimmed, text[len(trimmed):]
        return (REDACTED if self._ip == "drop" else self._pseudonym(IP, text)) + rest


def _canonical_ip(s: str) -> str | None:
    """The IP address in its canonical text form, None when s is not one."""
    try:
        return str(ipaddress.ip_address(s.strip()))
    except ValueError:
        return None


def _text(v: object) -> str:
    """Any value as text, never raising (a str() that fails gives its type name)."""
    try:
        return v if isinstance(v, str) else str(v)
    except Exception:  # a value's own __str__ may raise anything
        return type(v).__name__


def _strings(v: Any) -> list[str]:
    """Every text inside a value (scalars other than None and booleans as their text)."""
    if v is None or isinstance(v, bool):
        return []
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in _strings(x)]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (*_strings(k), *_strings(x))]
    return [_text(v)]
