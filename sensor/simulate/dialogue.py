"""Plays a planned SMTP session (both sides) over a simulated TCP connection and counts it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections import Counter
from dataclasses import dataclass, field

from sensor.simulate.content import dot_stuff
from sensor.simulate.servers import Reply, ServerProfile
from sensor.simulate.spec import AuthMech
from sensor.simulate.tcpflow import CLIENT, SERVER, ConnectOutcome, TcpFlow
from sensor.simulate.tlsbytes import client_finish, client_hello, server_flight

AUTH_FAIL_DELAY_US = (500_000, 2_500_000)  # servers sleep after a failed AUTH (Postfix ~1 s)
DATA_SCAN_US = (30_000, 900_000)  # content filtering time before the reply to end-of-data
USERNAME_PROMPT = b"334 VXNlcm5hbWU6\r\n"  # base64 "Username:" (draft-murchison-sasl-login)
PASSWORD_PROMPT = b"334 UGFzc3dvcmQ6\r\n"  # base64 "Password:"


@dataclass(slots=True)
class TxnPlan:
    """One mail transaction and the server's decisions about it."""

    mail_from: str
    mail_reply: Reply
    rcpts: list[tuple[str, Reply]]
    message: bytes
    data_reply: Reply
    bdat: bool
    sloppy: bool = False  # MAIL FROM in a form RFC 5321 4.1.2 does not allow, as bots write it


@dataclass(slots=True)
class AuthPlan:
    """One AUTH exchange."""

    mech: AuthMech
    user: str
    password: str
    ok: bool


@dataclass(slots=True)
class SessionPlan:
    """Everything decided about a session before its bytes are written."""

    outcome: ConnectOutcome
    profile: ServerProfile
    server_name: str
    client_ip: str
    helo_name: str
    ehlo: bool = True
    pregreet: bool = False
    blocked: str | None = None  # blocklist text: the banner is a 554
    offer_auth: bool = False
    starttls: bool = False
    pipelining: bool = False
    auths: list[AuthPlan] = field(default_factory=list)
    txns: list[TxnPlan] = field(default_factory=list)
    quit: bool = True
    reset: bool = False


def _mail_from(txn: TxnPlan, rng: random.Random) -> bytes:
    """The MAIL command: RFC 5321 4.1.2 syntax, or a sloppy form servers accept anyway."""
    if not txn.sloppy:
        return f"MAIL FROM:<{txn.mail_from}>".encode()
    if rng.random() < 0.5:
        return f"MAIL FROM: <{txn.mail_from}>".encode()
    return f"MAIL FROM:{txn.mail_from}".encode()


def _us(rng: random.Random, bounds: tuple[int, int]) -> int:
    return rng.randint(bounds[0], bounds[1])


class Player:
    """Writes one session plan into a TcpFlow, keeping the ground-truth counters."""

    def __init__(self, flow: TcpFlow, plan: SessionPlan, rng: random.Random,
                 counts: Counter[str]) -> None:
        self.flow = flow
        self.plan = plan
        self.rng = rng
        self.counts = counts
        self.unsynced = False  # a pipelined DATA was refused and no message has ended since

    def _count(self, verb: str, n: int = 1) -> None:
        """Count a cleartext or encrypted command; commands sent after a refused pipelined DATA
        are also counted as `<verb>_unsynced`, because dissectors that assume DATA always gets
        354 (Wireshark 4.0 among them) read everything after it as message content."""
        self.counts[verb + ("_tls" if self.flow.tls else "")] += n
        if self.unsynced and not self.flow.tls:
            self.counts[verb + "_unsynced"] += n

    def _cmd(self, line: bytes, verb: str, n: int = 1) -> None:
        self._count(verb, n)
        self.flow.send(CLIENT, line, self.rng.randint(100, 3000))

    def _reply(self, data: bytes, proc: tuple[int, int] = (150, 4000)) -> None:
        self.flow.send(SERVER, data, _us(self.rng, proc))

    def _r(self, which: Reply, **values: str) -> bytes:
        p = self.plan
        return p.profile.reply(which, host=p.server_name, ip=p.client_ip, helo=p.helo_name,
                               qid=f"{self.rng.getrandbits(40):010X}", **values)

    def play(self) -> None:
        """Run the whole session: handshake, dialogue, teardown."""
        p, flow, rng, counts = self.plan, self.flow, self.rng, self.counts
        counts["sessions"] += 1
        if not flow.connect(p.outcome):
            counts[p.outcome.value] += 1
            return
        counts["established"] += 1
        if p.pregreet:
            counts["pregreet"] += 1
            self._count("ehlo")
            flow.send(CLIENT, b"EHLO " + p.helo_name.encode() + b"\r\n", rng.randint(200, 3000),
                      respond=False)
            self._reply(self._r(Reply.PREGREET), (1_000_000, 5_000_000))
            flow.close(SERVER, 200, respond=False)
            return
        if p.blocked is not None:
            counts["blocked"] += 1
            self._reply(self._r(Reply.BLOCKED, text=p.blocked), (500, 30_000))
            self._finish()
            return
        self._reply(self._r(Reply.BANNER), (500, 60_000))
        self._greet()
        if p.starttls:
            self._cmd(b"STARTTLS\r\n", "starttls")
            self._reply(self._r(Reply.STARTTLS))
            flow.send(CLIENT, client_hello(rng, p.server_name), rng.randint(200, 2000))
            flow.send(SERVER, server_flight(rng, rng.randint(1800, 4200)), rng.randint(500, 4000))
            flow.send(CLIENT, client_finish(rng), rng.randint(200, 2000))
            flow.tls = True
            counts["tls"] += 1
            self._greet()
        for auth in p.auths:
            self._auth(auth)
        failed = False
        for txn in p.txns:
            if failed:
                self._cmd(b"RSET\r\n", "rset")
                self._reply(self._r(Reply.RSET))
            failed = not self._txn(txn)
        self._finish()

    def _greet(self) -> None:
        p = self.plan
        name = p.helo_name.encode("ascii", "replace")
        if p.ehlo:
            self._cmd(b"EHLO " + name + b"\r\n", "ehlo")
            self._reply(p.profile.ehlo(p.server_name, p.helo_name, p.client_ip, p.offer_auth,
                                       self.flow.tls))
        else:
            self._cmd(b"HELO " + name + b"\r\n", "helo")
            self._reply(self._r(Reply.HELO))

    def _finish(self) -> None:
        p, flow, rng = self.plan, self.flow, self.rng
        if p.quit:
            self._cmd(b"QUIT\r\n", "quit")
            self._reply(self._r(Reply.QUIT))
            flow.close(SERVER, rng.randint(20, 400), respond=False)
        elif p.reset:
            flow.reset(CLIENT, rng.randint(1000, 50_000))
        else:
            flow.close(CLIENT, rng.randint(1000, 50_000))

    def _auth(self, a: AuthPlan) -> None:
        rng = self.rng
        user, pw = a.user.encode(), a.password.encode()
        self.counts["auth"] += 1
        if a.mech is AuthMech.PLAIN:
            token = base64.b64encode(b"\0" + user + b"\0" + pw)
            self._cmd(b"AUTH PLAIN " + token + b"\r\n", "auth_cmd")
        elif a.mech is AuthMech.LOGIN:
            self._cmd(b"AUTH LOGIN\r\n", "auth_cmd")
            self._reply(USERNAME_PROMPT)
            self.flow.send(CLIENT, base64.b64encode(user) + b"\r\n", rng.randint(100, 3000))
            self._reply(PASSWORD_PROMPT)
            self.flow.send(CLIENT, base64.b64encode(pw) + b"\r\n", rng.randint(100, 3000))
        else:
            self._cmd(b"AUTH CRAM-MD5\r\n", "auth_cmd")
            challenge = f"<{rng.getrandbits(32)}.{rng.getrandbits(20)}@{self.plan.server_name}>"
            self._reply(b"334 " + base64.b64encode(challenge.encode()) + b"\r\n")
            digest = hmac.new(pw, challenge.encode(), hashlib.md5).hexdigest()
            response = base64.b64encode(user + b" " + digest.encode())
            self.flow.send(CLIENT, response + b"\r\n", rng.randint(100, 3000))
        if a.ok:
            self._reply(self._r(Reply.AUTH_OK), (2000, 60_000))
        else:
            self.counts["auth_failed"] += 1
            self._reply(self._r(Reply.AUTH_FAIL), AUTH_FAIL_DELAY_US)

    def _txn(self, txn: TxnPlan) -> bool:
        """One transaction; True when the message was accepted."""
        p, rng = self.plan, self.rng
        size = len(txn.message)
        mail = _mail_from(txn, rng)
        if p.ehlo and rng.random() < 0.7:
            mail += b" SIZE=" + str(size).encode()
        mail += b"\r\n"
        rcpt_lines = [f"RCPT TO:<{addr}>\r\n".encode() for addr, _ in txn.rcpts]
        mail_ok = txn.mail_reply is Reply.MAIL_OK
        rcpt_replies = [self._r(r if mail_ok else Reply.NEED_MAIL, rcpt=a, sender=txn.mail_from)
                        for a, r in txn.rcpts]
        accepted = mail_ok and any(r is Reply.RCPT_OK for _, r in txn.rcpts)
        mail_reply = self._r(txn.mail_reply, sender=txn.mail_from)
        if p.pipelining and not txn.bdat:
            self._count("mail")
            self._count("rcpt", len(rcpt_lines))
            self._count("data")
            batch = mail + b"".join(rcpt_lines) + b"DATA\r\n"
            self.flow.send(CLIENT, batch, rng.randint(100, 3000))
            go = self._r(Reply.DATA_GO) if accepted else self._r(
                Reply.NO_RECIPIENTS if mail_ok else Reply.NEED_MAIL)
            self._reply(mail_reply + b"".join(rcpt_replies) + go, (1000, 80_000))
            if not accepted:
                self.unsynced = True
                return False
            return self._content(txn, dot_stuff(txn.message))
        self._cmd(mail, "mail")
        self._reply(mail_reply, (500, 30_000))
        if not mail_ok:
            return False
        for line, reply in zip(rcpt_lines, rcpt_replies, strict=True):
            self._cmd(line, "rcpt")
            self._reply(reply, (300, 40_000))
        if not accepted:
            return False
        if txn.bdat:
            self._cmd(f"BDAT {size} LAST\r\n".encode(), "bdat")
            self.flow.send(CLIENT, txn.message, self.rng.randint(20, 400), respond=False)
            self.counts["messages" + ("_tls" if self.flow.tls else "")] += 1
            self._reply(self._r(txn.data_reply), DATA_SCAN_US)
            return txn.data_reply is Reply.QUEUED
        self._cmd(b"DATA\r\n", "data")
        self._reply(self._r(Reply.DATA_GO))
        return self._content(txn, dot_stuff(txn.message))

    def _content(self, txn: TxnPlan, stuffed: bytes) -> bool:
        self.counts["messages" + ("_tls" if self.flow.tls else "")] += 1
        self.flow.send(CLIENT, stuffed, self.rng.randint(100, 5000))
        self.unsynced = False  # the end-of-data line puts such dissectors back in step
        self._reply(self._r(txn.data_reply), DATA_SCAN_US)
        return txn.data_reply is Reply.QUEUED
