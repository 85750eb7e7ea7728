#!/usr/bin/env python3
"""Benchmark of the SMTP parser alone: real sessions replayed with their TCP segmentation.

Sessions come from the SMTP-only reference capture (../shared/bench/README.md): its first N
connections are read, decoded and reassembled once with the sensor's own stages, their in-order
payloads recorded, then replayed through SmtpParser several times (best run kept).  A synthetic
workload of the same shape with multipart messages carrying a base64 attachment measures the MIME
walk; two micro loops give the cost of one command+reply exchange and of message content alone.

    .venv/bin/python scripts/bench_smtp_parser.py [--pcap F] [--sessions 2000] [--profile]
    .venv/bin/python scripts/bench_smtp_parser.py --dump out.jsonl   # outputs, to diff runs

Target (issue 3): ~70 us per typical session, everything included.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import pstats
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from sensor.capture.pcapfile import read_pcap
from sensor.decode.packet import Decoder
from sensor.records import CaptureStats, ConnRecord, SmtpSession, TcpStats
from sensor.smtp import SmtpLimits, SmtpParser, session_to_dict
from sensor.tcp import Reassembler

DEFAULT_PCAP = Path("/tmp/port25-bench/smtp_only_500k.pcap")
MSS = 1448  # 1460 minus the 12-byte timestamp option, as in the reference generator
Event = tuple[bool, float, bytes | int]  # (to_server, ts, payload or gap size)


@dataclass(slots=True)
class Recorded:
    """One connection's parser inputs, in delivery order."""

    uid: str
    ts: float
    endpoints: tuple[str, int, str, int]
    events: list[Event] = field(default_factory=list)
    close_ts: float = 0.0
    record: ConnRecord | None = None

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        self.events.append((to_server, ts, bytes(payload)))

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        self.events.append((to_server, ts, n))

    def close(self, ts: float, record: ConnRecord) -> None:
        self.close_ts, self.record = ts, record


def record_pcap(path: Path, limit: int) -> list[Recorded]:
    """Parser inputs of the first ``limit`` connections of a capture (later ones are ignored)."""
    sessions: list[Recorded] = []

    def factory(
        uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
    ) -> Recorded | None:
        if len(sessions) >= limit:
            return None
        rec = Recorded(uid, ts, (cip, cport, sip, sport))
        sessions.append(rec)
        return rec

    cstats = CaptureStats()
    decoder = Decoder(cstats)
    reasm = Reassembler(factory, TcpStats())
    with path.open("rb") as fh:
        for k, (ts, linktype, frame) in enumerate(read_pcap(fh, cstats)):
            seg = decoder.decode(linktype, frame)
            if seg is not None:
                reasm.segment(ts, seg)
            if k % 1000 == 0 and len(sessions) >= limit and all(s.record for s in sessions):
                break
    reasm.flush()
    return [s for s in sessions if s.record is not None]


def _conn(uid: str, endpoints: tuple[str, int, str, int], ts: float, end: float) -> ConnRecord:
    """A ConnRecord for a synthetic session (fields the parser ignores: zero or None)."""
    cip, cport, sip, sport = endpoints
    known: dict[str, object] = {
        "uid": uid, "ts": ts, "client_ip": cip, "client_port": cport, "server_ip": sip,
        "server_port": sport, "duration_s": end - ts, "state": "SF", "history": "ShADadFf",
        "end_reason": "fin",
    }  # fmt: skip
    kwargs = {
        f.name: known.get(f.name, None if "None" in str(f.type) else 0) for f in fields(ConnRecord)
    }
    return ConnRecord(**kwargs)  # type: ignore[arg-type]


def _segments(data: bytes) -> list[bytes]:
    return [data[i : i + MSS] for i in range(0, len(data), MSS)]


def synthetic(n: int, seed: int, multipart: bool) -> list[Recorded]:
    """Sessions of the reference shape (EHLO, MAIL, 1-5 RCPT, DATA 1-20 KB, QUIT)."""
    rng = random.Random(seed)
    words = [
        "the", "report", "invoice", "attached", "please", "find", "regards", "thanks", "order",
        "shipment", "account", "update", "review", "schedule", "project", "budget", "team",
    ]  # fmt: skip
    out: list[Recorded] = []
    for k in range(n):
        ts = 1000.0 + k
        rec = Recorded(f"Cbench{k}", ts, ("192.0.2.1", 40000 + k % 20000, "198.51.100.25", 25))
        host = f"client{k % 1000}.example.org"
        rcpts = [f"user{rng.randrange(100)}@example.net" for _ in range(rng.randint(1, 5))]
        size = rng.randint(1024, 20 * 1024)
        lines = []
        total = 0
        while total < size:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 13))) + "\r\n"
            lines.append(line)
            total += len(line)
        text = "".join(lines).encode()
        head = (f"Received: from {host} ({host} [192.0.2.1])\r\nFrom: <a@example.org>\r\n"
                f"To: {', '.join(rcpts)}\r\nSubject: =?utf-8?q?r=C3=A9sum=C3=A9?= {k}\r\n"
                f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{k:x}@{host}>\r\n"
                "MIME-Version: 1.0\r\n").encode()  # fmt: skip
        if multipart:
            blob = base64.encodebytes(rng.randbytes(size // 2)).replace(b"\n", b"\r\n")
            body = (head + b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + b"\r\n--b1\r\n"
                    b"Content-Type: application/pdf; name=\"r.pdf\"\r\n"
                    b"Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n" + blob
                    + b"--b1--\r\n")  # fmt: skip
        else:
            body = head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
        t = ts
        script: list[tuple[bool, bytes]] = [
            (False, b"220 mx.example.net ESMTP Postfix\r\n"),
            (True, f"EHLO {host}\r\n".encode()),
            (False, b"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
                    b"250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                    b"250-DSN\r\n250 SMTPUTF8\r\n"),
            (True, f"MAIL FROM:<a@example.org> SIZE={len(body)}\r\n".encode()),
            (False, b"250 2.1.0 Ok\r\n"),
        ]  # fmt: skip
        for r in rcpts:
            script += [(True, f"RCPT TO:<{r}>\r\n".encode()), (False, b"250 2.1.5 Ok\r\n")]
        script += [(True, b"DATA\r\n"), (False, b"354 End data with <CR><LF>.<CR><LF>\r\n")]
        script += [(True, seg) for seg in _segments(body + b".\r\n")]
        script += [(False, b"250 2.0.0 Ok: queued as 4F2A\r\n"), (True, b"QUIT\r\n"),
                   (False, b"221 2.0.0 Bye\r\n")]  # fmt: skip
        for to_server, payload in script:
            t += 0.001
            rec.events.append((to_server, t, payload))
        rec.close_ts = t
        rec.record = _conn(rec.uid, rec.endpoints, ts, t)
        out.append(rec)
    return out


def replay(sessions: list[Recorded], sink: Callable[[SmtpSession], None]) -> None:
    """Run every recorded session through a fresh SmtpParser."""
    for s in sessions:
        cip, cport, sip, sport = s.endpoints
        p = SmtpParser(s.uid, s.ts, cip, cport, sip, sport, sink)
        data, gap = p.data, p.gap
        for to_server, ts, payload in s.events:
            if isinstance(payload, int):
                gap(to_server, ts, payload)
            else:
                data(to_server, ts, payload)
        assert s.record is not None
        p.close(s.close_ts, s.record)


def best_of(runs: int, fn: Callable[[], None]) -> float:
    """Smallest wall time of ``runs`` calls."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def client_bytes(sessions: list[Recorded]) -> int:
    return sum(
        len(p) for s in sessions for to_s, _t, p in s.events if to_s and isinstance(p, bytes)
    )


def exchange_cost(runs: int, n: int = 20000) -> float:
    """Microseconds per RCPT + 250 exchange inside an open transaction."""
    limits = SmtpLimits(max_rcpts_per_txn=n + 10, max_commands=n + 10)

    def go() -> None:
        p = SmtpParser("Cx", 0.0, "192.0.2.1", 1, "198.51.100.2", 25, lambda s: None, limits)
        p.data(False, 0.0, b"220 mx ESMTP\r\n")
        p.data(True, 0.0, b"EHLO c.example.org\r\n")
        p.data(False, 0.0, b"250 mx\r\n")
        p.data(True, 0.0, b"MAIL FROM:<a@example.org>\r\n")
        p.data(False, 0.0, b"250 2.1.0 Ok\r\n")
        for i in range(n):
            p.data(True, 1.0, b"RCPT TO:<user%d@example.net>\r\n" % (i % 900))
            p.data(False, 1.0, b"250 2.1.5 Ok\r\n")

    return best_of(runs, go) / n * 1e6


def body_cost(runs: int, total: int = 4 << 20) -> tuple[float, float]:
    """(microseconds per MSS segment, MB/s) of DATA content, end-of-data analysis excluded."""
    line = b"Please find the quarterly report attached, regards, the team\r\n"
    content = (line * (total // len(line) + 1))[:total]
    segs = _segments(content)

    def go() -> None:
        p = SmtpParser("Cx", 0.0, "192.0.2.1", 1, "198.51.100.2", 25, lambda s: None)
        p.data(False, 0.0, b"220 mx ESMTP\r\n")
        p.data(True, 0.0, b"EHLO c.example.org\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\n")
        p.data(False, 0.0, b"250 mx\r\n250 ok\r\n250 ok\r\n")
        p.data(True, 0.0, b"DATA\r\n")
        p.data(False, 0.0, b"354 go\r\n")
        for s in segs:
            p.data(True, 1.0, s)

    t = best_of(runs, go)
    return t / len(segs) * 1e6, total / t / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pcap", type=Path, default=DEFAULT_PCAP)
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one pcap replay")
    ap.add_argument("--dump", type=Path, help="write every emitted session as JSON lines")
    a = ap.parse_args(argv)

    workloads: dict[str, list[Recorded]] = {}
    if a.pcap.exists():
        t0 = time.perf_counter()
        workloads["pcap"] = record_pcap(a.pcap, a.sessions)
        print(f"recorded {len(workloads['pcap'])} sessions from {a.pcap} in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    else:
        print(f"{a.pcap} missing: pcap replay skipped (see ../shared/bench/README.md)")
    workloads["synthetic text/plain"] = synthetic(a.sessions, 1, multipart=False)
    workloads["synthetic multipart"] = synthetic(a.sessions // 4, 2, multipart=True)

    if a.dump:
        with a.dump.open("w") as fh:
            for name, sessions in workloads.items():
                out: list[SmtpSession] = []
                replay(sessions, out.append)
                for s in out:
                    fh.write(json.dumps({"workload": name, **session_to_dict(s)}) + "\n")
        print(f"wrote {a.dump}")

    if a.profile and "pcap" in workloads:
        prof = cProfile.Profile()
        prof.runcall(replay, workloads["pcap"], lambda s: None)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)

    print(f"{'workload':24} {'sessions':>8} {'us/session':>11} {'MB/s client':>12}")
    for name, sessions in workloads.items():
        t = best_of(a.runs, lambda ss=sessions: replay(ss, lambda s: None))  # type: ignore[misc]
        mb = client_bytes(sessions) / 1e6
        print(f"{name:24} {len(sessions):8d} {t / len(sessions) * 1e6:11.1f} {mb / t:12.1f}")
    print(f"command+reply (RCPT/250): {exchange_cost(a.runs):.2f} us")
    seg_us, mbs = body_cost(a.runs)
    print(f"DATA content: {seg_us:.2f} us per {MSS}-byte segment, {mbs:.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
