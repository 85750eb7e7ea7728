"""States of the two directions of an SMTP parser and the kinds of commands awaiting a reply."""

from __future__ import annotations

from enum import Enum, auto

from sensor.smtp.auth import AuthExchange
from sensor.smtp.session import RcptState, TxnState


class ClientState(Enum):
    """What the next client bytes are."""

    COMMAND = auto()
    """Command lines (RFC 5321 4.1)."""
    DATA = auto()
    """DATA content, still dot-stuffed, up to CRLF.CRLF (RFC 5321 4.1.1.4)."""
    BDAT = auto()
    """A BDAT chunk: exactly the announced number of octets (RFC 3030 2)."""
    AUTH = auto()
    """SASL response lines of an AUTH exchange (RFC 4954 4); a command-looking line ends it."""
    STARTTLS_WAIT = auto()
    """STARTTLS sent: bytes held unparsed until the reply says whether TLS starts; plaintext
    sent before that reply is command injection (CVE-2011-0411)."""
    STARTTLS_PROBE = auto()
    """STARTTLS accepted (220): the next client bytes say TLS (a TLS record) or plaintext."""
    TLS = auto()
    """Encrypted after an accepted STARTTLS: counted, never parsed."""
    RESYNC = auto()
    """After a gap or a mid-stream pick-up: lines skipped until one parses as a command."""
    HTTP_HEADERS = auto()
    """After an HTTP request line (proxy CONNECT, GET...): header lines up to the empty line."""


class ServerState(Enum):
    """What the next server bytes are."""

    BANNER = auto()
    """Nothing seen yet: the first reply is the greeting (RFC 5321 3.1)."""
    REPLIES = auto()
    """Replies matched in order to the pending commands."""
    STARTTLS_PROBE = auto()
    """After the 220 to STARTTLS, until the client's next bytes say TLS or plaintext: server
    bytes are held (sent before the client's hello, they are response injection)."""
    TLS = auto()
    """Encrypted after the 220 to STARTTLS: counted, never parsed."""
    RESYNC = auto()
    """After a gap or a mid-stream pick-up: lines skipped until one is a reply line."""
    HTTP_HEADERS = auto()
    """An HTTP response (a proxy answering CONNECT): skipped up to its empty line."""


class Cmd(Enum):
    """Kind of a line awaiting its reply."""

    HELO = auto()
    EHLO = auto()
    MAIL = auto()
    RCPT = auto()
    DATA = auto()
    DATA_END = auto()
    """The end-of-data marker (CRLF.CRLF): its reply ends the transaction."""
    BDAT = auto()
    BDAT_LAST = auto()
    """The last BDAT chunk: its reply ends the transaction."""
    AUTH = auto()
    AUTH_RESPONSE = auto()
    STARTTLS = auto()
    OTHER = auto()
    GAP = auto()
    """Barrier for the unknown commands lost in a client gap."""


class Pending:
    """A client line awaiting its reply, with what the reply updates.

    A plain class, not a dataclass: one is made per command, and a dataclass's generated
    ``__init__`` stays interpreted when the module is compiled.
    """

    __slots__ = ("auth", "flagged", "kind", "rcpt", "ts", "txn")

    def __init__(
        self,
        kind: Cmd,
        ts: float,
        txn: TxnState | None = None,
        rcpt: RcptState | None = None,
        auth: AuthExchange | None = None,
    ) -> None:
        self.kind = kind
        self.ts = ts
        self.txn = txn
        self.rcpt = rcpt
        self.auth = auth
        self.flagged = False  # pipelining_not_advertised already counted for this line
