"""Fabricated but realistic SMTP dialogues and helpers that run them through SmtpParser."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import fields

from sensor.records import ConnRecord, SmtpSession
from sensor.smtp import SmtpLimits, SmtpParser

C, S = True, False  # direction: to_server (client) / to_client (server)
Event = tuple[bool, bytes | int]  # an int is a gap of that many bytes


def conn_record(duration: float = 3.5, history: str = "ShADadFf") -> ConnRecord:
    """A ConnRecord for the fabricated connection (fields the parser ignores: zero or None)."""
    known: dict[str, object] = {
        "uid": "CtEst1", "ts": 100.0, "client_ip": "192.0.2.10", "client_port": 40000,
        "server_ip": "198.51.100.25", "server_port": 25, "duration_s": duration, "state": "SF",
        "history": history, "end_reason": "fin",
    }  # fmt: skip
    kwargs = {
        f.name: known.get(f.name, None if "None" in str(f.type) else 0) for f in fields(ConnRecord)
    }
    return ConnRecord(**kwargs)  # type: ignore[arg-type]


def new_parser(
    out: list[SmtpSession], limits: SmtpLimits | None = None, midstream: bool = False
) -> SmtpParser:
    """A parser for the fabricated connection, emitting into ``out`` (``midstream``: told that
    the handshake was not seen)."""
    return SmtpParser(
        "CtEst1", 100.0, "192.0.2.10", 40000, "198.51.100.25", 25, out.append, limits, midstream
    )


def run(
    events: Iterable[Event],
    limits: SmtpLimits | None = None,
    midstream: bool = False,
    history: str = "ShADadFf",
) -> SmtpSession:
    """Feed events (event i at ts 100+i) and return the emitted session (``history``: the
    connection record's, the handshake seen by default)."""
    out: list[SmtpSession] = []
    p = new_parser(out, limits, midstream)
    for i, (to_server, payload) in enumerate(events):
        if isinstance(payload, int):
            p.gap(to_server, 100.0 + i, payload)
        else:
            p.data(to_server, 100.0 + i, payload)
    p.close(200.0, conn_record(history=history))
    assert len(out) == 1
    return out[0]


def run_split(events: Sequence[tuple[bool, bytes]], cut: int) -> SmtpSession:
    """Like ``run`` but every payload is split at ``cut`` (clamped), same timestamps."""
    out: list[SmtpSession] = []
    p = new_parser(out)
    for i, (to_server, payload) in enumerate(events):
        k = min(cut, len(payload))
        p.data(to_server, 100.0 + i, payload[:k])
        p.data(to_server, 100.0 + i, payload[k:])
    p.close(200.0, conn_record())
    return out[0]


def run_bytewise(events: Sequence[tuple[bool, bytes]]) -> SmtpSession:
    """Like ``run`` but one byte per ``data`` call."""
    out: list[SmtpSession] = []
    p = new_parser(out)
    for i, (to_server, payload) in enumerate(events):
        for j in range(len(payload)):
            p.data(to_server, 100.0 + i, payload[j : j + 1])
    p.close(200.0, conn_record())
    return out[0]


def b64(raw: bytes) -> bytes:
    """Base64 as sent in AUTH exchanges."""
    return base64.b64encode(raw)


EHLO_REPLY = (
    b"250-mx.example.net Hello client.example.org [192.0.2.10]\r\n250-SIZE 52428800\r\n"
    b"250-8BITMIME\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n"
    b"250-CHUNKING\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n"
)
BANNER = b"220 mx.example.net ESMTP Postfix (Debian/GNU)\r\n"

MESSAGE = (
    b"Received: from relay.example.org (relay.example.org [203.0.113.7])\r\n"
    b"\tby mx.example.net with ESMTP id 1A2B3C; Mon, 6 Oct 2025 10:00:01 +0200\r\n"
    b"Received: from [10.1.2.3] (host.internal [10.1.2.3]) by relay.example.org;\r\n"
    b" Mon, 6 Oct 2025 10:00:00 +0200\r\n"
    b"Date: Mon, 6 Oct 2025 10:00:00 +0200\r\n"
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>, carol@example.net\r\n"
    b"Cc: dave@example.net\r\n"
    b"Subject: =?utf-8?q?Quarterly_r=C3=A9sum=C3=A9?=\r\n"
    b"Message-ID: <20251006100000.1234@example.org>\r\n"
    b"In-Reply-To: <prev@example.net>\r\n"
    b"X-Mailer: Thunderbird 128.3\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"..a line that starts with a dot\r\n"
    b"..\r\n"
    b"--b1\r\n"
    b'Content-Type: application/pdf; name="report.pdf"\r\n'
    b'Content-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJcOkw7zDtsOfCg==\r\n"
    b"--b1--\r\n"
)
ATTACHMENT_BYTES = base64.b64decode(b"JVBERi0xLjQKJcOkw7zDtsOfCg==")

BASIC: list[tuple[bool, bytes]] = [
    (S, BANNER),
    (C, b"EHLO client.example.org\r\n"),
    (S, EHLO_REPLY),
    (C, b"MAIL FROM:<alice@example.org> SIZE=2048 BODY=8BITMIME\r\n"),
    (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<bob@example.net>\r\n"),
    (S, b"250 2.1.5 Ok\r\n"),
    (C, b"RCPT TO:<nobody@example.net> NOTIFY=NEVER\r\n"),
    (S, b"550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n"),
    (C, b"DATA\r\n"),
    (S, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (C, MESSAGE + b".\r\n"),
    (S, b"250 2.0.0 Ok: queued as 4Xk9Q2\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]

PIPELINED: list[tuple[bool, bytes]] = [
    (S, BANNER),
    (C, b"EHLO client.example.org\r\n"),
    (S, EHLO_REPLY),
    (C, b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
        b"RCPT TO:<carol@example.net>\r\nDATA\r\n"),
    (S, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
    (C, b"Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<alice@example.org>\r\n"
        b"RCPT TO:<bob@example.net>\r\nDATA\r\n"),
    (S, b"250 2.0.0 Ok: queued as A1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n"),
    (C, b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n"),
    (S, b"250 2.0.0 Ok: queued as A2\r\n221 2.0.0 Bye\r\n"),
]  # fmt: skip

BDAT_HEAD = b"Subject: binary\r\nContent-Type: image/png\r\n\r\n"
BDAT_BINARY = bytes(range(256)) + b"\r\n.\r\n" + b"BDAT 3\r\n"
BDAT: list[tuple[bool, bytes]] = [
    (S, BANNER),
    (C, b"EHLO client.example.org\r\n"),
    (S, EHLO_REPLY),
    (C, b"MAIL FROM:<alice@example.org> BODY=BINARYMIME\r\n"),
    (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<bob@example.net>\r\n"),
    (S, b"250 2.1.5 Ok\r\n"),
    (C, b"BDAT %d\r\n" % len(BDAT_HEAD) + BDAT_HEAD),
    (S, b"250 2.0.0 44 octets received\r\n"),
    (C, b"BDAT %d\r\n" % len(BDAT_BINARY) + BDAT_BINARY),
    (S, b"250 2.0.0 271 octets received\r\n"),
    (C, b"BDAT 0 LAST\r\n"),
    (S, b"250 2.0.0 Ok: 312 bytes queued as B7\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]

PASSWORD = b"Tr0ub4dor&3-secret"
AUTH_PLAIN: list[tuple[bool, bytes]] = [
    (S, BANNER),
    (C, b"EHLO client.example.org\r\n"),
    (S, EHLO_REPLY),
    (C, b"AUTH PLAIN " + b64(b"\0mallory@example.org\0wrong-" + PASSWORD) + b"\r\n"),
    (S, b"535 5.7.8 Error: authentication failed: authentication failure\r\n"),
    (C, b"AUTH PLAIN\r\n"),
    (S, b"334 \r\n"),
    (C, b64(b"admin\0alice@example.org\0" + PASSWORD) + b"\r\n"),
    (S, b"235 2.7.0 Authentication successful\r\n"),
    (C, b"AUTH LOGIN\r\n"),
    (S, b"334 VXNlcm5hbWU6\r\n"),
    (C, b64(b"bob@example.org") + b"\r\n"),
    (S, b"334 UGFzc3dvcmQ6\r\n"),
    (C, b64(PASSWORD) + b"\r\n"),
    (S, b"454 4.7.0 Temporary authentication failure\r\n"),
    (C, b"AUTH CRAM-MD5\r\n"),
    (S, b"334 PDQxOTI5NDIzNDEuMTI4Mjg0NzJAc291cmNlZm91ci5hbmRyZXcuY211LmVkdT4=\r\n"),
    (C, b64(b"carol b913a602c7eda7a495b4e6e7334d3890") + b"\r\n"),
    (S, b"535 5.7.8 Error: authentication failed\r\n"),
    (C, b"AUTH XOAUTH2 " + b64(b"user=dave@example.org\x01auth=Bearer ya29.vF9dft4qmT\x01\x01")
        + b"\r\n"),
    (S, b"235 2.7.0 Accepted\r\n"),
    (C, b"AUTH LOGIN\r\n"),
    (S, b"334 VXNlcm5hbWU6\r\n"),
    (C, b"*\r\n"),
    (S, b"501 5.7.0 Authentication aborted\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]  # fmt: skip

STARTTLS: list[tuple[bool, bytes]] = [
    (S, BANNER),
    (C, b"EHLO client.example.org\r\n"),
    (S, EHLO_REPLY),
    (C, b"STARTTLS\r\n"),
    (S, b"220 2.0.0 Ready to start TLS\r\n"),
    (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)),
    (S, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03" + bytes(30)),
    (C, b"\x17\x03\x03\x00\x20" + bytes(32)),
]
