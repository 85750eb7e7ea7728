"""The client half of the SMTP parser: command lines, message content, SASL responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sensor.smtp.anomalies import Anomaly
from sensor.smtp.auth import AuthExchange, looks_like_response
from sensor.smtp.body import MessageBody
from sensor.smtp.commands import (
    HTTP_METHODS,
    RESYNC_WORD_LENGTHS,
    SMTP_VERBS,
    is_command_line,
    is_non_smtp,
    parse_auth,
    parse_bdat,
    parse_path_ex,
    split_command,
    text,
)
from sensor.smtp.limits import RFC_COMMAND_LINE
from sensor.smtp.server import ServerSide
from sensor.smtp.session import RcptState
from sensor.smtp.state import ClientState, Cmd, Pending, ServerState

# Enum members as module constants: a class attribute lookup costs ~5x more per line.
_C_COMMAND: Final = ClientState.COMMAND
_C_DATA: Final = ClientState.DATA
_C_BDAT: Final = ClientState.BDAT
_C_AUTH: Final = ClientState.AUTH
_C_RESYNC: Final = ClientState.RESYNC
_C_HTTP_HEADERS: Final = ClientState.HTTP_HEADERS
_C_STARTTLS_WAIT: Final = ClientState.STARTTLS_WAIT
_C_STARTTLS_PROBE: Final = ClientState.STARTTLS_PROBE
_C_TLS: Final = ClientState.TLS
_S_REPLIES: Final = ServerState.REPLIES
_S_TLS: Final = ServerState.TLS
_K_HELO: Final = Cmd.HELO
_K_EHLO: Final = Cmd.EHLO
_K_MAIL: Final = Cmd.MAIL
_K_RCPT: Final = Cmd.RCPT
_K_DATA: Final = Cmd.DATA
_K_DATA_END: Final = Cmd.DATA_END
_K_OTHER: Final = Cmd.OTHER
_END_OF_DATA: Final = b"."  # RFC 5321 4.1.1.4: the line that ends DATA content


_TLS_HANDSHAKE: Final = b"\x16\x03"  # RFC 8446 5.1: a handshake record, legacy version 3.x


def looks_like_tls(head: bytes) -> bool:
    """True if ``head`` (the first one or two bytes sent) may start TLS rather than SMTP text.

    A TLS record starts with its content type (20-23) and the major version 3 (RFC 8446 5.1);
    an SSLv2-compatible ClientHello with a length whose top bit is set.
    """
    if not head:
        return False
    first = head[0]
    if first & 0x80:
        return True
    return 20 <= first <= 23 and (len(head) < 2 or head[1] == 3)


class ClientSide(ServerSide):
    """Parses what the client sends; replies are matched by the server half."""

    def client_run(self, ts: float) -> None:
        """Consume buffered client bytes as far as the state allows."""
        buf = self.cbuf
        while True:
            st = self.cstate
            if st is _C_COMMAND:
                line = buf.pop_line()
                if line is None:
                    return
                self.client_line(line, ts)
            elif st is _C_DATA:
                content = buf.take_all()
                if not content:
                    return
                self.data_at_start = False
                body = self.body
                if body is None:  # DATA state always has a body; bounded even if it had not
                    return
                end = body.feed_dot(content)
                if end < 0:
                    return
                if end < len(content):
                    buf.feed(content[end:])
                self.end_data(ts)
            elif st is _C_BDAT:
                chunk = buf.take(self.bdat_left)
                self.bdat_left -= len(chunk)
                if self.body is not None:
                    self.body.add(chunk)
                if self.bdat_left:
                    return
                self.end_chunk()
            elif st is _C_STARTTLS_WAIT or st is _C_STARTTLS_PROBE or st is _C_TLS:
                return
            else:
                if st is _C_RESYNC:  # message text after a gap: passed over unsplit
                    buf.skip_text(RESYNC_WORD_LENGTHS)
                line = buf.pop_line()
                if line is None:
                    return
                self.client_line(line, ts)

    def client_lines(self, lines: list[bytes], ts: float) -> None:
        """``client_run`` after ``data`` for a payload that was exactly these whole lines.

        Lines are parsed while the state reads lines; the rest (content after DATA, bytes after
        STARTTLS) goes to the buffer and takes the general path.
        """
        for k, line in enumerate(lines):
            st = self.cstate  # the states that do not read lines:
            if (
                st is _C_DATA
                or st is _C_BDAT
                or st is _C_STARTTLS_WAIT
                or st is _C_STARTTLS_PROBE
                or st is _C_TLS
            ):
                self.cbuf.feed(b"\r\n".join(lines[k:]) + b"\r\n")
                break
            self.client_line(line, ts)
        else:
            if self.queue and self.sstate is _S_REPLIES and len(self.sbuf):
                self.server_run(force=False)  # server bytes were held for a command sent now
            return
        self.client_run(ts)
        if self.queue and self.sstate is _S_REPLIES and len(self.sbuf):
            self.server_run(force=False)
        if self.cstate is _C_STARTTLS_WAIT and len(self.cbuf):
            self.starttls_held(ts)

    def client_tls(self, n: int) -> None:
        """Client bytes are TLS from here on."""
        self.cstate = ClientState.TLS
        self.tls_bytes += n + self.cbuf.drain()

    def tls_after_loss(self, n: int) -> None:
        """A TLS handshake record where a command line was expected, after lost bytes or a
        mid-stream pick-up: the STARTTLS exchange fell into the hole (or went by before the
        capture began) and the dialogue went on in TLS. It is not another protocol's opening,
        and what follows either way is TLS."""
        self.tls_attempted = True
        self.tls_established = True
        self.client_tls(n)
        self.sbuf.drain()
        self.sstate = _S_TLS

    def starttls_data(self, ts: float, payload: bytes) -> None:
        """Client bytes after STARTTLS: before its reply, or after its 220 (the probe)."""
        buf = self.cbuf
        if self.cstate is _C_STARTTLS_WAIT:
            if looks_like_tls(payload[:2]):  # TLS started without waiting for the 220
                buf.drain()  # plaintext injected before it (already counted) is not TLS
                self.client_tls(len(payload))
                if self.starttls_reply_lost():  # the 220 was in a gap (RFC 3207 4: the client
                    self.tls_established = True  # sends its hello only after one)
                    self.sstate = _S_TLS
                return
            buf.feed(payload)
            self.starttls_held(ts)
            return
        buf.feed(payload)
        head = buf.peek(self.probe_at, 2)
        if len(head) < 2 and (not head or looks_like_tls(head)):
            return  # too few bytes to tell
        if looks_like_tls(head):
            n = len(buf) - self.probe_at
            buf.drain()  # plaintext injected before the 220 is not TLS
            self.cstate = _C_TLS
            self.tls_bytes += n
            self.sbuf.drain()  # server bytes sent before this hello (response injection)
            self.sstate = _S_TLS
            return
        self.count(Anomaly.STARTTLS_PLAINTEXT)  # a decrypted capture, or TLS never started
        self.cstate = _C_COMMAND
        self.sstate = _S_REPLIES
        self.client_run(ts)
        if len(self.sbuf):
            self.server_run(force=False)

    def starttls_reply_lost(self) -> bool:
        """The reply to STARTTLS was lost in a server gap (no STARTTLS waits for one)."""
        if not self.anomalies.get(Anomaly.GAP_SERVER):
            return False
        return not any(p.kind is Cmd.STARTTLS for p in self.queue)

    def starttls_held(self, ts: float) -> None:
        """Bytes held after STARTTLS before its reply: a TLS hello sent early, or injection."""
        buf = self.cbuf
        if looks_like_tls(buf.peek(0, 2)):  # the hello in the same segment as STARTTLS
            self.client_tls(0)
            return
        if not self.tls_injected:
            self.tls_injected = True
            self.count(Anomaly.STARTTLS_INJECTION)
        if len(buf) > self.limits.max_line:  # a client talking on in clear: parse, bounded
            self.cstate = _C_COMMAND
            self.client_run(ts)

    def client_gap(self, ts: float, n: int) -> None:
        """``n`` client bytes were lost."""
        self.count(Anomaly.GAP_CLIENT)
        st = self.cstate
        if st is ClientState.TLS:
            self.tls_bytes += n
            return
        self.gapped = True
        if st is _C_STARTTLS_WAIT and self.starttls_reply_lost():  # the 220 and the hello
            self.client_tls(n)  # lost both: the dialogue went on in TLS
            self.tls_established = True
            self.sstate = _S_TLS
            return
        if st is _C_STARTTLS_PROBE:  # the bytes that would tell TLS from plaintext are lost
            self.client_tls(n)
            self.sbuf.drain()
            self.sstate = _S_TLS
            return
        if self.txns:
            self.txns[-1].complete = False
        if st is ClientState.DATA:
            if self.body is not None:
                self.body.gap()
            self.cbuf.drain()
            self.data_at_start = False
            return
        if st is ClientState.BDAT:
            if self.body is not None:
                self.body.gap()
            if n < self.bdat_left:
                self.bdat_left -= n
                return
            self.end_chunk()
        self.cbuf.drain()  # what follows may start mid-line: RESYNC waits for a command
        self.cbuf.checkpoint()
        self.cstate = ClientState.RESYNC
        self.lost_start = True  # HELO, MAIL or RCPT may be in the hole, as on a pick-up
        self.queue.append(Pending(Cmd.GAP, ts))

    def client_line(self, line: bytes, ts: float) -> None:
        """One client line in COMMAND, AUTH or RESYNC state."""
        st = self.cstate
        if st is _C_COMMAND:
            pass
        elif st is _C_AUTH:
            ex = self.auth
            if ex is not None and ex.wants_response and looks_like_response(line):
                ex.response(line)
                self.enqueue(Pending(Cmd.AUTH_RESPONSE, ts, self.current_txn(), auth=ex))
                if not ex.wants_response:
                    self.cstate = _C_COMMAND
                return
            self.cstate = _C_COMMAND
        elif st is _C_HTTP_HEADERS:
            if not line:
                self.cstate = _C_COMMAND
            return
        if (self.gapped or self.midstream) and line.startswith(_TLS_HANDSHAKE):
            self.tls_after_loss(len(line))
            return
        if st is _C_RESYNC:
            if not is_command_line(line):
                self.cbuf.rollback()  # a skipped line's bare LF or length is no violation
                if line == _END_OF_DATA:  # the end of content whose start was lost
                    self.cstate = _C_COMMAND
                    self.enqueue(Pending(_K_DATA_END, ts, None))
                return
            self.cstate = _C_COMMAND
        verb, arg = split_command(line)
        if self.first_client_ts is None:
            self.first_client_ts = ts
            self.check_pregreet()
        if len(self.commands) < self.limits.max_commands:
            self.commands.append(verb)
        else:
            self.count(Anomaly.TOO_MANY_COMMANDS)
        if RFC_COMMAND_LINE < len(line) + 2 <= self.limits.max_line:
            self.count(Anomaly.OVERLONG_LINE)
        if self.closing_ts is not None and ts > self.closing_ts:
            self.count(Anomaly.COMMAND_AFTER_421)
        handler = _HANDLERS.get(verb)
        if handler is not None:
            handler(self, arg, ts)
            return
        if verb in HTTP_METHODS and b" HTTP/" in arg:  # answered by HTTP, not by an SMTP reply
            self.count(Anomaly.NON_SMTP_VERB)
            self.cstate = ClientState.HTTP_HEADERS
            if self.pregreet:  # a proxy request precedes the banner by nature: judge the next line
                self.pregreet = False
                self.anomalies[Anomaly.PREGREET] -= 1
            self.first_client_ts = None
            return
        if verb in SMTP_VERBS:  # never a non-SMTP opening: the sets and the prefixes are apart
            pass
        elif is_non_smtp(line, verb) and not (self.gapped or self.midstream):
            self.count(Anomaly.NON_SMTP_VERB)
        else:  # after lost bytes a line of message text ("Get 50% off") may be read as one
            # (a reply in the hole left the client out of DATA): unknown, a loss artefact
            self.count(Anomaly.UNKNOWN_COMMAND)
        self.enqueue(Pending(_K_OTHER, ts, self.current_txn()))

    def cmd_helo(self, arg: bytes, ts: float) -> None:
        """HELO/EHLO (RFC 5321 4.1.1.1): it also resets an open transaction."""
        self.lost_start = False
        cur = self.current_txn()
        if cur is not None:
            cur.reset = True
        self.helo = text(arg).strip()
        self.enqueue(Pending(_K_EHLO if self.helo_verb == "EHLO" else _K_HELO, ts, cur))

    def cmd_mail(self, arg: bytes, ts: float) -> None:
        """MAIL FROM (RFC 5321 4.1.1.2): always starts a new transaction (Zeek's new row)."""
        cur = self.current_txn()
        if (self.helo is None and not self.lost_start) or (
            cur is not None and cur.mail_from is not None and not cur.reset
        ):
            self.count(Anomaly.OUT_OF_SEQUENCE)
        self.lost_start = False
        txn = self.open_txn(ts)
        parsed = parse_path_ex(arg)
        if parsed is None:
            self.count(Anomaly.BAD_PATH)
        else:
            txn.mail_from, txn.mail_params, sloppy = parsed
            if sloppy:
                self.count(Anomaly.SLOPPY_PATH)
        self.enqueue(Pending(_K_MAIL, ts, txn))

    def cmd_rcpt(self, arg: bytes, ts: float) -> None:
        """RCPT TO (RFC 5321 4.1.1.3); without MAIL it opens an invalid transaction."""
        txn = self.current_txn()
        lost = self.lost_start  # MAIL may have come before a mid-stream pick-up
        if (txn is None or txn.mail_from is None) and not lost:
            self.count(Anomaly.OUT_OF_SEQUENCE)
        if txn is None:
            if not lost:
                self.count(Anomaly.INVALID_TRANSACTION)
            txn = self.open_txn(ts)
        parsed = parse_path_ex(arg)
        rcpt = None
        if parsed is None:
            self.count(Anomaly.BAD_PATH)
        elif len(txn.rcpts) >= self.limits.max_rcpts_per_txn:
            self.count(Anomaly.TOO_MANY_RCPTS)
            txn.rcpts_dropped += 1
        else:
            if parsed[2]:
                self.count(Anomaly.SLOPPY_PATH)
            rcpt = RcptState(parsed[0], parsed[1])
            txn.rcpts.append(rcpt)
        self.enqueue(Pending(_K_RCPT, ts, txn, rcpt))

    def cmd_data(self, arg: bytes, ts: float) -> None:
        """DATA (RFC 5321 4.1.1.4): content follows unless no recipient can have been accepted."""
        txn = self.current_txn()
        lost = self.lost_start  # MAIL and RCPT may have come before a mid-stream pick-up
        if txn is None and lost:
            txn = self.open_txn(ts)
        if (txn is None or not txn.rcpts) and not lost:
            self.count(Anomaly.OUT_OF_SEQUENCE)
        self.enqueue(Pending(_K_DATA, ts, txn))
        if txn is not None and (txn.has_live_rcpt() or (lost and not txn.rcpts)):
            # the 354 may come later: assume it
            txn.data_mode = "data"
            cap = self.limits.max_mime_bytes if txn.recorded else 0
            self.body = txn.body = MessageBody(cap, dot_stuffed=True)
            self.data_at_start = True
            self.cstate = _C_DATA

    def end_data(self, ts: float) -> None:
        """The end-of-data marker arrived."""
        self.cstate = _C_COMMAND
        body = self.body
        if body is not None:
            self.count(Anomaly.BARE_LF, body.bare_lf)
            self.count(Anomaly.OVERLONG_LINE, body.long_lines)
        self.body = None
        self.lost_start = False
        txn = self.current_txn()
        if txn is None:
            return
        txn.content_ended = True
        self.messages_sent += 1
        self.enqueue(Pending(_K_DATA_END, ts, txn))
        txn.closed = True

    def cmd_bdat(self, arg: bytes, ts: float) -> None:
        """BDAT size [LAST] (RFC 3030 2): exactly ``size`` octets follow the command line."""
        parsed = parse_bdat(arg)
        txn = self.current_txn()
        if parsed is None or parsed[0] > self.limits.max_bdat_chunk:
            self.count(Anomaly.BDAT_INVALID_SIZE)
            self.enqueue(Pending(Cmd.BDAT, ts, txn))
            return
        size, last = parsed
        if (txn is None or not txn.rcpts) and not self.lost_start:
            self.count(Anomaly.OUT_OF_SEQUENCE)
        self.bdat_left, self.bdat_last, self.bdat_txn = size, last, txn
        self.body = None
        if txn is not None:
            if txn.body is None or txn.data_mode != "bdat":
                cap = self.limits.max_mime_bytes if txn.recorded else 0
                txn.body = MessageBody(cap, dot_stuffed=False)
                txn.data_mode = "bdat"
            self.body = txn.body
        self.enqueue(Pending(Cmd.BDAT_LAST if last else Cmd.BDAT, ts, txn))
        self.cstate = ClientState.BDAT
        if size == 0:
            self.end_chunk()

    def end_chunk(self) -> None:
        """A BDAT chunk was fully received (or cut by a gap)."""
        self.cstate = _C_COMMAND
        self.bdat_left = 0
        txn = self.bdat_txn
        self.body = self.bdat_txn = None
        if self.bdat_last and txn is not None:
            txn.content_ended = True
            txn.closed = True
            self.messages_sent += 1

    def cmd_rset(self, arg: bytes, ts: float) -> None:
        """RSET (RFC 5321 4.1.1.5): the transaction stays the current row until the next MAIL."""
        cur = self.current_txn()
        if cur is not None:
            cur.reset = True
        self.enqueue(Pending(_K_OTHER, ts, cur))

    def cmd_starttls(self, arg: bytes, ts: float) -> None:
        """STARTTLS (RFC 3207 4): client bytes wait for the reply."""
        self.tls_attempted = True
        self.starttls_at = self.bytes_from_client
        self.tls_injected = False
        self.enqueue(Pending(Cmd.STARTTLS, ts, self.current_txn()))
        self.cstate = ClientState.STARTTLS_WAIT

    def cmd_auth(self, arg: bytes, ts: float) -> None:
        """AUTH (RFC 4954 4): SASL responses may follow."""
        mech, initial = parse_auth(arg)
        ex = AuthExchange.start(ts, mech, initial)
        if self.tls_established:  # plaintext after the 220: a decrypted capture, most likely
            ex.after_starttls = True
        else:
            self.count(Anomaly.AUTH_WITHOUT_TLS)
        if len(self.auths) < self.limits.max_auth_attempts:
            self.auths.append(ex)
        else:
            self.count(Anomaly.AUTH_TOO_MANY)
        self.auth = ex
        self.enqueue(Pending(Cmd.AUTH, ts, self.current_txn(), auth=ex))
        if ex.wants_response:
            self.cstate = ClientState.AUTH


def _helo(p: ClientSide, arg: bytes, ts: float) -> None:
    p.helo_verb = "HELO"
    p.cmd_helo(arg, ts)


def _ehlo(p: ClientSide, arg: bytes, ts: float) -> None:
    p.helo_verb = "EHLO"
    p.cmd_helo(arg, ts)


_HANDLERS: Final[dict[str, Callable[[ClientSide, bytes, float], None]]] = {
    "HELO": _helo,
    "EHLO": _ehlo,
    "LHLO": _ehlo,
    "MAIL": ClientSide.cmd_mail,
    "RCPT": ClientSide.cmd_rcpt,
    "DATA": ClientSide.cmd_data,
    "BDAT": ClientSide.cmd_bdat,
    "RSET": ClientSide.cmd_rset,
    "STARTTLS": ClientSide.cmd_starttls,
    "AUTH": ClientSide.cmd_auth,
}
