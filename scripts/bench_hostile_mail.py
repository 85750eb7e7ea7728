#!/usr/bin/env python3
"""Time the SMTP parser on each hostile message of issue 13 against a benign message of the same
size, in turn in one invocation, and print the ratios (target: none above 10x).

The benign reference is a multipart message with a base64 attachment, the common shape of large
mail. Each dialogue is fed to a real SmtpParser in 1460-byte segments, as reassembly delivers
it, so the figures include the DATA scan, the copy and the MIME walk.

    .venv/bin/python scripts/bench_hostile_mail.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from smtp.dialogues import conn_record
from smtp.hostile_mail import CRASHERS, SLOW, benign

from sensor.records import SmtpSession
from sensor.smtp import SmtpParser

MSS = 1460


def dialogue(message: bytes) -> list[tuple[bool, bytes]]:
    """The conversation delivering ``message``, the client's bytes cut at the MSS."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    talk = [
        (False, b"220 mx ESMTP\r\n"), (True, b"EHLO c.example\r\n"),
        (False, b"250-mx\r\n250 PIPELINING\r\n"), (True, b"MAIL FROM:<a@example.org>\r\n"),
        (False, b"250 ok\r\n"), (True, b"RCPT TO:<b@example.net>\r\n"), (False, b"250 ok\r\n"),
        (True, b"DATA\r\n"), (False, b"354 go\r\n"), (True, stuffed + b".\r\n"),
        (False, b"250 queued\r\n"), (True, b"QUIT\r\n"), (False, b"221 bye\r\n"),
    ]  # fmt: skip
    out: list[tuple[bool, bytes]] = []
    for to_server, data in talk:
        out.extend((to_server, data[i : i + MSS]) for i in range(0, len(data), MSS))
    return out


def parse(events: list[tuple[bool, bytes]]) -> tuple[float, SmtpSession]:
    """Seconds to parse one conversation, and its session."""
    out: list[SmtpSession] = []
    t0 = time.perf_counter()
    p = SmtpParser("Cbench", 1.0, "192.0.2.10", 40000, "198.51.100.25", 25, out.append)
    for i, (to_server, payload) in enumerate(events):
        p.data(to_server, 1.0 + i * 1e-4, payload)
    p.close(2.0, conn_record())
    return time.perf_counter() - t0, out[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per message (median)")
    args = ap.parse_args()
    print(f"{'message':<22} {'bytes':>10} {'hostile s':>10} {'benign s':>10} {'ratio':>7}  "
          "anomalies")  # fmt: skip
    worst = 0.0
    for name, data in {**CRASHERS, **SLOW}.items():
        hostile, reference = dialogue(data), dialogue(benign(len(data)))
        h_times: list[float] = []
        b_times: list[float] = []
        session = None
        for _ in range(args.rounds):  # in turn, so a passing load weighs on both
            t, session = parse(hostile)
            h_times.append(t)
            b_times.append(parse(reference)[0])
        h, b = statistics.median(h_times), statistics.median(b_times)
        worst = max(worst, h / b)
        assert session is not None
        anomalies = ",".join(f"{k}={v}" for k, v in sorted(session.anomalies.items()))
        print(f"{name:<22} {len(data):>10} {h:>10.4f} {b:>10.4f} {h / b:>6.2f}x  {anomalies}")
    print(f"worst ratio: {worst:.2f}x (target: under 10x)")


if __name__ == "__main__":
    main()
