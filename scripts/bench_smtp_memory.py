#!/usr/bin/env python3
"""Peak memory of one SMTP session fed pipelined transactions that the server never answers.

Issue 13: a client pipelining MAIL/RCPT/DATA transactions without waiting for replies kept a
transaction state for each, past the per-session caps (40 MB of input reached 543 MB). This
feeds SmtpParser (library level, no capture) 10, 40 and 80 MB of such client input after a
banner, and, as the reference, a benign session of the same client bytes where the server
answers every command. Each run is a fresh child process; it reports the growth of its peak RSS
while feeding (the input is generated chunk by chunk, never held whole), and the ratio
unanswered / answered is printed. The target: the unanswered session's memory stays bounded by
the per-session caps (max_pending_cmds, max_txns_per_session, max_rcpts_per_txn,
max_mime_bytes), so it does not grow with the input length.

    .venv/bin/python scripts/bench_smtp_memory.py [--sizes 10,40,80]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields

from sensor.records import ConnRecord, SmtpSession
from sensor.smtp import SmtpParser

MB = 1 << 20
CHUNK = 64 << 10  # client bytes per data() call for the unanswered stream
BANNER = b"220 mx.example.net ESMTP\r\n"
EHLO = b"EHLO bot.example.org\r\n"
EHLO_REPLY = b"250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
REPLIES = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED = b"250 2.0.0 Ok: queued\r\n"


def transaction(i: int) -> bytes:
    """One pipelined mail transaction, commands and content (about 260 bytes)."""
    return (
        f"MAIL FROM:<s{i}@spam.example>\r\nRCPT TO:<r{i}@victim.example.net>\r\nDATA\r\n"
        f"From: s{i}@spam.example\r\nTo: r{i}@victim.example.net\r\nSubject: offer {i}\r\n"
        "\r\nCheap watches, best prices, click the link below today.\r\n"
        "http://spam.example/buy\r\n.\r\n"
    ).encode()


def transactions(total: int) -> Iterator[bytes]:
    """Transactions until ``total`` client bytes have been produced."""
    sent, i = 0, 0
    while sent < total:
        t = transaction(i)
        sent += len(t)
        i += 1
        yield t


def conn_record() -> ConnRecord:
    """The record the parser gets at close (fields it does not read: zero or None)."""
    known: dict[str, object] = {"uid": "Cbench", "client_ip": "192.0.2.66", "client_port": 40000,
                                "server_ip": "198.51.100.25", "server_port": 25,
                                "duration_s": 1.0, "state": "SF", "history": "",
                                "end_reason": "fin"}
    kwargs = {f.name: known.get(f.name, None if "None" in str(f.type) else 0)
              for f in fields(ConnRecord)}
    return ConnRecord(**kwargs)  # type: ignore[arg-type]


def rss_kb() -> int:
    """Peak resident set size of this process so far, in KiB (Linux ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def current_rss_kb() -> int:
    """Resident set size now, in KiB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def child(kind: str, size: int) -> None:
    """Feed one session and print: peak RSS growth (KiB), transactions, anomalies."""
    out: list[SmtpSession] = []
    p = SmtpParser("Cbench", 0.0, "192.0.2.66", 40000, "198.51.100.25", 25, out.append)
    p.data(False, 0.0, BANNER)
    p.data(True, 0.1, EHLO)
    p.data(False, 0.2, EHLO_REPLY)
    base = current_rss_kb()
    ts = 1.0
    if kind == "unanswered":
        buf: list[bytes] = []
        held = 0
        for t in transactions(size):
            buf.append(t)
            held += len(t)
            if held >= CHUNK:
                p.data(True, ts, b"".join(buf))
                buf, held = [], 0
                ts += 0.001
        if buf:
            p.data(True, ts, b"".join(buf))
    else:
        for t in transactions(size):
            p.data(True, ts, t)
            p.data(False, ts + 0.0005, REPLIES + QUEUED)
            ts += 0.001
    p.close(ts + 1.0, conn_record())
    peak = rss_kb()
    s = out[0]
    dropped = {str(k): v for k, v in s.anomalies.items()
               if k in ("pending_overflow", "too_many_txns", "txn_unanswered")}
    print(f"{max(peak - base, 0)} {len(s.transactions)} {dropped}")


def measure(kind: str, size: int) -> tuple[int, str]:
    """Run one child; (peak RSS growth in KiB, its report)."""
    r = subprocess.run([sys.executable, __file__, "--child", kind, str(size)],
                       capture_output=True, text=True, check=True)
    kb, rest = r.stdout.strip().split(" ", 1)
    return int(kb), rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,40,80", help="client input sizes in MB")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"{'input':>8} {'answered MB':>12} {'unanswered MB':>14} {'ratio':>6}  "
          "unanswered: records kept, drops counted")
    for mb in (int(x) for x in args.sizes.split(",")):
        ref, _ = measure("answered", mb * MB)
        got, report = measure("unanswered", mb * MB)
        ratio = got / ref if ref else float("inf")
        print(f"{mb:>6}MB {ref / 1024:>12.1f} {got / 1024:>14.1f} {ratio:>6.2f}  {report}")


if __name__ == "__main__":
    main()
