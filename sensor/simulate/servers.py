"""Reply texts and EHLO extension lists of the SMTP server implementations we imitate."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reply(StrEnum):
    """Server replies a simulated session can need (codes per RFC 5321 section 4.2.3,
    enhanced status codes per RFC 3463)."""

    BANNER = "banner"
    HELO = "helo"
    MAIL_OK = "mail_ok"
    RCPT_OK = "rcpt_ok"
    DATA_GO = "data_go"
    QUEUED = "queued"
    QUIT = "quit"
    RSET = "rset"
    USER_UNKNOWN = "user_unknown"
    RELAY_DENIED = "relay_denied"
    GREYLISTED = "greylisted"
    RCPT_REJECTED = "rcpt_rejected"
    MAIL_TEMPFAIL = "mail_tempfail"
    MAIL_REJECTED = "mail_rejected"
    NO_RECIPIENTS = "no_recipients"
    NEED_MAIL = "need_mail"
    CONTENT_REJECTED = "content_rejected"
    BLOCKED = "blocked"
    PREGREET = "pregreet"
    AUTH_OK = "auth_ok"
    AUTH_FAIL = "auth_fail"
    STARTTLS = "starttls"


@dataclass(slots=True, frozen=True)
class ServerProfile:
    """One server implementation: banner, EHLO answer and reply texts with placeholders."""

    name: str
    ehlo_first: str
    extensions: tuple[str, ...]
    replies: dict[Reply, str]

    def reply(self, which: Reply, **values: str) -> bytes:
        """One reply line with CRLF, placeholders ({host}, {rcpt}, {ip}, {qid}...) filled."""
        return (self.replies[which].format(**values) + "\r\n").encode("ascii", "replace")

    def ehlo(self, host: str, helo: str, ip: str, auth: bool, tls_done: bool) -> bytes:
        """The multi-line EHLO answer (RFC 5321 section 4.1.1.1); AUTH only when offered."""
        exts = [e for e in self.extensions if not (tls_done and e == "STARTTLS")]
        if auth:
            exts.insert(len(exts) - 1, "AUTH PLAIN LOGIN CRAM-MD5")
        lines = [self.ehlo_first.format(host=host, helo=helo, ip=ip), *exts]
        out = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
        return out.encode("ascii", "replace")


_COMMON = {
    Reply.RCPT_REJECTED: "550 5.7.1 <{rcpt}>: Recipient address rejected: Access denied",
    Reply.GREYLISTED: "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, try again",
    Reply.MAIL_TEMPFAIL: "451 4.3.0 <{sender}>: Temporary lookup failure",
    Reply.MAIL_REJECTED: "553 5.7.1 <{sender}>: Sender address rejected: not permitted",
    Reply.RELAY_DENIED: "554 5.7.1 <{rcpt}>: Relay access denied",
    Reply.BLOCKED: "554 5.7.1 {text}",
    Reply.PREGREET: "521 5.5.1 Protocol error: talking too early",
    Reply.AUTH_OK: "235 2.7.0 Authentication successful",
    Reply.AUTH_FAIL: "535 5.7.8 Error: authentication failed: authentication failure",
    Reply.STARTTLS: "220 2.0.0 Ready to start TLS",
    Reply.CONTENT_REJECTED: "550 5.7.1 Message content rejected as spam",
    Reply.NEED_MAIL: "503 5.5.1 Error: need MAIL command",
}

POSTFIX = ServerProfile(
    "postfix", "{host}",
    ("PIPELINING", "SIZE 52428800", "ETRN", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME",
     "DSN", "SMTPUTF8", "CHUNKING"),
    {**_COMMON,
     Reply.BANNER: "220 {host} ESMTP Postfix",
     Reply.HELO: "250 {host}",
     Reply.MAIL_OK: "250 2.1.0 Ok",
     Reply.RCPT_OK: "250 2.1.5 Ok",
     Reply.DATA_GO: "354 End data with <CR><LF>.<CR><LF>",
     Reply.QUEUED: "250 2.0.0 Ok: queued as {qid}",
     Reply.QUIT: "221 2.0.0 Bye",
     Reply.RSET: "250 2.0.0 Ok",
     Reply.USER_UNKNOWN:
         "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table",
     Reply.NO_RECIPIENTS: "554 5.5.1 Error: no valid recipients"})

EXIM = ServerProfile(
    "exim", "{host} Hello {helo} [{ip}]",
    ("SIZE 52428800", "8BITMIME", "PIPELINING", "CHUNKING", "STARTTLS", "HELP"),
    {**_COMMON,
     Reply.BANNER: "220 {host} ESMTP Exim 4.96 ready",
     Reply.HELO: "250 {host} Hello {helo} [{ip}]",
     Reply.MAIL_OK: "250 OK",
     Reply.RCPT_OK: "250 Accepted",
     Reply.DATA_GO: "354 Enter message, ending with \".\" on a line by itself",
     Reply.QUEUED: "250 OK id={qid}",
     Reply.QUIT: "221 {host} closing connection",
     Reply.RSET: "250 Reset OK",
     Reply.USER_UNKNOWN: "550 5.1.1 <{rcpt}>: Unrouteable address",
     Reply.NO_RECIPIENTS: "503 5.5.1 Valid RCPT command must precede DATA"})

EXCHANGE = ServerProfile(
    "exchange", "{host} Hello [{ip}]",
    ("SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME",
     "BINARYMIME", "CHUNKING", "SMTPUTF8"),
    {**_COMMON,
     Reply.BANNER: "220 {host} Microsoft ESMTP MAIL Service ready",
     Reply.HELO: "250 {host} Hello [{ip}]",
     Reply.MAIL_OK: "250 2.1.0 Sender OK",
     Reply.RCPT_OK: "250 2.1.5 Recipient OK",
     Reply.DATA_GO: "354 Start mail input; end with <CRLF>.<CRLF>",
     Reply.QUEUED: "250 2.6.0 <{qid}@{host}> Queued mail for delivery",
     Reply.QUIT: "221 2.0.0 Service closing transmission channel",
     Reply.RSET: "250 2.0.0 Resetting",
     Reply.USER_UNKNOWN:
         "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient <{rcpt}> not found",
     Reply.NO_RECIPIENTS: "554 5.5.1 No valid recipients"})

PROFILES = (POSTFIX, EXIM, EXCHANGE)
