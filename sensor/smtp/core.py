"""State shared by the client and server halves of the SMTP parser, and transaction bookkeeping."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Final

from sensor.records import MailTransaction, SmtpSession
from sensor.smtp.anomalies import Anomaly
from sensor.smtp.auth import AuthExchange
from sensor.smtp.body import MessageBody
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.lines import LineBuffer
from sensor.smtp.replies import ReplyAssembler
from sensor.smtp.session import TxnState, build_transaction
from sensor.smtp.state import ClientState, Cmd, Pending, ServerState
from sensor.tcp.stream import StreamSink

_log: Final = logging.getLogger(__name__)

MIN_TLS_HELLO: Final = 64
"""Client bytes after a STARTTLS, all lost or unparsed, from which a session that lost its
reply is taken to have gone on in TLS (a ClientHello is longer; a plaintext client's next
command would have been parsed)."""

LOSS_ARTEFACTS: Final = frozenset({
    Anomaly.PREGREET, Anomaly.NO_BANNER, Anomaly.BARE_LF, Anomaly.BARE_CR,
    Anomaly.UNKNOWN_COMMAND, Anomaly.PIPELINING_NOT_ADVERTISED, Anomaly.OUT_OF_SEQUENCE,
    Anomaly.STARTTLS_INJECTION, Anomaly.STARTTLS_PLAINTEXT, Anomaly.STARTTLS_RESPONSE_INJECTION,
    Anomaly.COMMAND_AFTER_421, Anomaly.INVALID_TRANSACTION, Anomaly.BAD_PATH,
    Anomaly.BDAT_INVALID_SIZE, Anomaly.UNMATCHED_REPLY, Anomaly.MALFORMED_REPLY,
    Anomaly.MISSING_DATA_TERMINATOR, Anomaly.DATA_AFTER_REFUSAL, Anomaly.TXN_UNANSWERED,
    Anomaly.PENDING_OVERFLOW,
})
"""Anomalies that lost bytes can fake (a command, a reply, a line end or the terminator fell
into the hole): a session that had a gap does not report them, the gap is counted itself
(gap_client, gap_server), so that capture loss shows as gaps and a loss figure, never as
protocol abuse."""


class ParserCore(StreamSink):
    """Everything one SMTP session's parser knows; the halves add behaviour, not state. A
    StreamSink: the reassembler calls the parser's data, gap and close natively."""

    def __init__(
        self,
        uid: str,
        ts: float,
        endpoints: tuple[str, int, str, int],
        emit: Callable[[SmtpSession], None],
        limits: SmtpLimits,
        midstream: bool = False,
    ) -> None:
        self.limits = limits
        self.uid, self.ts = uid, ts
        self.client_ip, self.client_port, self.server_ip, self.server_port = endpoints
        self.emit = emit
        self.cbuf = LineBuffer(limits.max_line)
        self.sbuf = LineBuffer(limits.max_line)
        self.assembler = ReplyAssembler(limits.max_reply_lines)
        self.cstate = ClientState.COMMAND
        self.sstate = ServerState.BANNER
        self.http_resume = ServerState.BANNER  # server state after a skipped HTTP response
        self.server_ts = ts  # time of the latest server payload
        self.queue: deque[Pending] = deque()
        self.anomalies: dict[Anomaly, int] = {}
        self.reply_codes: dict[int, int] = {}
        self.commands: list[str] = []
        self.txns: deque[TxnState] = deque()  # open or awaiting replies, oldest first
        self.done: list[MailTransaction] = []
        self.auths: list[AuthExchange] = []
        self.auth: AuthExchange | None = None  # the exchange reading client responses
        self.txn_count = 0
        self.messages_sent = 0  # transactions whose content was completely sent
        self.body: MessageBody | None = None  # content being received
        self.data_at_start = False
        self.bdat_left = 0
        self.bdat_last = False
        self.bdat_txn: TxnState | None = None
        self.helo: str | None = None
        self.helo_verb: str | None = None
        self.banner: str | None = None
        self.banner_code = 0
        self.banner_ts: float | None = None
        self.first_client_ts: float | None = None
        self.pregreet = False
        self.closing_ts: float | None = None  # time of a 421 reply
        self.extensions: tuple[str, ...] = ()
        self.pipelining = False
        self.tls_offered = self.tls_attempted = self.tls_established = False
        self.tls_reply: str | None = None
        self.tls_bytes = 0
        self.tls_injected = False  # plaintext followed the latest STARTTLS before its reply
        self.probe_at = 0  # client bytes held before the 220 to STARTTLS (injected plaintext)
        self.tls_resp_injected = False  # server bytes came after the 220 before the hello
        self.bytes_from_client = self.bytes_from_server = 0
        self.starttls_at = 0  # bytes_from_client when the latest STARTTLS was parsed
        self.closed = False
        self.failure: str | None = None
        """The exception type that stopped this session's parsing (a bug of ours), if any."""
        self.gapped = False
        """Bytes of the dialogue were lost (a gap either way, outside TLS): the session reports
        no LOSS_ARTEFACTS."""
        self.midstream = midstream
        """Picked up without the TCP handshake: the start of the dialogue was not seen."""
        self.lost_start = midstream  # no HELO/EHLO or MAIL seen since a mid-stream pick-up
        self.ext_known = not midstream  # PIPELINING is known (advertised or not) when True
        if midstream:  # both directions resync as after a gap; replies to unseen lines vanish
            self.cstate = ClientState.RESYNC
            self.sstate = ServerState.RESYNC
            self.cbuf.checkpoint()
            self.sbuf.checkpoint()
            self.queue.append(Pending(Cmd.GAP, ts))

    @abstractmethod
    def client_run(self, ts: float) -> None:
        """Consume buffered client bytes as far as the client state allows."""

    @abstractmethod
    def client_tls(self, n: int) -> None:
        """Client bytes are TLS from here on (``n`` more bytes not buffered)."""

    @abstractmethod
    def server_run(self, force: bool) -> None:
        """Parse buffered server lines as far as the pending commands allow."""

    def count(self, anomaly: Anomaly, n: int = 1) -> None:
        """Add ``n`` occurrences of an anomaly."""
        if n:
            anomalies = self.anomalies
            anomalies[anomaly] = anomalies.get(anomaly, 0) + n

    def check_pregreet(self) -> None:
        """Count pregreet once the times of the banner and of the first client byte are known."""
        first, banner = self.first_client_ts, self.banner_ts
        if not self.pregreet and first is not None and banner is not None and first < banner:
            self.pregreet = True
            self.count(Anomaly.PREGREET)

    def current_txn(self) -> TxnState | None:
        """The transaction new commands belong to (None if none is open)."""
        if self.txns and not self.txns[-1].closed:
            return self.txns[-1]
        return None

    def enqueue(self, p: Pending) -> None:
        """Queue a line for its reply, counting it against its transaction."""
        if len(self.queue) >= self.limits.max_pending_cmds:
            self.count(Anomaly.PENDING_OVERFLOW)
            return
        if p.txn is not None:
            p.txn.pending += 1
        self.queue.append(p)

    def answered(self, p: Pending) -> None:
        """A queued line got its reply (or lost it): release its transaction."""
        if p.txn is not None:
            p.txn.pending -= 1
            self.settle()

    def open_txn(self, ts: float) -> TxnState:
        """Close the current transaction and open a new one."""
        cur = self.current_txn()
        if cur is not None:
            cur.closed = True
        self.settle()  # also bounds the transactions awaiting replies
        self.txn_count += 1
        recorded = self.txn_count <= self.limits.max_txns_per_session
        if not recorded:
            self.count(Anomaly.TOO_MANY_TXNS)
        txn = TxnState(ts, self.messages_sent + 1, recorded)
        self.txns.append(txn)
        return txn

    def settle(self) -> None:
        """Emit the oldest transactions that are closed and answered.

        Past ``max_unanswered_txns`` ended transactions awaiting replies (a client pipelining
        transactions the server never answers), the oldest is recorded as it stands, so memory
        stays bounded by the limits whatever the input length.
        """
        txns = self.txns
        cap = self.limits.max_unanswered_txns
        while txns:
            head = txns[0]
            if not (head.closed and head.pending <= 0):
                if len(txns) <= cap or not head.closed:
                    return
                self.count(Anomaly.TXN_UNANSWERED)
            self.finish_txn(txns.popleft())

    def finish_txn(self, txn: TxnState) -> None:
        """Build a finished transaction's record."""
        if not txn.recorded:
            return
        record, info = build_transaction(txn, self.limits)
        if info.header_too_large:
            self.count(Anomaly.HEADER_TOO_LARGE)
        if info.limited:
            self.count(Anomaly.MIME_LIMIT)
        if info.error is not None:
            self.count(Anomaly.ANALYZER_ERROR)
            _log.warning("session %s: message analysis failed (%s); its headers and attachments "
                         "are not recorded", self.uid, info.error)
        self.done.append(record)

    def fail(self, exc: Exception) -> None:
        """An exception escaped the parsing of this session: count it, log it, parse no more."""
        self.failure = type(exc).__name__
        self.count(Anomaly.ANALYZER_ERROR)
        _log.warning("session %s: parsing stopped by %s: %s; what was parsed before is kept",
                     self.uid, self.failure, exc)
