"""Records passed between the sensor's stages: emitted records are frozen, long-lived state not."""

from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# capture / decode / tcp counters (long-lived, mutable)


@dataclass(slots=True)
class CaptureStats:
    """What the capture and decode stages saw and why they skipped what they skipped."""

    files: int = 0
    files_failed: int = 0
    files_truncated: int = 0
    packets: int = 0
    bytes: int = 0
    filtered_out: int = 0
    non_ip: int = 0
    non_tcp: int = 0
    ip_fragments: int = 0
    truncated: int = 0
    malformed: int = 0
    unknown_linktype: int = 0
    tcp_segments: int = 0


@dataclass(slots=True)
class TcpStats:
    """Counters of the reassembly stage, including every cap that was hit."""

    connections: int = 0
    active_peak: int = 0
    evicted_lru: int = 0
    timed_out: int = 0
    flushed_at_end: int = 0
    ooo_segments: int = 0
    retransmissions: int = 0
    conflicting_overlaps: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    ooo_cap_hits: int = 0
    total_cap_hits: int = 0
    bad_segments: int = 0


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
