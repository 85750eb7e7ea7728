"""Records passed between the sensor's stages: emitted records are frozen, long-lived state not."""

from __future__ import annotations

import copyreg
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from operator import attrgetter
from typing import Any

# capture / decode / tcp counters (long-lived, mutable): compiled, in a module of their own
from sensor.counters import CaptureStats as CaptureStats
from sensor.counters import TcpStats as TcpStats

# --------------------------------------------------------------------------------------------
# tcp


@dataclass(slots=True, frozen=True)
class ConnRecord:
    """One TCP connection, Zeek conn.log-like; client is the SYN sender (else not the SMTP port)."""

    uid: str
    ts: float
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    duration_s: float
    state: str
    history: str
    bytes_to_server: int
    bytes_to_client: int
    pkts_to_server: int
    pkts_to_client: int
    wire_bytes_to_server: int
    wire_bytes_to_client: int
    retrans_segments: int
    ooo_segments: int
    gaps: int
    gap_bytes: int
    conflicting_overlaps: int
    rtt_s: float | None
    syn_ttl: int | None
    syn_window: int | None
    syn_mss: int | None
    syn_wscale: int | None
    end_reason: str


# --------------------------------------------------------------------------------------------
# smtp


@dataclass(slots=True, frozen=True)
class Recipient:
    """One RCPT TO with the server's answer (code 0 when no reply was seen)."""

    addr: str
    params: dict[str, str]
    code: int
    enhanced: str | None
    text: str


@dataclass(slots=True, frozen=True)
class Attachment:
    """One MIME part carrying a file (or a non-text leaf part), with its SHA-256."""

    filename: str | None
    content_type: str
    disposition: str | None  # attachment | inline | None (no Content-Disposition)
    size: int  # decoded bytes seen (of the size-capped copy when truncated)
    sha256: str
    truncated: bool  # the part was cut by SmtpLimits.max_mime_bytes or a gap


@dataclass(slots=True, frozen=True)
class AuthAttempt:
    """One AUTH exchange: mechanism, outcome and the user name where the mechanism reveals it."""

    ts: float
    mechanism: str
    outcome: str  # success | failure | temp_failure | aborted | unknown
    code: int
    user: str | None
    after_starttls: bool = False  # sent in plaintext after a 220 to STARTTLS (starttls_plaintext)


@dataclass(slots=True, frozen=True)
class MailTransaction:
    """One mail transaction: MAIL FROM, its recipients, the message and the final reply."""

    ts: float
    trans_depth: int
    mail_from: str | None
    mail_params: dict[str, str]
    mail_code: int
    rcpt_to: tuple[Recipient, ...]
    rcpts_dropped: int  # RCPT commands beyond SmtpLimits.max_rcpts_per_txn (not in rcpt_to)
    data_mode: str | None  # "data" | "bdat" | None when no content was sent
    size: int  # message bytes after dot-unstuffing (DATA) or sum of BDAT chunks
    headers: dict[str, str | None]
    received_count: int
    received_ips: tuple[str, ...]  # one IP per Received header that names one, in header order
    mime_parts: int  # leaf MIME entities (bodies and attachments) in the walked copy
    attachments: tuple[Attachment, ...]
    last_reply: str | None  # Zeek form "250 2.0.0 Ok: queued" (code and last reply line)
    last_code: int
    accepted: bool
    complete: bool  # False after a gap, a missing terminator or a cut BDAT chunk
    truncated: bool  # message longer than SmtpLimits.max_mime_bytes: walk covers the prefix
    tls: bool  # STARTTLS was accepted while this transaction was open (Zeek's tls)


@dataclass(slots=True, frozen=True)
class SmtpSession:
    """One SMTP session (one TCP connection), with its transactions nested."""

    uid: str
    ts: float
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    duration_s: float
    banner: str | None
    banner_code: int
    helo: str | None
    helo_verb: str | None
    helo_kind: str | None  # fqdn | ip_literal | bare_word | invalid
    extensions: tuple[str, ...]
    tls_offered: bool
    tls_attempted: bool
    tls_established: bool
    tls_bytes: int
    tls_reply: str | None  # reply to STARTTLS in last_reply form, None if never answered
    auth: tuple[AuthAttempt, ...]
    reply_codes: dict[int, int]
    anomalies: dict[str, int]
    commands: tuple[str, ...]
    bytes_from_client: int
    bytes_from_server: int
    transactions: tuple[MailTransaction, ...] = field(default_factory=tuple)
    midstream: bool = False  # picked up without the TCP handshake: the dialogue's start unseen


# --------------------------------------------------------------------------------------------
# features / detect (feature order and version: sensor/features/schema.py)


@dataclass(slots=True, frozen=True)
class WindowFeatures:
    """One host's behaviour over one sliding window of packet time (field order: feature schema)."""

    # connections the host opened as client (from ConnRecords)
    conns: float
    failed_conns: float  # refused + unanswered + reset before the banner
    refused_conns: float  # REJ
    unanswered_conns: float  # S0, SH, RSTOS0, OTH without a reply
    reset_conns: float  # reset by the server before any payload (RSTR/RSTRH)
    ext_conns: float  # to servers outside home_net, not on the submission port (587)
    ext_failed_conns: float
    # SMTP sessions the host opened as client
    sessions: float
    no_banner_sessions: float
    tls_sessions: float
    helo_bad: float  # HELO/EHLO bare word, invalid, or an address literal not of the client
    helo_forged: float  # an outside client claiming one of our local domains in HELO
    pregreet: float
    blocked: float  # sessions refused with a blocklist-like 554/521 reply
    abuse_anomalies: float  # protocol violations (sensor.features.extract.ABUSE_ANOMALIES)
    non_smtp: float  # another protocol spoken on the SMTP port
    stripped_starttls: float
    mail_from: float  # MAIL FROM commands (ET 2000328 counts these)
    ext_mail_from: float  # MAIL FROM to servers outside home_net, not on port 587
    msgs: float  # transactions that sent content
    msg_bytes: float
    bytes_out: float  # client payload bytes
    rcpts: float
    rcpt_accepted: float
    rcpt_4xx: float
    rcpt_5xx: float
    rcpt_unknown: float  # 5.1.1 / 550 "user unknown"
    rcpt_foreign: float  # recipients outside local_domains
    relay_rcpts: float  # foreign recipients accepted without AUTH by our server, host outside
    auth_attempts: float
    auth_failures: float
    auth_successes: float
    auth_clear_ext_success: float  # successful AUTH in clear text across the home_net boundary
    # the host as a server in home_net
    srv_sessions: float
    srv_relay_rcpts: float  # foreign recipients it accepted without AUTH from outside clients
    srv_auth_failures: float
    # stolen-credential submission, in sessions across the home_net boundary
    auth_clear_tls_offered: float  # AUTH sent in clear although the server offered STARTTLS
    auth_user_foreign: float  # AUTH as an address of a domain neither ours nor the server's
    helo_literal_other: float  # HELO/EHLO an address literal that is not the client's address
    sloppy_paths: float  # MAIL FROM / RCPT TO in a syntax RFC 5321 does not allow (sloppy_path)
    reply_attach_msgs: float  # messages with a "Re:" subject carrying an attachment
    # v2: the server's verdicts (sensor.features.extract) and time of day
    data_rejects: float  # messages refused (5xx) in reply to their end of data / last BDAT
    data_tempfails: float  # messages deferred (4xx) in reply to their end of data / last BDAT
    policy_refusals: float  # 5xx replies with an enhanced code 5.7.x (policy or security)
    greylisted: float  # 4xx replies that are greylisting: 4.7.x, or 450/451 saying greylist
    offhours_sessions: float  # sessions started outside [site] work_hours / work_days
    # distinct counts
    dst_ips: float
    dst_24s: float  # distinct /24 (IPv4) or /48 (IPv6) destination networks
    ext_dst_ips: float
    helo_names: float
    rcpt_domains: float
    auth_users: float
    srv_relay_clients: float
    # derived
    failed_ratio: float
    reject_ratio: float  # (4xx + 5xx) / recipients
    unknown_ratio: float
    tls_share: float
    foreign_share: float
    mean_msg_size: float
    interarrival_cv: float  # stdev / mean of the gaps between session starts; 0 when < 3 sessions
    helo_bad_share: float
    # v2
    data_reject_share: float  # data_rejects / msgs
    rcpts_per_msg: float  # RCPT TO commands of the transactions that sent content / msgs
    msg_size_cv: float  # stdev / mean of message sizes; 0 when < 2 messages
    offhours_share: float  # offhours_sessions / sessions


@dataclass(slots=True, frozen=True)
class HostFeatures:
    """A host's features at one moment of packet time, over the short, medium and long windows."""

    host: str
    ts: float  # packet time of the update
    in_home_net: bool
    mail_server: bool  # an authorised MTA (site.mail_servers)
    first_seen: float  # first event of the host still remembered
    short: WindowFeatures
    medium: WindowFeatures
    long: WindowFeatures
    short_start: float  # ts of the oldest event in each window (ts when empty)
    medium_start: float
    long_start: float
    auth_fails_before_success: float  # AUTH failures (client or user) before the last success
    rcpts_after_auth_success: float  # recipients sent in authenticated sessions since then
    msgs_after_auth_success: float
    auth_success_ts: float  # 0.0 when no success after failures is remembered
    sessions: tuple[str, ...]  # uids of the host's most recent sessions
    auth_own_fails_before_success: float  # of auth_fails_before_success, this client's own
    burst_rcpts_after_auth_success: float  # recipients sent within the medium window after it


@dataclass(slots=True, frozen=True)
class Alert:
    """One alert (DESIGN.md's alert record); ts is packet time."""

    ts: float
    time: str
    sensor: str
    host: str
    kind: str
    severity: int
    sid: int
    rule: str
    score: float
    source: str  # rule | model | both
    window_s: float
    summary: str
    evidence: dict[str, object]
    first_seen: float
    last_seen: float


# --------------------------------------------------------------------------------------------
# construction: what a stage emits is frozen, and built as fast as a mutable record

EMITTED_RECORDS = (ConnRecord, Recipient, Attachment, AuthAttempt, MailTransaction, SmtpSession,
                   WindowFeatures, HostFeatures, Alert)  # fmt: skip
"""The frozen record classes, built by `_quick_construction`."""


class _Factory:
    """Default of a parameter whose field has a default_factory (the factory is called)."""


_FACTORY = _Factory()
_REQUIRED = _Factory()  # the Builder's marker of a field without default

_builder: type[Any] | None
try:  # the C construction (sensor/_build.c), built beside the compiled modules
    from sensor import _build

    _builder = _build.Builder
except ImportError:  # pure-Python install: python_new, the same records, slower
    _builder = None

NATIVE_BUILD = _builder is not None
"""Whether the emitted records are built by sensor/_build.c (else by `python_new`)."""
_BUILDERS: dict[type, Any] = {}  # record class -> its C Builder (where built)


def _quick_construction(cls: type) -> None:
    """Build instances of the frozen record class `cls` without its generated __init__.

    A frozen dataclass's __init__ stores each field through object.__setattr__: 2.8-3.9 us
    for ConnRecord, some 13 us per SMTP session with its transaction and recipients, about 7%
    of a live sensor's CPU. Instead `cls.__new__`, with the parameters of that __init__, fills
    the instance's slots: in C (sensor/_build.c, some 0.1-0.3 us) where it is built, else the
    generated `python_new`. The result is the same object as before: equal, hashed, printed
    and immutable as before (tests/test_records.py). Copy and pickle rebuild a record by
    calling its class (`register_reducers`). The records are not subclassed: a subclass with
    fields of its own would not fit the layout.
    """
    fs = fields(cls)
    if _builder is None:
        setattr(cls, "__new__", staticmethod(python_new(cls)))  # noqa: B010 - no method assignment
        setattr(cls, "__init__", object.__init__)  # noqa: B010 - __new__ does the work
        return
    builder = _builder(
        cls,
        tuple(f.name for f in fs),
        tuple(_REQUIRED if f.default is MISSING else f.default for f in fs),
        tuple(None if f.default_factory is MISSING else f.default_factory for f in fs),
        _REQUIRED,
    )
    _BUILDERS[cls] = builder
    setattr(cls, "__new__", staticmethod(builder))  # noqa: B010 - no method assignment
    setattr(cls, "__init__", object.__init__)  # noqa: B010 - __new__ does the work
    builder.install()  # calls of the class go straight to it (not via type.__call__)
    # What inspect.signature(cls) read from the generated __new__ (hypothesis's builds() and
    # the like ask it): the parameters of the dataclass's __init__.
    empty = inspect.Parameter.empty
    setattr(cls, "__signature__", inspect.Signature([  # noqa: B010 - a class attribute
        inspect.Parameter(
            f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=f.type,
            default=(f.default if f.default is not MISSING
                     else _FACTORY if f.default_factory is not MISSING else empty),
        )
        for f in fs
    ]))  # fmt: skip


def python_new(cls: type) -> Callable[..., Any]:
    """The Python reading of the C Builder: a __new__ for `cls`, with the parameters of its
    dataclass __init__, that builds a mutable slotted twin with the same fields (so the same
    layout) by plain attribute stores, then sets its class to `cls`. Generated like
    dataclasses' own methods."""
    fs = fields(cls)
    names = [f.name for f in fs]
    twin = make_dataclass(f"_{cls.__name__}Build", names, slots=True, eq=False, repr=False)
    ns: dict[str, Any] = {"_twin": twin, "_FACTORY": _FACTORY}
    params: list[str] = []
    factories: list[str] = []
    for f in fs:
        if f.default is not MISSING:
            ns[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not MISSING:
            ns[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            factories.append(f"    if {f.name} is _FACTORY:\n        {f.name} = _f_{f.name}()")
        else:
            params.append(f.name)
    values = ", ".join(names)
    src = "\n".join([
        f"def __new__(_of, {', '.join(params)}):",
        *factories,
        f"    obj = _twin({values})",
        "    obj.__class__ = _of",
        "    return obj",
    ])  # fmt: skip
    exec(src, ns)
    made: Callable[..., Any] = ns["__new__"]
    made.__qualname__ = f"{cls.__qualname__}.__new__"
    return made


for _cls in EMITTED_RECORDS:
    _quick_construction(_cls)


# --------------------------------------------------------------------------------------------
# pickling: records cross process boundaries (--workers, live fanout, --cluster)

WIRE_RECORDS = (ConnRecord, SmtpSession, MailTransaction, Recipient, Attachment, AuthAttempt)
"""Record classes that travel between processes when another process runs detection."""


def _reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle an instance of the frozen dataclass `cls` as a call of `cls` on its field values
    (the Python reading of the C Builder's `reduce`, which reads the slots directly)."""
    values = attrgetter(*(f.name for f in fields(cls)))
    return lambda obj: (cls, values(obj))


def register_reducers() -> None:
    """Pickle the records as constructor calls: a frozen slotted dataclass pickles through
    dataclasses' __getstate__/__setstate__, which list the fields on every call (about 120 us
    per record, dumped and loaded, nested objects included); a call on the field values costs a
    tenth of that, and the C Builder's `reduce` a third of that again (no interpreted call, no
    attribute lookup per field: a fanout worker pickles every record). Only the pickling side
    needs this; unpickling calls the class."""
    for cls in EMITTED_RECORDS:  # WIRE_RECORDS among them
        builder = _BUILDERS.get(cls)
        copyreg.pickle(cls, builder.reduce if builder is not None else _reducer(cls))


register_reducers()  # in every process that imports the records: workers, parents, clients
