"""Typed parameters of simulated sites, actors and timing, with each actor kind's defaults."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sensor.simulate.content import Flavour
from sensor.simulate.frames import OsProfile


class ActorKind(StrEnum):
    """What an actor is; malicious kinds are the alert kinds of DESIGN.md."""

    OUTBOUND_MTA = "outbound_mta"
    """An authorised outbound MTA of the site delivering to internet MXes (diurnal volume)."""
    INBOUND_MTA = "inbound_mta"
    """An internet MTA delivering mail for our domains to our MX."""
    NEWSLETTER = "newsletter"
    """A mailing platform delivering to our MX: high volume, TLS, few rejections."""
    BACKUP_MX = "backup_mx"
    """Our backup MX flushing its queue to our MX after an outage."""
    MONITORING = "monitoring"
    """A probe that connects, says EHLO and QUITs at a fixed interval."""
    APPLIANCE = "appliance"
    """Printers and appliances inside home_net relaying through our relay server."""
    SPAMBOT = "spambot"
    """A home_net host mailing internet MXes directly, at volume, with many failures."""
    AUTH_BRUTEFORCE = "auth_bruteforce"
    """An outside client guessing AUTH passwords on our server."""
    COMPROMISED_ACCOUNT = "compromised_account"
    """An outside client that fails AUTH, succeeds, then relays a burst through our server."""
    RELAY_ABUSE = "relay_abuse"
    """An outside client relaying through a misconfigured server of ours (the open relay)."""
    DICTIONARY_HARVEST = "dictionary_harvest"
    """An outside client probing many guessed recipients at our MX (550 5.1.1)."""
    SPAM_SOURCE = "spam_source"
    """An inbound spam sender: blocklisted replies, pregreet, bad HELO."""
    MAIL_CLIENT = "mail_client"
    """A home_net PC's mail program submitting to an outside provider on port 587: STARTTLS,
    then AUTH and the message, all encrypted."""
    SUBMISSION_SPAMBOT = "submission_spambot"
    """A home_net PC infected with an Emotet-style bot spamming through outside providers'
    submission servers (587) with stolen credentials: AUTH LOGIN in clear though STARTTLS is
    offered, as accounts of foreign domains, a HELO literal not its own, sloppy MAIL FROM, short
    "Re:" messages with attachments. Labelled kind spambot (the alert's kind)."""


MALICIOUS_KINDS = frozenset({
    ActorKind.SPAMBOT, ActorKind.AUTH_BRUTEFORCE, ActorKind.COMPROMISED_ACCOUNT,
    ActorKind.RELAY_ABUSE, ActorKind.DICTIONARY_HARVEST, ActorKind.SPAM_SOURCE,
    ActorKind.SUBMISSION_SPAMBOT,
})
INTERNAL_KINDS = frozenset({ActorKind.OUTBOUND_MTA, ActorKind.APPLIANCE, ActorKind.MONITORING,
                            ActorKind.SPAMBOT, ActorKind.MAIL_CLIENT,
                            ActorKind.SUBMISSION_SPAMBOT})
LABEL_KINDS: dict[ActorKind, str] = {ActorKind.SUBMISSION_SPAMBOT: ActorKind.SPAMBOT.value}
"""The kind written in the labels where it is not the actor's own: the alert kind expected."""


class TimingModel(StrEnum):
    """How an actor's sessions are spread over the capture."""

    POISSON = "poisson"
    """Independent arrivals at `rate_per_hour` per host."""
    DIURNAL = "diurnal"
    """Poisson arrivals whose rate follows the hour of day (peak at `peak_hour`)."""
    BURST = "burst"
    """Poisson arrivals at `rate_per_hour` only within [start, start + length]."""
    STEADY = "steady"
    """One session every `interval`, with relative `jitter`."""
    LOW_AND_SLOW = "low_and_slow"
    """Rare sessions at a long `interval` with large jitter, to stay under rate thresholds."""


class HeloStyle(StrEnum):
    """The kind of name a client gives in HELO/EHLO."""

    FQDN = "fqdn"
    """A fully qualified host name, e.g. mail3.corel.example."""
    BARE = "bare"
    """A single label, e.g. DESKTOP-7F3K2."""
    IP = "ip"
    """An address literal, e.g. [10.20.4.17]."""
    OTHER_IP = "other_ip"
    """An address literal that is not the client's own, e.g. a public address [198.19.4.7]."""
    INVALID = "invalid"
    """Garbage or a forged name of the receiving domain."""


class AuthMech(StrEnum):
    """SASL mechanisms a client may use (RFC 4954; PLAIN RFC 4616, CRAM-MD5 RFC 2195)."""

    NONE = "none"
    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"


class Target(StrEnum):
    """Which servers an actor's sessions go to."""

    EXTERNAL = "external"
    """Internet MX servers of the recipients' domains (site.external_mx pools)."""
    MX = "mx"
    """Our inbound MX servers (site.mx)."""
    RELAY = "relay"
    """Our submission/relay servers (site.relay)."""
    OPEN_RELAY = "open_relay"
    """Our misconfigured servers that relay for anyone (site.open_relays)."""
    SUBMISSION = "submission"
    """Outside mail providers' submission servers (RFC 6409 port 587, STARTTLS and AUTH
    offered), in the site.external_mx pools."""


@dataclass(slots=True, frozen=True)
class Site:
    """The protected site: its networks, mail servers and domains."""

    home_net: tuple[str, ...] = ("10.20.0.0/16", "2001:db8:20::/48")
    mx: tuple[str, ...] = ("10.20.0.25", "10.20.0.26", "2001:db8:20::25")
    relay: tuple[str, ...] = ("10.20.0.27",)
    open_relays: tuple[str, ...] = ("10.20.0.30",)
    mail_servers: tuple[str, ...] = ("10.20.0.10", "10.20.0.11")
    local_domains: tuple[str, ...] = ("campus.example", "mail.campus.example")
    external_mx: tuple[str, ...] = ("198.18.0.0/16", "2001:db8:ff00::/40")
    internet: tuple[str, ...] = ("198.19.0.0/16", "2001:db8:fe00::/40")
    users: int = 400


@dataclass(slots=True, frozen=True)
class Timing:
    """When an actor's hosts open sessions."""

    model: TimingModel = TimingModel.POISSON
    rate_per_hour: float = 10.0
    start_s: float = 0.0
    length_s: float | None = None
    interval_s: float = 60.0
    jitter: float = 0.05
    peak_hour: float = 14.0
    trough_ratio: float = 0.15


@dataclass(slots=True, frozen=True)
class Actor:
    """One group of hosts behaving alike; every field has a per-kind default."""

    kind: ActorKind
    name: str = ""
    count: int = 1
    hosts: tuple[str, ...] = ()
    os: OsProfile = OsProfile.LINUX
    vlan: int = 0
    hops: int = 12
    rtt_ms: tuple[float, float] = (15.0, 150.0)
    timing: Timing = Timing()
    target: Target = Target.EXTERNAL
    helo: HeloStyle = HeloStyle.FQDN
    ehlo: float = 0.97
    tls: float = 0.0
    pipelining: bool = True
    bdat: float = 0.0
    auth: AuthMech = AuthMech.NONE
    auth_users: tuple[str, ...] = ()
    auth_attempts: tuple[int, int] = (1, 1)
    auth_fail: float = 0.0
    fail_sessions: int = 0
    messages: tuple[int, int] = (1, 1)
    rcpts: tuple[int, int] = (1, 2)
    destinations: int = 300
    flavour: Flavour = Flavour.PERSONAL
    size_median: int = 6000
    size_sigma: float = 1.0
    attach: float = 0.15
    sloppy_paths: float = 0.0
    html: float = 0.3
    templates: int = 12
    reject_4xx: float = 0.01
    reject_5xx: float = 0.01
    data_reject: float = 0.0
    unknown_user: float = 0.0
    refused: float = 0.0
    unanswered: float = 0.0
    pregreet: float = 0.0
    blocklisted: float = 0.0
    blocklist_text: str = "Service unavailable; client host blocked using bl.example"
    quit: float = 0.97
    retransmit: float = 0.003
    reorder: float = 0.005


_INTERNAL_NET: dict[str, object] = {"hops": 1, "rtt_ms": (0.2, 2.0)}
_SCANNER = {"helo": HeloStyle.IP, "ehlo": 0.8, "pipelining": False, "os": OsProfile.WINDOWS}

KIND_DEFAULTS: dict[ActorKind, dict[str, object]] = {
    ActorKind.OUTBOUND_MTA: {
        **_INTERNAL_NET, "count": 2, "tls": 0.7, "bdat": 0.1, "messages": (1, 3),
        "rcpts": (1, 4), "destinations": 400, "reject_4xx": 0.03, "reject_5xx": 0.01,
        "refused": 0.002, "unanswered": 0.003,
        "timing": Timing(TimingModel.DIURNAL, rate_per_hour=600.0)},
    ActorKind.INBOUND_MTA: {
        "count": 40, "os": OsProfile.LINUX, "target": Target.MX, "tls": 0.6, "bdat": 0.05,
        "rcpts": (1, 2), "unknown_user": 0.02, "timing": Timing(rate_per_hour=30.0)},
    ActorKind.NEWSLETTER: {
        "count": 2, "os": OsProfile.FREEBSD, "target": Target.MX, "tls": 0.95,
        "messages": (3, 12), "rcpts": (1, 1), "flavour": Flavour.NEWSLETTER, "attach": 0.0,
        "size_median": 25000, "size_sigma": 0.4, "reject_4xx": 0.002, "reject_5xx": 0.002,
        "unknown_user": 0.01, "timing": Timing(TimingModel.BURST, rate_per_hour=240.0,
                                               start_s=120.0, length_s=900.0)},
    ActorKind.BACKUP_MX: {
        "target": Target.MX, "tls": 0.5, "messages": (10, 40), "rcpts": (1, 3),
        "timing": Timing(TimingModel.BURST, rate_per_hour=120.0, start_s=60.0, length_s=300.0)},
    ActorKind.MONITORING: {
        **_INTERNAL_NET, "target": Target.MX, "messages": (0, 0), "tls": 0.0,
        "pipelining": False, "retransmit": 0.0, "reorder": 0.0,
        "timing": Timing(TimingModel.STEADY, interval_s=60.0, jitter=0.01)},
    ActorKind.APPLIANCE: {
        **_INTERNAL_NET, "count": 8, "os": OsProfile.EMBEDDED, "vlan": 30,
        "target": Target.RELAY, "helo": HeloStyle.BARE, "ehlo": 0.6, "pipelining": False,
        "flavour": Flavour.SCAN, "attach": 1.0, "html": 0.0, "size_median": 250000,
        "size_sigma": 0.6, "templates": 4, "rcpts": (1, 1), "destinations": 40,
        "timing": Timing(rate_per_hour=4.0)},
    ActorKind.SPAMBOT: {
        **_INTERNAL_NET, "os": OsProfile.WINDOWS, "helo": HeloStyle.INVALID, "ehlo": 0.7,
        "pipelining": False, "rcpts": (1, 5), "destinations": 3000, "flavour": Flavour.SPAM,
        "size_median": 3000, "size_sigma": 0.5, "attach": 0.3, "reject_4xx": 0.2,
        "reject_5xx": 0.3, "data_reject": 0.1, "refused": 0.15, "unanswered": 0.12,
        "quit": 0.6, "timing": Timing(TimingModel.BURST, rate_per_hour=900.0, start_s=300.0,
                                      length_s=600.0)},
    ActorKind.AUTH_BRUTEFORCE: {
        **_SCANNER, "target": Target.RELAY, "auth": AuthMech.LOGIN, "auth_attempts": (3, 6),
        "auth_fail": 1.0, "messages": (0, 0),
        "auth_users": ("admin", "info", "test", "postmaster", "sales", "office", "user"),
        "timing": Timing(TimingModel.STEADY, interval_s=20.0, jitter=0.3, start_s=240.0,
                         length_s=600.0)},
    ActorKind.COMPROMISED_ACCOUNT: {
        "os": OsProfile.WINDOWS, "target": Target.RELAY, "auth": AuthMech.PLAIN,
        "auth_fail": 0.0, "fail_sessions": 4, "messages": (2, 6), "rcpts": (5, 25),
        "destinations": 1500, "flavour": Flavour.SPAM, "size_median": 4000, "size_sigma": 0.5,
        "attach": 0.2,
        "reject_4xx": 0.05, "reject_5xx": 0.05,
        "timing": Timing(TimingModel.BURST, rate_per_hour=120.0, start_s=400.0,
                         length_s=600.0)},
    ActorKind.RELAY_ABUSE: {
        **_SCANNER, "helo": HeloStyle.BARE, "target": Target.OPEN_RELAY, "messages": (1, 4),
        "rcpts": (10, 40), "destinations": 2000, "flavour": Flavour.SPAM,
        "size_median": 3000, "size_sigma": 0.5, "attach": 0.1,
        "timing": Timing(TimingModel.BURST, rate_per_hour=90.0, start_s=500.0,
                         length_s=500.0)},
    ActorKind.DICTIONARY_HARVEST: {
        **_SCANNER, "target": Target.MX, "messages": (1, 1), "rcpts": (15, 40),
        "unknown_user": 0.96, "flavour": Flavour.SPAM, "quit": 0.8,
        "timing": Timing(TimingModel.STEADY, interval_s=30.0, jitter=0.2, start_s=180.0,
                         length_s=600.0)},
    ActorKind.MAIL_CLIENT: {
        **_INTERNAL_NET, "count": 6, "os": OsProfile.WINDOWS, "target": Target.SUBMISSION,
        "helo": HeloStyle.BARE, "ehlo": 1.0, "tls": 1.0, "auth": AuthMech.LOGIN,
        "messages": (1, 2), "rcpts": (1, 3), "destinations": 400, "attach": 0.3,
        "timing": Timing(rate_per_hour=6.0)},
    ActorKind.SUBMISSION_SPAMBOT: {
        **_INTERNAL_NET, "os": OsProfile.WINDOWS, "target": Target.SUBMISSION,
        "helo": HeloStyle.OTHER_IP, "ehlo": 1.0, "tls": 0.0, "pipelining": False,
        "auth": AuthMech.LOGIN, "messages": (1, 2), "rcpts": (1, 3), "destinations": 2000,
        "flavour": Flavour.THREAD, "size_median": 60000, "size_sigma": 0.4, "attach": 1.0,
        "html": 0.0, "sloppy_paths": 1.0, "reject_4xx": 0.02, "reject_5xx": 0.05,
        "quit": 0.8, "timing": Timing(TimingModel.BURST, rate_per_hour=30.0, start_s=240.0,
                                      length_s=600.0)},
    ActorKind.SPAM_SOURCE: {
        "count": 4, "os": OsProfile.WINDOWS, "target": Target.MX, "helo": HeloStyle.INVALID,
        "ehlo": 0.6, "pipelining": False, "rcpts": (1, 6), "flavour": Flavour.SPAM,
        "size_median": 3000, "size_sigma": 0.5, "unknown_user": 0.3, "blocklisted": 0.4,
        "pregreet": 0.2,
        "reject_5xx": 0.2, "data_reject": 0.2, "quit": 0.5,
        "timing": Timing(rate_per_hour=40.0)},
}


DEFAULT_DURATION_S = 1800.0  # a scenario without a duration runs for half an hour
DEFAULT_START_EPOCH = 1_796_025_600.0  # 2026-11-30T08:00:00Z, a Monday morning


@dataclass(slots=True, frozen=True)
class Scenario:
    """A site plus the actors that use its mail infrastructure, over a default duration."""

    name: str
    description: str
    site: Site
    actors: tuple[Actor, ...]
    duration_s: float = DEFAULT_DURATION_S
    start_epoch: float = DEFAULT_START_EPOCH
