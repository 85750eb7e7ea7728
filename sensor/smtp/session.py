"""Mutable per-transaction state and the builder of the emitted MailTransaction record."""

from __future__ import annotations

from typing import Final

from sensor.records import MailTransaction, Recipient
from sensor.smtp.body import MessageBody
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.message import MessageInfo, analyze_head, analyze_message, walk_message

# Keys always present in MailTransaction.headers (None when the header was absent or no message).
HEADER_FIELDS: Final = (
    "date", "from", "to", "cc", "reply_to", "subject", "msg_id", "in_reply_to",
    "x_originating_ip", "user_agent", "first_received", "second_received",
)  # fmt: skip


_NO_MESSAGE: Final = MessageInfo()  # what a transaction without content shows (never mutated)
HEAD_PREFIX: Final = 2048  # message bytes first tried for the header block (most end well before)


# RcptState and TxnState are plain classes, not dataclasses: they are made per command and per
# transaction, and a dataclass's generated __init__ stays interpreted when the module is compiled.


class RcptState:
    """A RCPT TO awaiting (or holding) its reply."""

    __slots__ = ("addr", "code", "enhanced", "params", "text")

    def __init__(self, addr: str, params: dict[str, str]) -> None:
        self.addr = addr
        self.params = params
        self.code = 0
        self.enhanced: str | None = None
        self.text = ""


class TxnState:
    """A mail transaction being parsed: opened by MAIL (or a stray RCPT), ended by the next MAIL,
    the reply to end-of-data, or the end of the connection (Zeek's row boundaries)."""

    __slots__ = (
        "body", "closed", "complete", "content_ended", "data_mode", "end_code", "last_code",
        "last_reply", "mail_code", "mail_from", "mail_params", "pending", "rcpts",
        "rcpts_dropped", "recorded", "reset", "tls", "trans_depth", "ts",
    )  # fmt: skip

    def __init__(self, ts: float, trans_depth: int, recorded: bool) -> None:
        self.ts = ts
        self.trans_depth = trans_depth
        self.recorded = recorded  # False beyond SmtpLimits.max_txns_per_session
        self.mail_from: str | None = None
        self.mail_params: dict[str, str] = {}
        self.mail_code = 0
        self.rcpts: list[RcptState] = []
        self.rcpts_dropped = 0
        self.data_mode: str | None = None
        self.body: MessageBody | None = None
        self.content_ended = False  # the client finished sending the content
        self.last_reply: str | None = None
        self.last_code = 0
        self.end_code = 0  # reply to end-of-data (DATA dot or BDAT LAST)
        self.reset = False  # RSET/HELO/EHLO since MAIL
        self.complete = True
        self.tls = False
        self.closed = False  # no further command joins it
        self.pending = 0  # commands of this transaction awaiting a reply

    def has_live_rcpt(self) -> bool:
        """True if a recipient was accepted or is still awaiting its reply."""
        return any(r.code == 0 or r.code // 100 == 2 for r in self.rcpts)


def message_info(body: MessageBody, limits: SmtpLimits) -> MessageInfo:
    """What the message copy holds; an error inside the analysis is reported in the result
    (``error``), never raised: no message may end a run."""
    try:
        head, whole = body.head(HEAD_PREFIX)
        quick = analyze_head(head, whole, limits)
        cut = body.truncated or body.broken
        if quick is not None:
            return quick
        if whole:  # the whole message was seen: it needs the walk
            return walk_message(head, cut, limits)
        return analyze_message(body.message(), cut, limits)
    except Exception as exc:  # a bug in the analysis: count it, keep the session
        failed = MessageInfo()
        failed.error = type(exc).__name__
        return failed


def build_transaction(txn: TxnState, limits: SmtpLimits) -> tuple[MailTransaction, MessageInfo]:
    """The emitted record of a finished transaction, and what its message walk found."""
    info = _NO_MESSAGE
    body = txn.body
    size = 0
    truncated = False
    if body is not None:
        size = body.size
        truncated = body.truncated
        if body.raw:
            info = message_info(body, limits)
    headers: dict[str, str | None] = dict.fromkeys(HEADER_FIELDS)
    if info.headers:
        headers.update(info.headers)
    record = MailTransaction(
        ts=txn.ts,
        trans_depth=txn.trans_depth,
        mail_from=txn.mail_from,
        mail_params=txn.mail_params,
        mail_code=txn.mail_code,
        rcpt_to=tuple(Recipient(r.addr, r.params, r.code, r.enhanced, r.text) for r in txn.rcpts),
        rcpts_dropped=txn.rcpts_dropped,
        data_mode=txn.data_mode,
        size=size,
        headers=headers,
        received_count=info.received_count,
        received_ips=tuple(info.received_ips),
        mime_parts=info.mime_parts,
        attachments=tuple(info.attachments),
        last_reply=txn.last_reply,
        last_code=txn.last_code,
        accepted=txn.end_code // 100 == 2,
        complete=txn.complete,
        truncated=truncated,
        tls=txn.tls,
    )
    return record, info
