"""Turns one ConnRecord or SmtpSession into window events for its client and (our) server hosts."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from sensor.config import IPNetwork, SiteConfig
from sensor.features.schema import DISTINCT_INDEX, SUM_INDEX
from sensor.features.window import Adds, Keys
from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.anomalies import Anomaly

MAX_SITE_CACHE = 65536  # IP -> (home, mail server) answers remembered before the cache is reset

ABUSE_ANOMALIES = frozenset({
    Anomaly.UNKNOWN_COMMAND, Anomaly.NON_SMTP_VERB, Anomaly.OUT_OF_SEQUENCE,
    Anomaly.COMMAND_AFTER_421, Anomaly.TOO_MANY_RCPTS, Anomaly.TOO_MANY_COMMANDS,
    Anomaly.BDAT_INVALID_SIZE, Anomaly.PENDING_OVERFLOW, Anomaly.LINE_TRUNCATED, Anomaly.BAD_PATH,
    Anomaly.DATA_AFTER_REFUSAL, Anomaly.AUTH_TOO_MANY,
})
"""Anomalies that are a client's doing and that legitimate MTAs do not produce."""

REFUSED_STATES = frozenset({"REJ"})
UNANSWERED_STATES = frozenset({"S0", "SH", "RSTOS0"})
RESET_STATES = frozenset({"RSTR", "RSTRH"})
BLOCKED_CODES = frozenset({521, 554})  # RFC 7504 521 "does not accept mail"; RFC 5321 554
_BLOCK_TEXT = re.compile(r"block|blacklist|denylist|spamhaus|dnsbl|\brbl\b|listed", re.I)
_UNKNOWN_TEXT = re.compile(r"unknown|no such user|does not exist|not found", re.I)
USER_UNKNOWN = "5.1.1"  # RFC 3463 3.2: bad destination mailbox address


@dataclass(slots=True)
class SiteView:
    """Answers "is this ours?" for addresses and domains, with a bounded cache."""

    site: SiteConfig
    cache: dict[str, tuple[bool, bool]]

    @classmethod
    def of(cls, site: SiteConfig) -> SiteView:
        return cls(site, {})

    def roles(self, ip: str) -> tuple[bool, bool]:
        """(in home_net, authorised mail server) for an address."""
        hit = self.cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                hit = (False, False)
            else:
                hit = (_inside(addr, self.site.home_net), _inside(addr, self.site.mail_servers))
            if len(self.cache) >= MAX_SITE_CACHE:
                self.cache.clear()
            self.cache[ip] = hit
        return hit

    def local(self, domain: str) -> bool:
        """A domain we receive mail for (one of local_domains or a subdomain of one)."""
        doms = self.site.local_domains
        if domain in doms:
            return True
        return any(domain.endswith("." + d) for d in doms)


def _inside(addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
            nets: tuple[IPNetwork, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def net_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address, as text."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    return ip.rpartition(".")[0] + ".0/24"


_S = SUM_INDEX
_D = DISTINCT_INDEX


def conn_event(rec: ConnRecord, server_home: bool) -> tuple[Adds, Keys]:
    """The client's window event for one TCP connection."""
    adds: list[tuple[int, float]] = [(_S["conns"], 1)]
    state = rec.state
    failed = True
    if state in REFUSED_STATES:
        adds.append((_S["refused_conns"], 1))
    elif state in UNANSWERED_STATES:
        adds.append((_S["unanswered_conns"], 1))
    elif state in RESET_STATES and rec.bytes_to_client == 0:
        adds.append((_S["reset_conns"], 1))
    else:
        failed = False
    if failed:
        adds.append((_S["failed_conns"], 1))
    keys: list[tuple[int, str]] = [(_D["dst_ips"], rec.server_ip),
                                   (_D["dst_24s"], net_of(rec.server_ip))]
    if not server_home:
        adds.append((_S["ext_conns"], 1))
        if failed:
            adds.append((_S["ext_failed_conns"], 1))
        keys.append((_D["ext_dst_ips"], rec.server_ip))
    return tuple(adds), tuple(keys)


def spoke(s: SmtpSession) -> bool:
    """Whether any SMTP byte was exchanged (refused and unanswered connections have none)."""
    return bool(s.bytes_from_client or s.bytes_from_server or s.commands)


def _helo_flags(s: SmtpSession, view: SiteView, client_home: bool) -> tuple[bool, bool]:
    """(bad, forged) for the session's HELO/EHLO name."""
    helo, kind = s.helo, s.helo_kind
    if helo is None:
        return False, False
    bad = kind in ("bare_word", "invalid")
    if kind == "ip_literal":
        literal = helo.strip("[]").lower().removeprefix("ipv6:")
        bad = literal != s.client_ip.lower()
    name = helo.lower().rstrip(".")
    forged = not client_home and bool(view.site.local_domains) and view.local(name)
    return bad, forged


def _blocked(s: SmtpSession) -> bool:
    """Refused as a listed sender: a 554/521 greeting, a 521 anywhere, or a blocklist 5xx text."""
    if s.banner_code in BLOCKED_CODES or 521 in s.reply_codes:
        return True
    for tx in s.transactions:
        if tx.mail_code >= 500 and tx.last_reply and _BLOCK_TEXT.search(tx.last_reply):
            return True
        for r in tx.rcpt_to:
            if r.code >= 500 and _BLOCK_TEXT.search(r.text):
                return True
    return False


@dataclass(slots=True)
class SessionEvents:
    """What one session adds to its client and to its server (when the server is ours)."""

    client: tuple[Adds, Keys]
    server: tuple[Adds, Keys] | None
    authenticated: bool
    relay_rcpts: int


def session_events(s: SmtpSession, view: SiteView) -> SessionEvents:
    """The window events of one SMTP session that spoke (see `spoke`)."""
    client_home = view.roles(s.client_ip)[0]
    server_home = view.roles(s.server_ip)[0]
    a: dict[str, float] = {"sessions": 1}
    keys: list[tuple[int, str]] = []
    if s.banner_code == 0:
        a["no_banner_sessions"] = 1
    if s.tls_established:
        a["tls_sessions"] = 1
    if s.helo is not None:
        bad, forged = _helo_flags(s, view, client_home)
        a["helo_sessions"] = 1
        a["helo_bad"] = float(bad)
        a["helo_forged"] = float(forged)
        keys.append((_D["helo_names"], s.helo.lower()))
    an = s.anomalies
    if an.get(Anomaly.PREGREET):
        a["pregreet"] = 1
    if _blocked(s):
        a["blocked"] = 1
    abuse = sum(n for name, n in an.items() if name in ABUSE_ANOMALIES)
    if abuse:
        a["abuse_anomalies"] = abuse
    if an.get(Anomaly.NON_SMTP_VERB):
        a["non_smtp"] = 1
    if an.get(Anomaly.STRIPPED_STARTTLS):
        a["stripped_starttls"] = 1
    a["bytes_out"] = s.bytes_from_client
    authed = False
    for att in s.auth:
        a["auth_attempts"] = a.get("auth_attempts", 0) + 1
        if att.outcome == "failure":
            a["auth_failures"] = a.get("auth_failures", 0) + 1
        elif att.outcome == "success":
            authed = True
            a["auth_successes"] = a.get("auth_successes", 0) + 1
            if client_home != server_home:  # the parser stops at TLS: this AUTH was in clear
                a["auth_clear_ext_success"] = a.get("auth_clear_ext_success", 0) + 1
        if att.user:
            keys.append((_D["auth_users"], att.user.lower()))
    relay = 0
    check_relay = bool(view.site.local_domains) and server_home and not client_home
    for tx in s.transactions:
        if tx.mail_from is not None:
            a["mail_from"] = a.get("mail_from", 0) + 1
            if not server_home:
                a["ext_mail_from"] = a.get("ext_mail_from", 0) + 1
        if tx.data_mode is not None:
            a["msgs"] = a.get("msgs", 0) + 1
            a["msg_bytes"] = a.get("msg_bytes", 0) + tx.size
        for r in tx.rcpt_to:
            a["rcpts"] = a.get("rcpts", 0) + 1
            code = r.code
            if 200 <= code < 300:
                a["rcpt_accepted"] = a.get("rcpt_accepted", 0) + 1
            elif 400 <= code < 500:
                a["rcpt_4xx"] = a.get("rcpt_4xx", 0) + 1
            elif code >= 500:
                a["rcpt_5xx"] = a.get("rcpt_5xx", 0) + 1
                if r.enhanced == USER_UNKNOWN or (code == 550 and r.enhanced is None
                                                  and _UNKNOWN_TEXT.search(r.text)):
                    a["rcpt_unknown"] = a.get("rcpt_unknown", 0) + 1
            domain = r.addr.rpartition("@")[2].lower().rstrip(".")
            if domain:
                keys.append((_D["rcpt_domains"], domain))
                if view.site.local_domains and not view.local(domain):
                    a["rcpt_foreign"] = a.get("rcpt_foreign", 0) + 1
                    if check_relay and not authed and 200 <= code < 300:
                        relay += 1
    if relay:
        a["relay_rcpts"] = relay
    server: tuple[Adds, Keys] | None = None
    if server_home:
        sa: list[tuple[int, float]] = [(_S["srv_sessions"], 1)]
        sk: tuple[tuple[int, str], ...] = ()
        if relay:
            sa.append((_S["srv_relay_rcpts"], relay))
            sk = ((_D["srv_relay_clients"], s.client_ip),)
        if a.get("auth_failures"):
            sa.append((_S["srv_auth_failures"], a["auth_failures"]))
        server = (tuple(sa), sk)
    adds = tuple((_S[k], v) for k, v in a.items() if v)
    return SessionEvents((adds, tuple(keys)), server, authed, relay)
