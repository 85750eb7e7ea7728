"""Turns one ConnRecord or SmtpSession into window events for its client and (our) server hosts."""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final

from sensor.config import IPNetwork, SiteConfig
from sensor.features.schema import DISTINCT_INDEX, SUM_INDEX
from sensor.features.window import ONE, TAGS, Adds, Keys
from sensor.records import ConnRecord, MailTransaction, SmtpSession
from sensor.smtp.anomalies import Anomaly

MAX_SITE_CACHE: Final = 65536  # IP roles and domain answers remembered before each cache is reset

ABUSE_ANOMALIES: Final = frozenset({
    Anomaly.UNKNOWN_COMMAND, Anomaly.NON_SMTP_VERB, Anomaly.OUT_OF_SEQUENCE,
    Anomaly.COMMAND_AFTER_421, Anomaly.TOO_MANY_RCPTS, Anomaly.TOO_MANY_COMMANDS,
    Anomaly.BDAT_INVALID_SIZE, Anomaly.PENDING_OVERFLOW, Anomaly.LINE_TRUNCATED, Anomaly.BAD_PATH,
    Anomaly.DATA_AFTER_REFUSAL, Anomaly.AUTH_TOO_MANY, Anomaly.RETRANSMISSION_INCONSISTENCY,
})
"""Anomalies that are a client's doing and that legitimate MTAs do not produce (a retransmission
that rewrites bytes already sent is the classic IDS evasion, not a TCP stack's habit)."""

REFUSED_STATES: Final = frozenset({"REJ"})
UNANSWERED_STATES: Final = frozenset({"S0", "SH", "RSTOS0"})
RESET_STATES: Final = frozenset({"RSTR", "RSTRH"})
BLOCKED_CODES: Final = frozenset({521, 554})  # RFC 7504 521 "does not accept mail"; RFC 5321 554
_BLOCK_TEXT: Final = re.compile(r"block|blacklist|denylist|spamhaus|dnsbl|\brbl\b|listed", re.I)
_UNKNOWN_TEXT: Final = re.compile(r"unknown|no such user|does not exist|not found", re.I)
USER_UNKNOWN: Final = "5.1.1"  # RFC 3463 3.2: bad destination mailbox address
SUBMISSION_PORT: Final = 587  # RFC 6409: clients submitting through their provider, not MTAs
"""Connections to an outside server on this port are not direct delivery to an MX: they are
left out of the ext_* counts (ext_conns, ext_failed_conns, ext_dst_ips, ext_mail_from)."""
POLICY_CLASS: Final = "5.7."  # RFC 3463 3.8: security or policy status, permanent
GREYLIST_CLASS: Final = "4.7."  # the same, temporary: what greylisting servers answer
GREYLIST_CODES: Final = frozenset({450, 451})
_GREYLIST_TEXT: Final = re.compile(r"gr[ae]y[ -]?list", re.I)
QUARTER_S: Final = 900.0  # every UTC offset in use is a multiple of 15 min: one answer per quarter


_Ranges = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]
"""(IPv4 ranges, IPv6 ranges), each range a (network as int, netmask as int)."""
# shared cache answers
_ROLES: Final = {(h, m): (h, m) for h in (False, True) for m in (False, True)}
_NO_RANGES: _Ranges = ((), ())


@dataclass(slots=True)
class SiteView:
    """Answers "is this ours?" for addresses and domains, with bounded caches."""

    site: SiteConfig
    cache: dict[str, tuple[bool, bool]]
    home: _Ranges = _NO_RANGES
    mta: _Ranges = _NO_RANGES
    domains: dict[str, bool] = field(default_factory=dict)
    zone: tzinfo = UTC
    # the UTC quarter-hour [q_start, q_end) last asked about, and whether it is off-hours
    q_start: float = 0.0
    q_end: float = 0.0
    q_off: bool = False

    @classmethod
    def of(cls, site: SiteConfig) -> SiteView:
        zone = UTC if site.timezone == "UTC" else zoneinfo.ZoneInfo(site.timezone)
        return cls(site, {}, _ranges(site.home_net), _ranges(site.mail_servers), zone=zone)

    def off_hours(self, ts: float) -> bool:
        """Whether packet time `ts` is outside the site's working hours and days (local time)."""
        if self.q_start <= ts < self.q_end:  # two comparisons per session, mostly
            return self.q_off
        return self._quarter(ts)

    def _quarter(self, ts: float) -> bool:
        if not math.isfinite(ts):
            return False
        start = math.floor(ts / QUARTER_S) * QUARTER_S
        try:
            local = datetime.fromtimestamp(start, self.zone)
        except (OverflowError, ValueError, OSError):  # beyond what the platform's time handles
            return False
        site = self.site
        hour, first, end = local.hour, site.work_start, site.work_end
        working = first <= hour < end if first < end else (hour >= first or hour < end)
        self.q_start, self.q_end = start, start + QUARTER_S
        self.q_off = not (working and local.weekday() in site.work_days)
        return self.q_off

    def roles(self, ip: str) -> tuple[bool, bool]:
        """(in home_net, authorised mail server) for an address."""
        hit = self.cache.get(ip)
        if hit is None:
            hit = self._roles(ip)
            if len(self.cache) >= MAX_SITE_CACHE:
                self.cache.clear()
            self.cache[ip] = hit
        return hit

    def _roles(self, ip: str) -> tuple[bool, bool]:
        parsed = _parse_ip(ip)
        if parsed is None:
            return _ROLES[False, False]
        v6 = parsed[0] == 6
        n = parsed[1]
        home = mta = False
        for net, mask in self.home[v6]:  # loops, not any(): this runs once per new address
            if n & mask == net:
                home = True
                break
        for net, mask in self.mta[v6]:
            if n & mask == net:
                mta = True
                break
        return _ROLES[home, mta]

    def local(self, domain: str) -> bool:
        """A domain we receive mail for (one of local_domains or a subdomain of one)."""
        hit = self.domains.get(domain)
        if hit is None:
            doms = self.site.local_domains
            hit = domain in doms or any(domain.endswith("." + d) for d in doms)
            if len(self.domains) >= MAX_SITE_CACHE:
                self.domains.clear()
            self.domains[domain] = hit
        return hit


def _ranges(nets: tuple[IPNetwork, ...]) -> _Ranges:
    return (tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4),
            tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 6))


_inet_pton: Final = socket.inet_pton  # module attributes read once, not per new address
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6


def _parse_ip(ip: str) -> tuple[int, int] | None:
    """(version, address as int) of an address in text, or None when it is not one."""
    try:
        if ":" in ip:
            return 6, int.from_bytes(_inet_pton(_AF_INET6, ip))
        return 4, int.from_bytes(_inet_pton(_AF_INET, ip))
    except (OSError, ValueError):
        pass
    try:  # forms inet_pton refuses but ipaddress reads (an IPv6 scope id)
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    return addr.version, int(addr)


def net_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address, as text."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + "::/48"
    return ip.rpartition(".")[0] + ".0/24"


_S: Final = SUM_INDEX
_D: Final = DISTINCT_INDEX
_CONNS: Final = _S["conns"]
_REFUSED: Final = _S["refused_conns"]
_UNANSWERED: Final = _S["unanswered_conns"]
_RESET: Final = _S["reset_conns"]
_FAILED: Final = _S["failed_conns"]
_EXT_CONNS: Final = _S["ext_conns"]
_EXT_FAILED: Final = _S["ext_failed_conns"]
_LOSS_REFUSED: Final = _S["loss_refused_conns"]
_LOSS_UNANSWERED: Final = _S["loss_unanswered_conns"]
_LOSS_RESET: Final = _S["loss_reset_conns"]
_LOSS_EXT_FAILED: Final = _S["loss_ext_failed_conns"]
_T_DST_IPS: Final = TAGS[_D["dst_ips"]]
_T_DST_24S: Final = TAGS[_D["dst_24s"]]
_T_EXT_DST_IPS: Final = TAGS[_D["ext_dst_ips"]]


_UNFINISHED: Final = frozenset({"eof", "evicted"})
"""End reasons of a record cut off by the sensor rather than ended by its endpoints: the input
ended (or the sensor stopped), or a cap made room."""


_ANSWERED: Final = frozenset("ADF")
"""Client history letters (a pure ACK, payload, a FIN) that a client sends only once a SYN-ACK
reached it: after its SYN, one of them says the server answered."""


def loss_failed(rec: ConnRecord) -> bool:
    """Whether a connection whose state says it failed shows capture loss: reassembly gaps, or
    payload from a server whose handshake reply was not seen (it answered). Its failure may be
    the packets the capture missed (a lost SYN-ACK and server FIN give SH), not the server's.
    So may that of a connection the sensor cut off (`_UNFINISHED`) after one packet, before
    its SYN was due again (a client retransmits an unanswered SYN after a second): a SYN seen
    just before the input ended, the rest in a run of kernel drops or not sent yet, reads S0.
    And so does an attempt "left unanswered" whose client went on as answered clients do (an
    ACK, payload or a FIN after its SYN: every packet of the server, and the client's between,
    in a run of kernel drops): Zeek's SH, a FIN after a SYN with no SYN-ACK, is that, or a
    crafted packet. (A SYN carrying data, TCP Fast Open, also reads as answered: port 25 has
    none to speak of.)"""
    return (rec.gaps > 0 or rec.bytes_to_client > 0
            or (rec.end_reason in _UNFINISHED and rec.pkts_to_server + rec.pkts_to_client == 1)
            or (rec.state in UNANSWERED_STATES and not _ANSWERED.isdisjoint(rec.history)))


_ATTRIBUTING: Final = frozenset("SsHhRr")
"""History letters that tie a record without payload to its client: a SYN or SYN-ACK (an
attempt, answered or not), or a reset."""


def unattributable(rec: ConnRecord) -> bool:
    """Whether a connection record says nothing about its client: no payload either way, and
    neither SYN nor SYN-ACK nor RST seen (only ACKs or FINs: the end of a connection already
    written out, as after its linger was cut short or a run of kernel drops, or of one picked
    up at its very end). Counted, each would make one connection two, and one ended by FINs
    alone reads as a failed attempt (state SH)."""
    if rec.bytes_to_server or rec.bytes_to_client:
        return False
    return _ATTRIBUTING.isdisjoint(rec.history)


def conn_event(rec: ConnRecord, server_home: bool) -> tuple[Adds, Keys]:
    """The client's window event for one TCP connection.

    A failed connection that shows capture loss (`loss_failed`) also adds to the loss_* HIDDEN
    sums of its kind, which the model's view subtracts (sensor.features.schema.LOSS_HIDDEN)."""
    adds: list[tuple[int, float]] = [ONE[_CONNS]]
    state = rec.state
    failed = True
    loss = 0  # the loss_* sum of the failure's kind, when it shows capture loss
    if state in REFUSED_STATES:
        adds.append(ONE[_REFUSED])
        loss = _LOSS_REFUSED
    elif state in UNANSWERED_STATES:
        adds.append(ONE[_UNANSWERED])
        loss = _LOSS_UNANSWERED
    elif state in RESET_STATES and rec.bytes_to_client == 0:
        adds.append(ONE[_RESET])
        loss = _LOSS_RESET
    else:
        failed = False
    lossy = failed and loss_failed(rec)
    if failed:
        adds.append(ONE[_FAILED])
        if lossy:
            adds.append(ONE[loss])
    ip = rec.server_ip
    if server_home or rec.server_port == SUBMISSION_PORT:
        return tuple(adds), (_T_DST_IPS + ip, _T_DST_24S + net_of(ip))
    adds.append(ONE[_EXT_CONNS])
    if failed:
        adds.append(ONE[_EXT_FAILED])
        if lossy:
            adds.append(ONE[_LOSS_EXT_FAILED])
    return tuple(adds), (_T_DST_IPS + ip, _T_DST_24S + net_of(ip), _T_EXT_DST_IPS + ip)


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


def _greylisting(code: int, enhanced: str, text: str) -> bool:
    """A temporary refusal that is greylisting: 4.7.x, or 450/451 saying so."""
    return enhanced.startswith(GREYLIST_CLASS) or (
        code in GREYLIST_CODES and _GREYLIST_TEXT.search(text) is not None)


def _closing_reply(tx: MailTransaction) -> bool:
    """Whether a refused transaction's last reply is not a recipient's (it answered the end of
    data, DATA itself, or MAIL when no RCPT followed): it then is a verdict of its own."""
    if tx.data_mode is not None or not tx.rcpt_to:
        return True
    last = tx.rcpt_to[-1]
    return last.code != tx.last_code or tx.last_reply != f"{last.code} {last.text}"


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


class SessionEvents:
    """What one session adds to its client and to its server (when the server is ours).

    A plain class, not a dataclass: one is made per session, and a dataclass's generated
    ``__init__`` stays interpreted when the module is compiled.
    """

    __slots__ = ("authenticated", "client", "relay_rcpts", "server")

    def __init__(
        self,
        client: tuple[Adds, Keys],
        server: tuple[Adds, Keys] | None,
        authenticated: bool,
        relay_rcpts: int,
    ) -> None:
        self.client = client
        self.server = server
        self.authenticated = authenticated
        self.relay_rcpts = relay_rcpts


_SESSIONS: Final = _S["sessions"]
_SRV_SESSIONS: Final = _S["srv_sessions"]
_SRV_RELAY_RCPTS: Final = _S["srv_relay_rcpts"]
_SRV_AUTH_FAILURES: Final = _S["srv_auth_failures"]
_T_SRV_RELAY_CLIENTS: Final = TAGS[_D["srv_relay_clients"]]
_NO_BANNER: Final = _S["no_banner_sessions"]
_TLS: Final = _S["tls_sessions"]
_HELO_SESSIONS: Final = _S["helo_sessions"]
_HELO_BAD: Final = _S["helo_bad"]
_HELO_FORGED: Final = _S["helo_forged"]
_PREGREET: Final = _S["pregreet"]
_BLOCKED: Final = _S["blocked"]
_ABUSE: Final = _S["abuse_anomalies"]
_NON_SMTP: Final = _S["non_smtp"]
_STRIPPED: Final = _S["stripped_starttls"]
_BYTES_OUT: Final = _S["bytes_out"]
_AUTH_ATTEMPTS: Final = _S["auth_attempts"]
_AUTH_FAILURES: Final = _S["auth_failures"]
_AUTH_SUCCESSES: Final = _S["auth_successes"]
_AUTH_CLEAR: Final = _S["auth_clear_ext_success"]
_MAIL_FROM: Final = _S["mail_from"]
_EXT_MAIL_FROM: Final = _S["ext_mail_from"]
_MSGS: Final = _S["msgs"]
_MSG_BYTES: Final = _S["msg_bytes"]
_RCPTS: Final = _S["rcpts"]
_ACCEPTED: Final = _S["rcpt_accepted"]
_R4XX: Final = _S["rcpt_4xx"]
_R5XX: Final = _S["rcpt_5xx"]
_UNKNOWN: Final = _S["rcpt_unknown"]
_FOREIGN: Final = _S["rcpt_foreign"]
_RELAY: Final = _S["relay_rcpts"]
_CLEAR_OFFERED: Final = _S["auth_clear_tls_offered"]
_USER_FOREIGN: Final = _S["auth_user_foreign"]
_LITERAL_OTHER: Final = _S["helo_literal_other"]
_SLOPPY: Final = _S["sloppy_paths"]
_REPLY_ATTACH: Final = _S["reply_attach_msgs"]
_T_HELO: Final = TAGS[_D["helo_names"]]
_T_USER: Final = TAGS[_D["auth_users"]]
_T_DOMAIN: Final = TAGS[_D["rcpt_domains"]]
_DATA_REJECTS: Final = _S["data_rejects"]
_DATA_TEMPFAILS: Final = _S["data_tempfails"]
_POLICY: Final = _S["policy_refusals"]
_GREYLISTED: Final = _S["greylisted"]
_OFFHOURS: Final = _S["offhours_sessions"]
_MSG_RCPTS: Final = _S["msg_rcpts"]
_MSG_SUMSQ: Final = _S["msg_size_sumsq"]


SMALL_COUNT: Final = 16  # counts below this share one prebuilt (index, count) pair per running sum
_SMALL: tuple[tuple[tuple[int, float], ...], ...] = tuple(
    tuple((idx, n) for n in range(SMALL_COUNT)) for idx in range(len(SUM_INDEX)))


def _pair(idx: int, n: int) -> tuple[int, float]:
    """(idx, n), shared when n is small: a host's events then hold fewer objects of their own."""
    return _SMALL[idx][n] if n < SMALL_COUNT else (idx, n)


def session_events(s: SmtpSession, view: SiteView) -> SessionEvents:
    """The window events of one SMTP session that spoke (see `spoke`)."""
    client_home = view.roles(s.client_ip)[0]
    server_home = view.roles(s.server_ip)[0]
    crossing = client_home != server_home  # across the home_net boundary
    adds: list[tuple[int, float]] = [ONE[_SESSIONS]]
    keys: list[str] = []
    # the parser's judgment: not when picked up mid-stream, after lost bytes either way or
    # without the server's SYN-ACK (the banner may have gone unseen), sensor.smtp.parser
    if Anomaly.NO_BANNER in s.anomalies:
        adds.append(ONE[_NO_BANNER])
    if s.tls_established:
        adds.append(ONE[_TLS])
    if view.off_hours(s.ts):
        adds.append(ONE[_OFFHOURS])
    if s.banner_code >= 500 and s.banner is not None and s.banner.startswith(POLICY_CLASS):
        adds.append(ONE[_POLICY])
    if s.helo is not None:
        bad, forged = _helo_flags(s, view, client_home)
        adds.append(ONE[_HELO_SESSIONS])
        if bad:
            adds.append(ONE[_HELO_BAD])
            if crossing and s.helo_kind == "ip_literal":
                adds.append(ONE[_LITERAL_OTHER])
        if forged:
            adds.append(ONE[_HELO_FORGED])
        keys.append(_T_HELO + s.helo.lower())
    an = s.anomalies
    if an:
        if an.get(Anomaly.PREGREET):
            adds.append(ONE[_PREGREET])
        abuse = sum(n for name, n in an.items() if name in ABUSE_ANOMALIES)
        if abuse:
            adds.append(_pair(_ABUSE, abuse))
        if an.get(Anomaly.NON_SMTP_VERB) or an.get(Anomaly.STARTTLS_INJECTION):
            adds.append(ONE[_NON_SMTP])  # CVE-2011-0411 injection: no MTA does it by mistake
        if an.get(Anomaly.STRIPPED_STARTTLS):
            adds.append(ONE[_STRIPPED])
        if crossing and an.get(Anomaly.SLOPPY_PATH):
            adds.append(ONE[_SLOPPY])
    if _blocked(s):
        adds.append(ONE[_BLOCKED])
    if s.bytes_from_client:
        adds.append((_BYTES_OUT, s.bytes_from_client))
    authed = False
    failures = 0
    if s.auth:
        attempts = successes = clear = 0
        clear_offered = foreign_user = False
        for att in s.auth:
            attempts += 1
            if att.outcome == "failure":
                failures += 1
            elif att.outcome == "success":
                authed = True
                successes += 1
                # in clear, unless seen in plaintext after STARTTLS (a decrypted capture)
                if client_home != server_home and not att.after_starttls:
                    clear += 1
            if att.user:
                keys.append(_T_USER + att.user.lower())
                if crossing and not foreign_user and "@" in att.user:
                    foreign_user = _foreign_user(att.user, s.banner, view)
            if crossing and s.tls_offered and not att.after_starttls:
                clear_offered = True
        adds.append(_pair(_AUTH_ATTEMPTS, attempts))
        if clear_offered:
            adds.append(ONE[_CLEAR_OFFERED])
        if foreign_user:
            adds.append(ONE[_USER_FOREIGN])
        for idx, n in ((_AUTH_FAILURES, failures), (_AUTH_SUCCESSES, successes),
                       (_AUTH_CLEAR, clear)):
            if n:
                adds.append(_pair(idx, n))
    relay = 0
    if s.transactions:
        relay = _transactions(s, view, adds, keys, client_home, server_home,
                              authed or _auth_unseen(s),
                              not server_home and s.server_port != SUBMISSION_PORT)
        if crossing:
            replies = _reply_attachments(s)
            if replies:
                adds.append(_pair(_REPLY_ATTACH, replies))
    server: tuple[Adds, Keys] | None = None
    if server_home:
        sa: list[tuple[int, float]] = [ONE[_SRV_SESSIONS]]
        sk: Keys = ()
        if relay:
            sa.append((_SRV_RELAY_RCPTS, relay))
            sk = (_T_SRV_RELAY_CLIENTS + s.client_ip,)
        if failures:
            sa.append((_SRV_AUTH_FAILURES, failures))
        server = (tuple(sa), sk)
    return SessionEvents((tuple(adds), tuple(keys)), server, authed, relay)


def _auth_unseen(s: SmtpSession) -> bool:
    """Whether the session may have authenticated without the capture showing it: bytes of
    the dialogue were lost (a gap), its start was not seen (midstream), or an AUTH's outcome
    is unknown. Its accepted foreign recipients are then not counted as relayed: capture loss
    must not make an authenticated submission look like an open relay."""
    an = s.anomalies
    if s.midstream or Anomaly.GAP_CLIENT in an or Anomaly.GAP_SERVER in an:
        return True
    return any(att.outcome == "unknown" for att in s.auth)


def _server_domain(banner: str | None) -> str:
    """The domain of the host name a server greets with ("smtp.mail.example" -> "mail.example"),
    or "" when the greeting names none."""
    words = banner.split(None, 1) if banner else []
    if not words:
        return ""
    host = words[0].lower().rstrip(".")
    dots = host.count(".")
    if not dots or host.startswith("["):
        return ""
    return host.partition(".")[2] if dots >= 2 else host


def _foreign_user(user: str, banner: str | None, view: SiteView) -> bool:
    """An AUTH user name that is an address in a domain neither ours nor the server's own."""
    domain = user.rpartition("@")[2].lower().rstrip(".")
    if not domain or view.local(domain):
        return False
    server = _server_domain(banner)
    return not server or not (domain == server or domain.endswith("." + server)
                              or server.endswith("." + domain))


def _reply_attachments(s: SmtpSession) -> int:
    """Messages whose subject marks a reply ("Re:") and that carry an attachment."""
    n = 0
    for tx in s.transactions:
        if tx.attachments:
            subject = tx.headers.get("subject")
            if subject and subject.lstrip()[:3].lower() == "re:":
                n += 1
    return n


def _transactions(s: SmtpSession, view: SiteView, adds: list[tuple[int, float]],
                  keys: list[str], client_home: bool, server_home: bool,
                  authed: bool, direct: bool) -> int:
    """Append the counts of the session's mail transactions; returns the relayed recipients."""
    mail_from = msgs = rcpts = accepted = r4xx = r5xx = unknown = foreign = relay = 0
    msg_bytes = msg_rcpts = data_rejects = data_tempfails = policy = grey = 0
    msg_sumsq = 0.0
    has_local = bool(view.site.local_domains)
    check_relay = has_local and server_home and not client_home
    for tx in s.transactions:
        if tx.mail_from is not None:
            mail_from += 1
        if tx.data_mode is not None:
            msgs += 1
            size = tx.size
            msg_bytes += size
            msg_sumsq += float(size) * size
            msg_rcpts += len(tx.rcpt_to)
            if tx.last_code >= 500:
                data_rejects += 1
            elif tx.last_code >= 400:
                data_tempfails += 1
        if tx.last_code >= 400 and tx.last_reply is not None and _closing_reply(tx):
            verdict = tx.last_reply[4:]  # after "ddd ": the enhanced code, when there is one
            if tx.last_code >= 500:
                if verdict.startswith(POLICY_CLASS):
                    policy += 1
            elif _greylisting(tx.last_code, verdict, verdict):
                grey += 1
        for r in tx.rcpt_to:
            rcpts += 1
            code = r.code
            if 200 <= code < 300:
                accepted += 1
            elif 400 <= code < 500:
                r4xx += 1
                if _greylisting(code, r.enhanced or "", r.text):
                    grey += 1
            elif code >= 500:
                r5xx += 1
                enhanced = r.enhanced
                if enhanced == USER_UNKNOWN or (code == 550 and enhanced is None
                                                and _UNKNOWN_TEXT.search(r.text)):
                    unknown += 1
                elif enhanced is not None and enhanced.startswith(POLICY_CLASS):
                    policy += 1
            domain = r.addr.rpartition("@")[2].lower().rstrip(".")
            if domain:
                keys.append(_T_DOMAIN + domain)
                if has_local and not view.local(domain):
                    foreign += 1
                    if check_relay and not authed and 200 <= code < 300:
                        relay += 1
    # plain tests rather than a loop over (index, count) pairs: this runs once per session
    if mail_from:
        adds.append(_pair(_MAIL_FROM, mail_from))
        if direct:  # to an outside server, not on the submission port
            adds.append(_pair(_EXT_MAIL_FROM, mail_from))
    if msgs:
        adds.append(_pair(_MSGS, msgs))
    if msg_bytes:
        adds.append(_pair(_MSG_BYTES, msg_bytes))
    if rcpts:
        adds.append(_pair(_RCPTS, rcpts))
    if accepted:
        adds.append(_pair(_ACCEPTED, accepted))
    if r4xx:
        adds.append(_pair(_R4XX, r4xx))
    if r5xx:
        adds.append(_pair(_R5XX, r5xx))
    if unknown:
        adds.append(_pair(_UNKNOWN, unknown))
    if foreign:
        adds.append(_pair(_FOREIGN, foreign))
    if relay:
        adds.append(_pair(_RELAY, relay))
    if msg_rcpts:  # v2
        adds.append(_pair(_MSG_RCPTS, msg_rcpts))
    if msg_sumsq:
        adds.append((_MSG_SUMSQ, msg_sumsq))
    if data_rejects:
        adds.append(_pair(_DATA_REJECTS, data_rejects))
    if data_tempfails:
        adds.append(_pair(_DATA_TEMPFAILS, data_tempfails))
    if policy:
        adds.append(_pair(_POLICY, policy))
    if grey:
        adds.append(_pair(_GREYLISTED, grey))
    return relay
