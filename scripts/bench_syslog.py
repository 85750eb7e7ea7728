"""Alerts per second through each syslog transport into a local rsyslog, against a raw socket
loop writing the same pre-framed messages into the same rsyslog in the same invocation.

For each transport: the caller's cost of send() per message (what analysis pays), the rate until
close() returned with every message accounted for, and the rate until rsyslog had written them
all to its file. Ratios are against the raw TCP loop (one sendall per 512 frames).

    .venv/bin/python scripts/bench_syslog.py [--messages N] [--transports udp,tcp,...]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensor.sinks.syslog import SyslogSink, parse_sink_url  # noqa: E402
from sensor.sinks.transports import frame_octet  # noqa: E402
from tests.sinks.collectors import Rsyslog, make_tls_files, rfc5424  # noqa: E402

TRANSPORTS = ("udp", "tcp", "tcp-lf", "tls", "relp", "unix")
# About the size of a real RFC 5424 alert with structured data and a summary sentence.
SUMMARY = ("10.20.4.17 sent 412 messages to 97 external MX hosts in 10 min; 61% rejected "
           "(rule direct_to_mx_burst, score 0.93, window 600 s)")


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def wait_written(daemon: Rsyslog, kind: str, count: int) -> tuple[float, int]:
    """Waits until rsyslog's output file for `kind` holds `count` lines, or stops growing for
    a second (udp loses what overflows the receive buffer); returns (time, lines)."""
    path = daemon.output(kind)
    last, changed = -1, time.monotonic()
    while True:
        lines = _lines(path)
        now = time.monotonic()
        if lines >= count:
            return now, lines
        if lines != last:
            last, changed = lines, now
        elif now - changed > 1.0:
            return changed, lines
        time.sleep(0.02)


def raw_tcp(daemon: Rsyslog, messages: list[bytes]) -> tuple[float, float, float, int]:
    """The reference: pre-framed messages written with one sendall per 512."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.ports["tcp"])) as sock:
        for i in range(0, len(messages), 512):
            sock.sendall(b"".join([frame_octet(m) for m in messages[i:i + 512]]))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
    done = time.monotonic()
    written, lines = wait_written(daemon, "tcp", len(messages))
    return 0.0, done - start, written - start, lines


def through_sink(daemon: Rsyslog, kind: str, url: str,
                 messages: list[bytes]) -> tuple[float, float, float, int]:
    sink = SyslogSink(parse_sink_url(url))
    sink.start()
    start = time.monotonic()
    send = sink.send
    for message in messages:
        send(message)
    queued = time.monotonic()
    sink.close()
    done = time.monotonic()
    stats = sink.stats
    if stats.sent != len(messages):
        raise SystemExit(f"bench: {kind}: {stats}")
    written, lines = wait_written(daemon, kind.split("-")[0], len(messages))
    return queued - start, done - start, written - start, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    args = parser.parse_args()
    kinds = [k for k in args.transports.split(",") if k]
    messages = [rfc5424(i, SUMMARY) for i in range(args.messages)]
    size = sum(map(len, messages)) / len(messages)
    rows: dict[str, tuple[float, float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tls = make_tls_files(work / "certs")
        for kind in ["raw-tcp", *kinds]:
            listener = "tcp" if kind == "raw-tcp" else kind.split("-")[0]
            daemon_dir = work / kind
            daemon_dir.mkdir()
            daemon = Rsyslog(daemon_dir, (listener,), tls if listener == "tls" else None)
            daemon.start()
            try:
                if kind == "raw-tcp":
                    rows[kind] = raw_tcp(daemon, messages)
                else:
                    query = {"tls": f"ca={tls.ca}&", "tcp-lf": "framing=lf&"}.get(kind, "")
                    host = "localhost" if kind == "tls" else "127.0.0.1"
                    url = daemon.url(listener, host, query + f"queue={len(messages)}"
                                                             "&flush_timeout=120")
                    rows[kind] = through_sink(daemon, kind, url, messages)
            finally:
                daemon.stop()
    n = len(messages)
    ref = rows["raw-tcp"][3] / rows["raw-tcp"][2]
    print(f"{n} messages of {size:.0f} bytes into rsyslog 1 listener each "
          f"(reference: raw TCP sendall loop, {ref:,.0f} msg/s written by rsyslog)")
    print(f"{'transport':<10} {'send() µs/msg':>14} {'sink msg/s':>12} {'written msg/s':>14} "
          f"{'ratio to raw':>13} {'arrived':>9}")
    for kind, (queued, closed, written, lines) in rows.items():
        per = f"{queued / n * 1e6:.2f}" if queued else "-"
        print(f"{kind:<10} {per:>14} {n / closed:>12,.0f} {lines / written:>14,.0f} "
              f"{(lines / written) / ref:>13.2f} {lines:>9}")
    print("udp has no flow control: what overflows rsyslog's receive buffer is lost at the "
          "collector, and the sink cannot know (counted sent = handed to the kernel)")


if __name__ == "__main__":
    main()
