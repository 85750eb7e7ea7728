"""Hostile messages from the fuzzing campaign and the real-MTA comparison, built in code, and a
writer of a whole SMTP conversation carrying one of them into a capture file."""

from __future__ import annotations

import struct
from pathlib import Path

from sensor.capture.writer import PcapWriter

HEAD = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hostile\r\n"


def nested_multipart(levels: int, tail: bytes = b"x\r\n") -> bytes:
    """``levels`` multiparts each holding the next (the RecursionError of issue 13)."""
    out = [HEAD]
    for i in range(levels):
        out.append(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i))
    out.append(b"Content-Type: text/plain\r\n\r\n" + tail)
    return b"".join(out)


def nested_rfc822(levels: int) -> bytes:
    """``levels`` message/rfc822 parts each holding the next, no multipart at all."""
    return HEAD + b"Content-Type: message/rfc822\r\n\r\n" * levels + b"Subject: in\r\n\r\nx\r\n"


def with_header(line: bytes, body: bytes = b"body\r\n") -> bytes:
    """A small message carrying one hostile header line."""
    return HEAD + line + b"\r\n\r\n" + body


def attachment(disposition: bytes, payload: bytes = b"QUJD\r\n") -> bytes:
    """A multipart message whose second part carries the given Content-Disposition."""
    return HEAD + (
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--z\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: " + disposition + b"\r\n\r\n" + payload + b"--z--\r\n"
    )


CRASHERS: dict[str, bytes] = {
    "multipart-1000": nested_multipart(1000),
    "rfc822-980": nested_rfc822(980),
    "charset-undefined": with_header(b"Subject: =?undefined?q?abc?="),
    "charset-idna": with_header(b"Subject: =?idna?q?=FF=FE?="),
    "charset-punycode": with_header(b"Subject: =?punycode?q?=FF?="),
    "charset-nul": with_header(b"Subject: =?utf\x00-8?q?abc?="),
    "charset-hex": with_header(b"Subject: =?hex?q?zz?="),
    "rfc2231-undefined": attachment(b"attachment; filename*=undefined''a"),
    "rfc2231-digits": attachment(b"attachment; name*" + b"0" * 4301 + b"=a; filename=f.bin"),
    "rfc2231-idna": attachment(b"attachment; filename*=idna''%ff%fe.txt"),
}
"""Each raised inside the standard library's email package and ended the whole run."""

SLOW: dict[str, bytes] = {
    "filename-160k-words": attachment(b"attachment; filename=\"" + b"=?utf-8?q?a?= " * 160_000
                                      + b"\""),
    "unclosed-quote-400k": attachment(b"attachment; filename=\"a" + b";" * 400_000),
    "nested-200-1m-lines": nested_multipart(200, b"\r\n" * 1_000_000),
    # ours: lines that hold every enclosing boundary, never at a line start, so that each
    # level's delimiter search meets them all
    "lookalikes-20-levels": nested_multipart(
        20, (b"".join(b"x--b%d" % i for i in range(20)) + b"\r\n") * 12_000),
}
"""Each ran for tens of seconds to minutes inside the email package (but the last)."""
def benign(size: int) -> bytes:
    """A benign message of about ``size`` bytes: text and a base64 attachment."""
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    return HEAD + (
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--z\r\n"
        b"Content-Type: application/pdf; name=r.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=r.pdf\r\n\r\n"
        + line * max(1, size // len(line)) + b"--z--\r\n"
    )


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class _Side:
    def __init__(self, ip: bytes, port: int, seq: int) -> None:
        self.ip, self.port, self.seq = ip, port, seq


def smtp_pcap(path: Path, message: bytes, ts: float = 1_700_000_000.0, port: int = 40000) -> Path:
    """A capture of one SMTP conversation delivering ``message`` (dot-stuffed here): handshake,
    EHLO, MAIL, RCPT, DATA, the message in MSS-sized segments, QUIT and FIN both ways."""
    cli = _Side(bytes([192, 0, 2, 10]), port, 1000)
    srv = _Side(bytes([198, 51, 100, 25]), 25, 5000)
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    talk: list[tuple[bool, bytes]] = [
        (False, b"220 mx.example.net ESMTP\r\n"), (True, b"EHLO client.example.org\r\n"),
        (False, b"250-mx.example.net\r\n250 8BITMIME\r\n"),
        (True, b"MAIL FROM:<a@example.org>\r\n"), (False, b"250 2.1.0 Ok\r\n"),
        (True, b"RCPT TO:<b@example.net>\r\n"), (False, b"250 2.1.5 Ok\r\n"),
        (True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (True, stuffed + b".\r\n"), (False, b"250 2.0.0 Ok: queued\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 2.0.0 Bye\r\n"),
    ]  # fmt: skip
    t = ts
    with PcapWriter(str(path)) as w:
        def send(a: _Side, b: _Side, flags: int, payload: bytes = b"") -> None:
            nonlocal t
            t += 0.0005
            tcp = struct.pack("!HHIIBBHHH", a.port, b.port, a.seq, b.seq, 5 << 4, flags,
                              65535, 0, 0)  # fmt: skip
            pseudo = a.ip + b.ip + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
            c = _csum(pseudo + tcp + payload)
            tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000,
                             64, 6, 0, a.ip, b.ip)  # fmt: skip
            ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
            eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
            w.write(t, eth + ip + tcp + payload)
            a.seq = (a.seq + len(payload) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF

        send(cli, srv, 0x02)  # SYN (ack field unused)
        send(srv, cli, 0x12)  # SYN-ACK
        send(cli, srv, 0x10)
        for to_server, data in talk:
            a, b = (cli, srv) if to_server else (srv, cli)
            for i in range(0, len(data), 1460):
                send(a, b, 0x18, data[i : i + 1460])
            send(b, a, 0x10)
        send(cli, srv, 0x11)  # FIN
        send(srv, cli, 0x11)
        send(cli, srv, 0x10)
    return path
