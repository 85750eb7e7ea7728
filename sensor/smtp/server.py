"""The server half of the SMTP parser: replies matched in order to the client's pending lines."""

from __future__ import annotations

from typing import Final

from sensor.smtp.anomalies import Anomaly
from sensor.smtp.core import ParserCore
from sensor.smtp.limits import RFC_REPLY_LINE
from sensor.smtp.replies import (
    STARTTLS_KEYWORD,
    Reply,
    ehlo_keywords,
    parse_enhanced,
    parse_reply_line,
    parse_single,
)
from sensor.smtp.state import ClientState, Cmd, Pending, ServerState

GREETING_CODES: Final = frozenset({220, 421, 554})  # RFC 5321 3.1 / 4.3.2: connection establishment
REPLY_CLOSING: Final = 421  # RFC 5321 4.2.3: service not available, closing transmission channel
REPLY_START_INPUT: Final = 354  # RFC 5321 4.2.3: start mail input
REPLY_READY_TLS: Final = 220  # RFC 3207 4: ready to start TLS
PIPELINING_KEYWORD: Final = "PIPELINING"  # RFC 2920 3
_HTTP_RESPONSE: Final = b"HTTP/"  # RFC 9112 4: status line of a proxy's answer to CONNECT
_NOT_PIPELINED: Final = frozenset({Cmd.AUTH_RESPONSE, Cmd.DATA_END, Cmd.GAP})
# Enum members as module constants: a class attribute lookup costs ~5x more per reply.
_S_TLS: Final = ServerState.TLS
_S_REPLIES: Final = ServerState.REPLIES
_S_RESYNC: Final = ServerState.RESYNC
_S_BANNER: Final = ServerState.BANNER
_S_HTTP_HEADERS: Final = ServerState.HTTP_HEADERS
_S_STARTTLS_PROBE: Final = ServerState.STARTTLS_PROBE
_K_EHLO: Final = Cmd.EHLO
_K_MAIL: Final = Cmd.MAIL
_K_RCPT: Final = Cmd.RCPT
_K_DATA: Final = Cmd.DATA
_K_DATA_END: Final = Cmd.DATA_END
_K_BDAT_LAST: Final = Cmd.BDAT_LAST
_K_GAP: Final = Cmd.GAP
_K_AUTH: Final = Cmd.AUTH
_K_AUTH_RESPONSE: Final = Cmd.AUTH_RESPONSE
_K_STARTTLS: Final = Cmd.STARTTLS


class ServerSide(ParserCore):
    """Parses what the server sends and applies each reply to the line it answers."""

    def server_data(self, ts: float, payload: bytes) -> None:
        """In-order server bytes."""
        self.bytes_from_server += len(payload)
        st = self.sstate
        if st is _S_TLS:
            self.tls_bytes += len(payload)
            return
        self.server_ts = ts
        lines = self.sbuf.whole_lines(payload) if st is _S_REPLIES or st is _S_BANNER else None
        if lines is None:
            self.sbuf.feed(payload)
            self.server_run(force=False)
            return
        if len(lines) > 1 or self.assembler.current is not None:
            self.server_lines(lines)
            return
        line = lines[0]
        if st is _S_BANNER:
            self.reply_line(line, st)
            return
        if (
            not self.queue  # perhaps held
            or line[3:4] != b" "
            or not line[:3].isdigit()
            or len(line) + 2 > RFC_REPLY_LINE
        ):
            self.server_lines(lines)
            return
        # The common case, an ordinary one-line reply: reply_line then server_reply in short.
        code, text, enhanced = parse_single(line)
        reply = Reply(code, [text] if self.assembler.max_lines > 0 else [], enhanced)
        if code == REPLY_CLOSING:
            self.server_reply(reply, st, ts)
            return
        codes = self.reply_codes
        codes[code] = codes.get(code, 0) + 1
        self.on_reply(reply, ts)

    def server_run(self, force: bool) -> None:
        """Parse buffered server lines (timed at the latest server payload).

        A reply that starts while no command awaits one is held, as the client's bytes may be
        delivered after the server's, until a command is queued, more than ``max_line`` bytes
        wait, or ``force`` (end of connection).
        """
        buf = self.sbuf
        queue = self.queue
        asm = self.assembler
        max_line = self.limits.max_line
        while True:
            st = self.sstate
            if st is _S_TLS:
                self.tls_bytes += buf.drain()
                return
            if st is _S_STARTTLS_PROBE:
                self.server_held()
                return
            if (
                not queue
                and not force
                and st is _S_REPLIES
                and asm.current is None
                and len(buf) <= max_line
            ):
                return
            line = buf.pop_line()
            if line is None:
                return
            self.reply_line(line, st)

    def server_lines(self, lines: list[bytes]) -> None:
        """``server_run`` over a payload that was exactly these whole lines (none buffered)."""
        queue = self.queue
        asm = self.assembler
        i, n = 0, len(lines)
        while i < n:
            st = self.sstate
            if st is _S_TLS:
                self.tls_bytes += sum(map(len, lines[i:])) + 2 * (n - i)
                return
            if (not queue and st is _S_REPLIES and asm.current is None) or (
                st is _S_STARTTLS_PROBE
            ):  # perhaps held
                self.sbuf.feed(b"\r\n".join(lines[i:]) + b"\r\n")
                self.server_run(force=False)
                return
            line = lines[i]
            if line[3:4] == b"-" and asm.current is None and st is not _S_HTTP_HEADERS:
                end = self.reply_block(lines, i)
                if end:
                    i = end
                    continue
            self.reply_line(line, st)
            i += 1

    def reply_block(self, lines: list[bytes], start: int) -> int:
        """Apply the well-formed multi-line reply starting at ``lines[start]`` in one go.

        Returns the index after its last line, or 0 (nothing done) if the lines there are not
        one complete reply of a single code, which the line-by-line path then handles.
        """
        head = lines[start][:4]
        digits = head[:3]
        if not digits.isdigit():
            return 0
        code_sp = digits + b" "
        end = start + 1
        n = len(lines)
        while end < n:
            line = lines[end]
            end += 1
            if line.startswith(head):
                continue
            if line.startswith(code_sp) or line == digits:
                break
            return 0
        else:
            return 0
        block = lines[start:end]
        if max(map(len, block)) + 2 > RFC_REPLY_LINE:
            max_line = self.limits.max_line
            overlong = sum(1 for line in block if RFC_REPLY_LINE < len(line) + 2 <= max_line)
            self.count(Anomaly.OVERLONG_LINE, overlong)
        code = int(digits)
        keep = self.assembler.max_lines
        texts = [line[4:].decode("utf-8", "replace") for line in block[:keep]]
        first = texts[0] if texts else block[0][4:].decode("utf-8", "replace")
        reply = Reply(code, texts, parse_enhanced(code, first))
        self.server_reply(reply, self.sstate, self.server_ts)
        return end

    def reply_line(self, line: bytes, st: ServerState) -> None:
        """One framed server line received in state ``st``."""
        digits = line[:3]
        sep = line[3:4]
        if (
            st is _S_HTTP_HEADERS
            or len(digits) != 3
            or not digits.isdigit()
            or (sep != b" " and sep != b"-" and sep)
        ):
            self.server_line(line, self.server_ts)
            return
        if RFC_REPLY_LINE < len(line) + 2 <= self.limits.max_line:
            self.count(Anomaly.OVERLONG_LINE)
        asm = self.assembler
        if sep == b"-" or asm.current is not None:  # part of a multi-line reply
            code = int(digits)
            if st is _S_BANNER and asm.current is not None and asm.current.code != code:
                self.banner_end(self.server_ts)
                st = self.sstate
            reply = asm.add(code, sep != b"-", line[4:])
            if reply is not None:
                self.server_reply(reply, st, self.server_ts)
            return
        code, text, enhanced = parse_single(line)
        reply = Reply(code, [text] if asm.max_lines > 0 else [], enhanced)
        self.server_reply(reply, st, self.server_ts)

    def server_gap(self, ts: float, n: int) -> None:
        """``n`` server bytes were lost: replies to lines sent before now are given up."""
        self.count(Anomaly.GAP_SERVER)
        if self.sstate is ServerState.TLS:
            self.tls_bytes += n
            return
        self.gapped = True
        self.sbuf.drain()  # what follows may start mid-line: RESYNC waits for a reply line
        self.sbuf.checkpoint()
        self.assembler.reset()
        self.sstate = ServerState.RESYNC
        q = self.queue
        while q and q[0].ts < ts:
            p = q.popleft()
            if p.txn is not None:
                p.txn.complete = False
            self.answered(p)

    def server_line(self, line: bytes, ts: float) -> None:
        """One server line."""
        st = self.sstate
        if st is _S_HTTP_HEADERS:
            if not line:
                self.sstate = self.http_resume
            return
        parsed = parse_reply_line(line)
        if parsed is None:
            if st is _S_RESYNC:
                self.sbuf.rollback()  # a skipped line's bare LF or length is no violation
            elif line.startswith(_HTTP_RESPONSE):
                self.http_resume = st
                self.sstate = _S_HTTP_HEADERS
            else:
                self.count(Anomaly.MALFORMED_REPLY)
            return
        code, last, rtext = parsed
        if RFC_REPLY_LINE < len(line) + 2 <= self.limits.max_line:
            self.count(Anomaly.OVERLONG_LINE)
        cur = self.assembler.current
        if st is _S_BANNER and cur is not None and cur.code != code:
            self.banner_end(ts)
            st = self.sstate
        reply = self.assembler.add(code, last, rtext)
        if reply is not None:
            self.server_reply(reply, st, ts)

    def server_reply(self, reply: Reply, st: ServerState, ts: float) -> None:
        """A complete reply, received in server state ``st``."""
        if reply.malformed:
            self.count(Anomaly.MALFORMED_REPLY)
        code = reply.code
        codes = self.reply_codes
        codes[code] = codes.get(code, 0) + 1
        if code == REPLY_CLOSING and self.closing_ts is None:
            self.closing_ts = ts
            self.count(
                Anomaly.COMMAND_AFTER_421,
                sum(1 for p in self.queue if p.ts > ts and p.kind is not Cmd.GAP),
            )
        if st is _S_RESYNC:
            self.sstate = _S_REPLIES
            if self.midstream and code in GREETING_CODES and self.midstream_banner(ts):
                self.banner = reply.lines[0] if reply.lines else ""
                self.banner_code = code
                return
        elif st is _S_BANNER:
            self.sstate = _S_REPLIES
            self.banner_ts = ts
            self.check_pregreet()
            if code in GREETING_CODES:
                self.banner = reply.lines[0] if reply.lines else ""
                self.banner_code = code
                return
            self.count(Anomaly.NO_BANNER)
        self.on_reply(reply, ts)

    def banner_end(self, ts: float) -> None:
        """A multi-line greeting cut short is the banner (Postscreen's ``220-`` teaser).

        Postscreen sends the first line of a multi-line 220 and waits; a client that talks into
        that pause (a pregreet) gets no more of the greeting but the replies to its commands
        (postscreen_smtpd.c: "Send no SMTP banner to pregreeting clients"), or a 521 and the end.
        The greeting ends where a line of another code (or the end of the connection) cuts it.
        """
        cur = self.assembler.current
        if self.sstate is _S_BANNER and cur is not None and cur.code in GREETING_CODES:
            self.assembler.reset()
            self.server_reply(cur, _S_BANNER, ts)

    def midstream_banner(self, ts: float) -> bool:
        """True if a greeting code that ends a mid-stream resync is in fact the banner.

        So it is when the pick-up missed only the handshake: the client has sent nothing yet,
        no reply came before, and no server bytes were lost.
        """
        if self.bytes_from_client or self.banner_ts is not None:
            return False
        if sum(self.reply_codes.values()) != 1 or self.anomalies.get(Anomaly.GAP_SERVER):
            return False
        self.banner_ts = ts
        q = self.queue
        if q and q[0].kind is _K_GAP:
            q.popleft()  # nothing before the banner was lost after all
        if self.cstate is ClientState.RESYNC:
            self.cstate = ClientState.COMMAND
        self.lost_start = False
        self.ext_known = True
        return True

    def server_held(self) -> None:
        """Server bytes after the 220 to STARTTLS before the client's next bytes: held, counted.

        A server never speaks first in TLS (RFC 8446 2), so this is response injection; at most
        ``max_line`` bytes are kept, to be parsed if the client goes on in plaintext.
        """
        buf = self.sbuf
        if not len(buf):
            return
        if not self.tls_resp_injected:
            self.tls_resp_injected = True
            self.count(Anomaly.STARTTLS_RESPONSE_INJECTION)
        if len(buf) > self.limits.max_line:
            buf.drain()

    def next_pending(self, ts: float) -> Pending | None:
        """The line this reply answers; None if it answers nothing or a line lost in a gap."""
        q = self.queue
        while q and q[0].kind is _K_GAP:
            if len(q) > 1 and q[1].ts <= ts:  # the reply may answer the first line after the gap
                q.popleft()
                continue
            return None  # a reply to a command lost in the gap (the gap is already counted)
        if not q:
            self.count(Anomaly.UNMATCHED_REPLY)
            return None
        return q.popleft()

    def on_reply(self, reply: Reply, ts: float) -> None:
        """Apply a complete reply to the oldest pending line."""
        q = self.queue
        p = q.popleft() if q and q[0].kind is not _K_GAP else self.next_pending(ts)
        if p is None:
            return
        code = reply.code
        txn = p.txn
        if txn is not None:
            lines = reply.lines
            txn.last_reply = f"{code} {lines[-1] if lines else ''}"
            txn.last_code = code
        kind = p.kind
        if kind is _K_RCPT:
            if p.rcpt is not None:
                p.rcpt.code, p.rcpt.enhanced, p.rcpt.text = code, reply.enhanced, reply.last_text
        elif kind is _K_MAIL:
            if txn is not None:
                txn.mail_code = code
        elif kind is _K_EHLO:
            self.ehlo_reply(reply)
        elif kind is _K_DATA:
            if code != REPLY_START_INPUT:
                self.data_refused(p, ts)
        elif kind is _K_DATA_END or kind is _K_BDAT_LAST:
            if txn is not None:
                txn.end_code = code
        elif kind is _K_AUTH or kind is _K_AUTH_RESPONSE:
            ex = p.auth
            if ex is not None:
                ex.reply(code, self.gapped or self.midstream)
                if ex.done and self.auth is ex and self.cstate is ClientState.AUTH:
                    self.cstate = ClientState.COMMAND
        elif kind is _K_STARTTLS:
            self.starttls_reply(p, reply, ts)
        if txn is not None:  # answered: release the transaction
            txn.pending -= 1
            txns = self.txns
            if txns and txns[0].closed and txns[0].pending <= 0:
                self.settle()
        if q and not self.pipelining and self.ext_known:
            nxt = q[0]
            if nxt.ts < ts and not nxt.flagged and nxt.kind not in _NOT_PIPELINED:
                nxt.flagged = True
                self.count(Anomaly.PIPELINING_NOT_ADVERTISED)

    def ehlo_reply(self, reply: Reply) -> None:
        """Record the extensions an EHLO reply advertises (RFC 5321 4.1.1.1)."""
        if reply.code // 100 != 2:
            return
        exts, stripped, keywords = ehlo_keywords(reply)
        self.ext_known = True
        self.extensions = exts
        self.tls_offered = STARTTLS_KEYWORD in keywords
        self.pipelining = PIPELINING_KEYWORD in keywords
        if stripped:
            self.count(Anomaly.STRIPPED_STARTTLS)

    def starttls_reply(self, p: Pending, reply: Reply, ts: float) -> None:
        """220: both directions are TLS from here on; anything else: parsing goes on."""
        self.tls_reply = reply.zeek_form()
        if reply.code == REPLY_READY_TLS:
            self.tls_established = True
            if p.txn is not None:
                p.txn.tls = True
            cst = self.cstate
            if cst is ClientState.STARTTLS_WAIT:  # the client's next bytes will tell
                self.cstate = ClientState.STARTTLS_PROBE
                self.sstate = _S_STARTTLS_PROBE
                self.probe_at = len(self.cbuf)  # held before the 220: injected plaintext
                self.tls_resp_injected = False
            elif cst is ClientState.TLS or cst is ClientState.RESYNC:
                self.sstate = _S_TLS  # hello already sent, or lost in a gap: TLS as it was
                if cst is ClientState.RESYNC:
                    self.client_tls(0)
            else:  # the client talked on in clear without waiting for this reply
                self.count(Anomaly.STARTTLS_PLAINTEXT)
            return
        self.count(Anomaly.STARTTLS_REFUSED)
        if self.cstate is ClientState.STARTTLS_WAIT:
            self.cstate = ClientState.COMMAND
            self.client_run(ts)

    def data_refused(self, p: Pending, ts: float) -> None:
        """DATA got no 354: content assumed to follow it was in fact more commands."""
        txn = p.txn
        if txn is None or txn.data_mode != "data":
            return
        body = txn.body
        txn.data_mode = None
        txn.body = None
        if self.cstate is ClientState.DATA and self.body is body:
            self.cstate = ClientState.COMMAND
            self.body = None
            if body is not None and body.raw:
                self.count(Anomaly.DATA_AFTER_REFUSAL)
            self.client_run(ts)
        elif txn.content_ended:
            self.count(Anomaly.DATA_AFTER_REFUSAL)
