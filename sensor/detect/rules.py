"""Threshold rules: each a pure function of one host's features and its config section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sensor.config import RuleConfig, WindowsConfig
from sensor.records import HostFeatures, WindowFeatures


class AlertKind(StrEnum):
    """The alert kinds of DESIGN.md (anomalous_host belongs to the model)."""

    SPAMBOT = "spambot"
    COMPROMISED_ACCOUNT = "compromised_account"
    AUTH_BRUTEFORCE = "auth_bruteforce"
    OPEN_RELAY = "open_relay"
    RELAY_ABUSE = "relay_abuse"
    DICTIONARY_HARVEST = "dictionary_harvest"
    SPAM_SOURCE = "spam_source"
    PLAINTEXT_AUTH = "plaintext_auth"
    STARTTLS_DOWNGRADE = "starttls_downgrade"
    PROTOCOL_ABUSE = "protocol_abuse"
    ANOMALOUS_HOST = "anomalous_host"


@dataclass(slots=True, frozen=True)
class Finding:
    """A rule that fired on a host: what the alert will say."""

    kind: AlertKind
    rule: str  # stable rule id
    severity: int
    sid: int
    score: float
    window_s: float
    summary: str
    features: dict[str, float]
    magnitude: float  # the count that escalation compares
    first_seen: float


Rule = Callable[[HostFeatures, RuleConfig, WindowsConfig], "Finding | None"]


def span(seconds: float) -> str:
    """A window length as a SOC analyst reads it: 45 s, 10 min, 1 h."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def score(value: float, threshold: float) -> float:
    """0.5 at the threshold, rising towards 1 as the value exceeds it."""
    if threshold <= 0:
        return 1.0
    return round(1.0 - 0.5 * threshold / max(value, threshold), 3)


def _pct(x: float) -> str:
    return f"{round(100 * x)}%"


def _n(x: float) -> int:
    return round(x)


def _count(x: float, noun: str) -> str:
    """"1 pregreet", "3 pregreets"."""
    n = _n(x)
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _clean(v: float) -> float:
    r = round(v, 3)
    return int(r) if r == int(r) else r


def window(f: HostFeatures, name: str, windows: WindowsConfig) -> tuple[WindowFeatures, float,
                                                                        float]:
    """(features, length in seconds, start of its oldest event) of the window called `name`."""
    if name == "short":
        return f.short, windows.short_s, f.short_start
    if name == "medium":
        return f.medium, windows.medium_s, f.medium_start
    return f.long, windows.long_s, f.long_start


def _finding(f: HostFeatures, cfg: RuleConfig, kind: AlertKind, rule: str, value: float,
             threshold: float, length: float, start: float, summary: str,
             feats: dict[str, float], severity: int | None = None) -> Finding:
    return Finding(kind, rule, cfg.severity if severity is None else severity, cfg.sid,
                   score(value, threshold), float(length), summary,
                   {k: _clean(v) for k, v in feats.items()}, value, start)


def spambot(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """A home_net host that is not an authorised MTA delivering to external port 25."""
    if not f.in_home_net or f.mail_server or not (f.long.ext_conns or f.long.ext_mail_from):
        return None
    w, length, start = window(f, cfg.word("burst_window"), windows)
    if w.ext_mail_from >= cfg.num("burst_mail_from"):
        return _finding(f, cfg, AlertKind.SPAMBOT, "direct_to_mx_burst", w.ext_mail_from,
                        cfg.num("burst_mail_from"), length, start,
                        f"{f.host} sent {_n(w.ext_mail_from)} MAIL FROM to "
                        f"{_n(w.ext_dst_ips)} external MX hosts in {span(length)} "
                        f"although it is not an authorised mail server; "
                        f"{_pct(w.reject_ratio)} of recipients rejected",
                        {"ext_mail_from": w.ext_mail_from, "ext_dst_ips": w.ext_dst_ips,
                         "rcpts": w.rcpts, "reject_ratio": w.reject_ratio,
                         "failed_ratio": w.failed_ratio})
    w, length, start = window(f, cfg.word("mx_window"), windows)
    if w.ext_dst_ips >= cfg.num("mx_hosts"):
        return _finding(f, cfg, AlertKind.SPAMBOT, "direct_to_many_mx", w.ext_dst_ips,
                        cfg.num("mx_hosts"), length, start,
                        f"{f.host} connected to {_n(w.ext_dst_ips)} distinct external MX hosts "
                        f"on port 25 in {span(length)} although it is not an authorised "
                        f"mail server",
                        {"ext_dst_ips": w.ext_dst_ips, "ext_conns": w.ext_conns,
                         "ext_mail_from": w.ext_mail_from, "failed_ratio": w.failed_ratio})
    w, length, start = window(f, cfg.word("refusal_window"), windows)
    ratio = w.ext_failed_conns / w.ext_conns if w.ext_conns else 0.0
    if w.ext_conns >= cfg.num("refusal_min_conns") and ratio >= cfg.num("refusal_ratio"):
        return _finding(f, cfg, AlertKind.SPAMBOT, "direct_to_mx_refused", w.ext_conns,
                        cfg.num("refusal_min_conns"), length, start,
                        f"{f.host} tried {_n(w.ext_conns)} external port-25 connections in "
                        f"{span(length)} and {_pct(ratio)} were refused or unanswered",
                        {"ext_conns": w.ext_conns, "ext_failed_conns": w.ext_failed_conns,
                         "ext_failed_ratio": ratio, "ext_dst_ips": w.ext_dst_ips})
    w, length, start = window(f, cfg.word("slow_window"), windows)
    if (w.ext_mail_from >= cfg.num("slow_mail_from")
            and w.ext_dst_ips >= cfg.num("slow_mx_hosts")):
        return _finding(f, cfg, AlertKind.SPAMBOT, "direct_to_mx_low_and_slow",
                        w.ext_mail_from, cfg.num("slow_mail_from"), length, start,
                        f"{f.host} slowly sent {_n(w.ext_mail_from)} MAIL FROM to "
                        f"{_n(w.ext_dst_ips)} external MX hosts over {span(length)} although "
                        f"it is not an authorised mail server",
                        {"ext_mail_from": w.ext_mail_from, "ext_dst_ips": w.ext_dst_ips,
                         "interarrival_cv": w.interarrival_cv, "reject_ratio": w.reject_ratio},
                        severity=int(cfg.num("slow_severity")))
    return None


def auth_bruteforce(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """Many AUTH failures from one client, or failures spread over many user names."""
    w, length, start = window(f, cfg.word("window"), windows)
    many = w.auth_failures >= cfg.num("failures")
    spread = (w.auth_users >= cfg.num("users")
              and w.auth_failures >= cfg.num("users_min_failures"))
    if not (many or spread):
        return None
    return _finding(f, cfg, AlertKind.AUTH_BRUTEFORCE,
                    "auth_failures" if many else "auth_user_spray", w.auth_failures,
                    cfg.num("failures") if many else cfg.num("users_min_failures"),
                    length, start,
                    f"{f.host} failed SMTP AUTH {_count(w.auth_failures, 'time')} in "
                    f"{span(length)} "
                    f"over {_n(w.auth_users)} user names ({_n(w.auth_successes)} successes)",
                    {"auth_failures": w.auth_failures, "auth_users": w.auth_users,
                     "auth_successes": w.auth_successes, "auth_attempts": w.auth_attempts})


def compromised_account(f: HostFeatures, cfg: RuleConfig,
                        windows: WindowsConfig) -> Finding | None:
    """AUTH failures, then a success, then a sending burst (Zeek and Suricata leave this out).

    When the client failed itself, what it sent since the success counts. When only other
    clients failed for the user (one host guesses, another logs in), only a burst within the
    medium window of the success counts: a printer that logs in as that user and sends its
    usual mail over the hour is not the guesser."""
    if not f.auth_success_ts or f.auth_fails_before_success < cfg.num("failures_before"):
        return None
    rc, ms = f.rcpts_after_auth_success, f.msgs_after_auth_success
    own = f.auth_own_fails_before_success >= cfg.num("failures_before")
    if own:
        if rc < cfg.num("rcpts_after") and ms < cfg.num("msgs_after"):
            return None
        value, threshold = (rc, cfg.num("rcpts_after")) if rc >= cfg.num("rcpts_after") else (
            ms, cfg.num("msgs_after"))
        who = ""
        rule = "auth_fail_success_burst"
    else:
        value, threshold = f.burst_rcpts_after_auth_success, cfg.num("others_burst_rcpts")
        if value < threshold:
            return None
        who = " for that user by other clients"
        rule = "auth_others_fail_success_burst"
    return _finding(f, cfg, AlertKind.COMPROMISED_ACCOUNT, rule, value,
                    threshold, windows.long_s, f.long_start,
                    f"{f.host} logged in after {_n(f.auth_fails_before_success)} failed AUTH "
                    f"attempts{who} and then sent {_count(ms, 'message')} to "
                    f"{_count(rc, 'recipient')}: a likely stolen password",
                    {"auth_fails_before_success": f.auth_fails_before_success,
                     "auth_own_fails_before_success": f.auth_own_fails_before_success,
                     "rcpts_after_auth_success": rc, "msgs_after_auth_success": ms,
                     "burst_rcpts_after_auth_success": f.burst_rcpts_after_auth_success})


def open_relay(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """Our server accepting unauthenticated recipients in foreign domains from outside clients."""
    if not f.in_home_net:
        return None
    w, length, start = window(f, cfg.word("window"), windows)
    if w.srv_relay_rcpts < cfg.num("relay_rcpts"):
        return None
    return _finding(f, cfg, AlertKind.OPEN_RELAY, "unauthenticated_relay", w.srv_relay_rcpts,
                    cfg.num("relay_rcpts"), length, start,
                    f"our server {f.host} accepted {_count(w.srv_relay_rcpts, 'recipient')} in "
                    f"foreign domains without AUTH from "
                    f"{_count(w.srv_relay_clients, 'outside client')} in {span(length)}: "
                    f"it is an open relay",
                    {"srv_relay_rcpts": w.srv_relay_rcpts,
                     "srv_relay_clients": w.srv_relay_clients, "srv_sessions": w.srv_sessions})


def relay_abuse(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """An outside client relaying unauthenticated mail to foreign domains through our server."""
    if f.in_home_net:
        return None
    w, length, start = window(f, cfg.word("window"), windows)
    if w.relay_rcpts < cfg.num("relay_rcpts"):
        return None
    return _finding(f, cfg, AlertKind.RELAY_ABUSE, "relay_through_our_server", w.relay_rcpts,
                    cfg.num("relay_rcpts"), length, start,
                    f"{f.host} relayed {_count(w.relay_rcpts, 'recipient')} in foreign domains "
                    f"through our server without AUTH in {span(length)} "
                    f"({_count(w.msgs, 'message')})",
                    {"relay_rcpts": w.relay_rcpts, "rcpt_domains": w.rcpt_domains,
                     "msgs": w.msgs, "foreign_share": w.foreign_share})


def dictionary_harvest(f: HostFeatures, cfg: RuleConfig,
                       windows: WindowsConfig) -> Finding | None:
    """Many "user unknown" rejections for one client: it is guessing mailbox names."""
    w, length, start = window(f, cfg.word("window"), windows)
    if w.rcpt_unknown < cfg.num("unknown_rcpts") or w.unknown_ratio < cfg.num("unknown_ratio"):
        return None
    return _finding(f, cfg, AlertKind.DICTIONARY_HARVEST, "user_unknown_flood", w.rcpt_unknown,
                    cfg.num("unknown_rcpts"), length, start,
                    f"{f.host} tried {_n(w.rcpts)} recipients in {span(length)} and "
                    f"{_n(w.rcpt_unknown)} ({_pct(w.unknown_ratio)}) were rejected as unknown "
                    f"users: a directory harvest",
                    {"rcpt_unknown": w.rcpt_unknown, "rcpts": w.rcpts,
                     "unknown_ratio": w.unknown_ratio, "sessions": w.sessions})


def spam_source(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """An outside client delivering to our servers with several spam-like traits.

    A pregreet and a HELO claiming our own domain are what bots do and MTAs never, and a
    blocklist refusal is our own server's verdict: each counts as `strong_weight` traits, so
    that one of them alone may fire on a sender's first session."""
    if f.in_home_net:
        return None
    w, length, start = window(f, cfg.word("window"), windows)
    traits: list[str] = []
    weight = 0.0
    strong = cfg.num("strong_weight")
    if w.blocked:
        traits.append(_count(w.blocked, "blocklist refusal"))
        weight += strong
    if w.pregreet:
        traits.append(_count(w.pregreet, "pregreet"))
        weight += strong
    if w.helo_forged:
        traits.append(_count(w.helo_forged, "HELO") + " claiming our domain")
        weight += strong
    if w.helo_bad and w.helo_bad_share >= cfg.num("helo_bad_share"):
        traits.append(f"{_pct(w.helo_bad_share)} invalid HELO names")
        weight += 1
    if w.rcpts >= cfg.num("reject_min_rcpts") and w.reject_ratio >= cfg.num("reject_ratio"):
        traits.append(f"{_pct(w.reject_ratio)} of {_n(w.rcpts)} recipients rejected")
        weight += 1
    if weight < cfg.num("min_traits"):
        return None
    return _finding(f, cfg, AlertKind.SPAM_SOURCE, "inbound_spam_traits", weight,
                    cfg.num("min_traits"), length, start,
                    f"{f.host} delivered to our servers with spam-sender traits in "
                    f"{span(length)}: " + ", ".join(traits),
                    {"blocked": w.blocked, "pregreet": w.pregreet, "helo_forged": w.helo_forged,
                     "helo_bad_share": w.helo_bad_share, "reject_ratio": w.reject_ratio,
                     "rcpts": w.rcpts, "sessions": w.sessions})


def plaintext_auth(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """A successful AUTH in clear text across the home_net boundary: a valid password exposed."""
    w, length, start = window(f, cfg.word("window"), windows)
    if w.auth_clear_ext_success < cfg.num("successes"):
        return None
    return _finding(f, cfg, AlertKind.PLAINTEXT_AUTH, "cleartext_auth_success",
                    w.auth_clear_ext_success, cfg.num("successes"), length, start,
                    f"{f.host} authenticated {_count(w.auth_clear_ext_success, 'time')} without "
                    f"TLS "
                    f"across the network boundary in {span(length)}: the password crossed the "
                    f"wire in clear",
                    {"auth_clear_ext_success": w.auth_clear_ext_success,
                     "auth_users": w.auth_users, "tls_share": w.tls_share})


def starttls_downgrade(f: HostFeatures, cfg: RuleConfig,
                       windows: WindowsConfig) -> Finding | None:
    """EHLO replies whose STARTTLS was masked on the way: a downgrading middlebox."""
    w, length, start = window(f, cfg.word("window"), windows)
    if w.stripped_starttls < cfg.num("stripped"):
        return None
    return _finding(f, cfg, AlertKind.STARTTLS_DOWNGRADE, "starttls_stripped",
                    w.stripped_starttls, cfg.num("stripped"), length, start,
                    f"{f.host} had STARTTLS stripped from {_n(w.stripped_starttls)} of its "
                    f"{_n(w.sessions)} SMTP sessions in {span(length)}: mail went in clear",
                    {"stripped_starttls": w.stripped_starttls, "sessions": w.sessions,
                     "tls_share": w.tls_share})


def protocol_abuse(f: HostFeatures, cfg: RuleConfig, windows: WindowsConfig) -> Finding | None:
    """Another protocol spoken to an SMTP port (or STARTTLS injection), or many SMTP violations."""
    w, length, start = window(f, cfg.word("window"), windows)
    other = w.non_smtp >= cfg.num("non_smtp")
    if not other and w.abuse_anomalies < cfg.num("violations"):
        return None
    what = (f"spoke another protocol to an SMTP port (or injected commands behind STARTTLS) in "
            f"{_n(w.non_smtp)} sessions" if other else
            f"committed {_n(w.abuse_anomalies)} SMTP protocol violations")
    return _finding(f, cfg, AlertKind.PROTOCOL_ABUSE, "non_smtp" if other else "violations",
                    w.non_smtp if other else w.abuse_anomalies,
                    cfg.num("non_smtp") if other else cfg.num("violations"), length, start,
                    f"{f.host} {what} in {span(length)}",
                    {"non_smtp": w.non_smtp, "abuse_anomalies": w.abuse_anomalies,
                     "sessions": w.sessions})


def stolen_credential_submission(f: HostFeatures, cfg: RuleConfig,
                                 windows: WindowsConfig) -> Finding | None:
    """A home_net host, not an authorised MTA, logging in to an outside server in clear though
    STARTTLS was offered, with the marks of a bot rather than a mail client (Emotet's spam)."""
    if not f.in_home_net or f.mail_server:
        return None
    w, length, start = window(f, cfg.word("window"), windows)
    if w.auth_clear_tls_offered < cfg.num("clear_auth_sessions"):
        return None
    traits: list[str] = []
    if w.auth_user_foreign:
        traits.append("as an account of another domain than the server's")
    if w.helo_literal_other:
        traits.append("greeting with an address literal that is not its own")
    if w.sloppy_paths:
        traits.append("sloppy MAIL FROM/RCPT TO syntax")
    if w.reply_attach_msgs:
        traits.append(_count(w.reply_attach_msgs, '"Re:" message') + " with an attachment")
    if len(traits) < cfg.num("min_traits"):
        return None
    return _finding(f, cfg, AlertKind.SPAMBOT, "stolen_credential_submission", len(traits),
                    cfg.num("min_traits"), length, start,
                    f"{f.host} sent AUTH in clear to outside mail servers that offered STARTTLS "
                    f"in {_count(w.auth_clear_tls_offered, 'session')} in {span(length)}, "
                    + ", ".join(traits) + ": a bot sending spam with stolen credentials "
                    "(a mail client would have started TLS)",
                    {"auth_clear_tls_offered": w.auth_clear_tls_offered,
                     "auth_user_foreign": w.auth_user_foreign,
                     "helo_literal_other": w.helo_literal_other,
                     "sloppy_paths": w.sloppy_paths, "reply_attach_msgs": w.reply_attach_msgs,
                     "auth_successes": w.auth_successes, "auth_failures": w.auth_failures,
                     "ext_dst_ips": w.ext_dst_ips, "msgs": w.msgs})


TRIGGERS: dict[str, tuple[str, ...]] = {
    "spambot": ("ext_conns", "ext_mail_from"),
    "auth_bruteforce": ("auth_failures",),
    "compromised_account": ("auth_state",),
    "open_relay": ("srv_relay_rcpts",),
    "relay_abuse": ("relay_rcpts",),
    "dictionary_harvest": ("rcpt_unknown",),
    "spam_source": ("blocked", "pregreet", "helo_forged", "helo_bad", "rcpt_4xx", "rcpt_5xx"),
    "plaintext_auth": ("auth_clear_ext_success",),
    "starttls_downgrade": ("stripped_starttls",),
    "protocol_abuse": ("non_smtp", "abuse_anomalies"),
    "stolen_credential_submission": ("auth_clear_tls_offered", "auth_user_foreign",
                                     "helo_literal_other", "sloppy_paths", "reply_attach_msgs"),
}
"""The counts whose growth can make each rule fire (or escalate); a rule is re-run only then,
since the counts it compares only fall between two such records."""

RULES: dict[str, Rule] = {
    "spambot": spambot,
    "auth_bruteforce": auth_bruteforce,
    "compromised_account": compromised_account,
    "open_relay": open_relay,
    "relay_abuse": relay_abuse,
    "dictionary_harvest": dictionary_harvest,
    "spam_source": spam_source,
    "plaintext_auth": plaintext_auth,
    "starttls_downgrade": starttls_downgrade,
    "protocol_abuse": protocol_abuse,
    "stolen_credential_submission": stolen_credential_submission,
}
"""Every rule by its config section name (rules.<name>); evaluated in this order."""
