"""Incremental, sans-IO SMTP parser of one TCP connection, fed both directions and gaps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.anomalies import Anomaly
from sensor.smtp.client import ClientSide
from sensor.smtp.commands import helo_kind_text
from sensor.smtp.core import LOSS_ARTEFACTS, MIN_TLS_HELLO
from sensor.smtp.limits import SmtpLimits
from sensor.smtp.state import ClientState, ServerState

__all__ = ["SmtpLimits", "SmtpParser"]  # SmtpLimits re-exported for callers wiring the parser

# Enum members as module constants: a class attribute lookup costs ~5x more per payload.
_C_DATA: Final = ClientState.DATA
_C_TLS: Final = ClientState.TLS
_C_STARTTLS_WAIT: Final = ClientState.STARTTLS_WAIT
_C_STARTTLS_PROBE: Final = ClientState.STARTTLS_PROBE
_C_COMMAND: Final = ClientState.COMMAND
_S_REPLIES: Final = ServerState.REPLIES


class SmtpParser(ClientSide):
    """One SMTP session: feed ``data``/``gap`` per direction, then ``close``; emits SmtpSession.

    Never raises on any bytes; memory is bounded by SmtpLimits plus one ``data`` payload.
    """

    def __init__(
        self,
        uid: str,
        ts: float,
        client_ip: str,
        client_port: int,
        server_ip: str,
        server_port: int,
        emit: Callable[[SmtpSession], None],
        limits: SmtpLimits | None = None,
        midstream: bool = False,
    ) -> None:
        """``midstream``: the connection was picked up without its handshake, so its start is
        missing; both directions then resync (no violation counted) until a command or a reply
        line."""
        endpoints = (client_ip, client_port, server_ip, server_port)
        lim = limits if limits is not None else SmtpLimits()
        super().__init__(uid, ts, endpoints, emit, lim, midstream)

    # The session boundary: data, gap and close catch whatever escapes the parsing of this one
    # session (a bug of ours, since hostile bytes are anomalies), so that no input ends a run.

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        """In-order bytes of one direction (any split of the stream)."""
        if not len(payload) or self.closed or self.failure is not None:  # len: see Reassembler
            return
        try:
            self.feed(to_server, ts, payload)
        except Exception as exc:
            self.fail(exc)

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        """``n`` bytes of one direction were lost; the parser resynchronises."""
        if n <= 0 or self.closed or self.failure is not None:
            return
        try:
            if to_server:
                self.client_gap(ts, n)
            else:
                self.server_gap(ts, n)
        except Exception as exc:
            self.fail(exc)

    def close(self, ts: float, record: ConnRecord) -> None:
        """The connection ended: flush everything open and emit the SmtpSession."""
        if self.closed:
            return
        try:
            session = self.finish(ts, record) if self.failure is None else self.session(record)
        except Exception as exc:
            self.fail(exc)
            session = self.session(record)
        self.closed = True
        self.emit(session)

    def feed(self, to_server: bool, ts: float, payload: bytes) -> None:
        """``data`` inside the session boundary."""
        if not to_server:
            self.server_data(ts, payload)
            return
        self.bytes_from_client += len(payload)
        if self.first_client_ts is None:
            self.first_client_ts = ts
            self.check_pregreet()
        st = self.cstate
        body = self.body
        if st is _C_DATA and not self.data_at_start and body is not None and not len(self.cbuf):
            end = body.feed_dot(payload)  # message content: the bulk of the bytes
            if end < 0:
                if self.queue and self.sstate is _S_REPLIES and len(self.sbuf):
                    self.server_run(force=False)
                return
            self.end_data(ts)
            if end < len(payload):  # commands pipelined after the message
                self.cbuf.feed(payload[end:])
        elif st is _C_TLS:
            self.tls_bytes += len(payload)
            return
        elif st is _C_STARTTLS_WAIT or st is _C_STARTTLS_PROBE:
            self.starttls_data(ts, payload)
            return
        else:
            lines = self.cbuf.whole_lines(payload) if st is _C_COMMAND else None
            if lines is None:
                self.cbuf.feed(payload)
            if not self.queue and self.server_ts < ts and len(self.sbuf):
                # Held server bytes that arrived before these client bytes cannot answer them.
                self.server_run(force=True)
            if lines is None:
                pass
            elif len(lines) == 1:  # one command: the common case
                self.client_line(lines[0], ts)
                if self.queue and self.sstate is _S_REPLIES and len(self.sbuf):
                    self.server_run(force=False)  # server bytes were held for this command
                return
            else:
                self.client_lines(lines, ts)
                return
        self.client_run(ts)
        if self.queue and self.sstate is _S_REPLIES and len(self.sbuf):
            self.server_run(force=False)  # server bytes were held for a command sent now
        if self.cstate is _C_STARTTLS_WAIT and len(self.cbuf):
            self.starttls_held(ts)

    def finish(self, ts: float, record: ConnRecord) -> SmtpSession:
        """``close`` inside the session boundary: flush everything open, return the session."""
        self.server_run(force=True)
        self.closed = True
        if self.cstate is ClientState.DATA or self.cstate is ClientState.BDAT:
            self.count(Anomaly.MISSING_DATA_TERMINATOR)
            if self.body is not None:  # the lines of the unfinished content count as well
                self.count(Anomaly.BARE_LF, self.body.bare_lf)
                self.count(Anomaly.OVERLONG_LINE, self.body.long_lines)
            if self.txns:
                self.txns[-1].complete = False
        self.banner_end(ts)  # a greeting the client talked into and the server never finished
        if (
            self.banner_ts is None
            and self.bytes_from_client
            and not self.midstream
            and not self.anomalies.get(Anomaly.GAP_SERVER)
        ):
            self.count(Anomaly.NO_BANNER)
        for buf in (self.cbuf, self.sbuf):
            if buf.bare_lf or buf.bare_cr or buf.truncated:
                self.count(Anomaly.BARE_LF, buf.bare_lf)
                self.count(Anomaly.BARE_CR, buf.bare_cr)
                self.count(Anomaly.LINE_TRUNCATED, buf.truncated)
        if record.conflicting_overlaps:  # the reassembler kept the first copy of each
            self.count(Anomaly.RETRANSMISSION_INCONSISTENCY, record.conflicting_overlaps)
        while self.txns:
            self.finish_txn(self.txns.popleft())
        if self.gapped:  # what was counted before the loss showed may be its artefact as well
            for name in LOSS_ARTEFACTS:
                self.anomalies.pop(name, None)
            if (self.tls_attempted and not self.tls_established and self.commands
                    and self.commands[-1] == "STARTTLS"
                    and self.bytes_from_client - self.starttls_at >= MIN_TLS_HELLO):
                self.tls_established = True  # the 220 was lost and the client went on: in TLS
        elif not self.midstream and "h" not in record.history:
            # The server's SYN-ACK was not captured, so where its stream starts is unknown and
            # no gap can show that its first bytes went missing with it: a greeting not seen is
            # then no evidence of a server that sent none, nor of a client that did not wait.
            self.anomalies.pop(Anomaly.NO_BANNER, None)
            self.anomalies.pop(Anomaly.PREGREET, None)
        return self.session(record)

    def session(self, record: ConnRecord) -> SmtpSession:
        """The emitted session record."""
        return SmtpSession(
            uid=self.uid, ts=self.ts,
            client_ip=self.client_ip, client_port=self.client_port,
            server_ip=self.server_ip, server_port=self.server_port,
            duration_s=record.duration_s,
            banner=self.banner, banner_code=self.banner_code,
            helo=self.helo, helo_verb=self.helo_verb,
            helo_kind=helo_kind_text(self.helo) if self.helo is not None else None,
            extensions=tuple(self.extensions),
            tls_offered=self.tls_offered, tls_attempted=self.tls_attempted,
            tls_established=self.tls_established, tls_bytes=self.tls_bytes,
            tls_reply=self.tls_reply,
            auth=tuple([ex.record() for ex in self.auths]) if self.auths else (),
            reply_codes=dict(sorted(self.reply_codes.items())),
            anomalies={k: v for k, v in sorted(self.anomalies.items()) if v},
            commands=tuple(self.commands),
            bytes_from_client=self.bytes_from_client, bytes_from_server=self.bytes_from_server,
            transactions=tuple(self.done),
            midstream=self.midstream,
        )  # fmt: skip
