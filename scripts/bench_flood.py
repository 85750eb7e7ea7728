#!/usr/bin/env python3
"""Benchmark of a SYN flood: peak memory, flows accounted for, and SMTP sessions still analysed.

Writes two captures in code (no scapy; kept under --workdir, outside the repository):
- flood: FLOWS SYN-only flows (each from its own address and port, to 192.0.2.25:25, over
  --seconds of packet time) with SESSIONS complete SMTP sessions mixed in;
- benign: SMTP sessions only, about as many packets, as the reference.
Each is analysed by `sensor analyze --quiet --conns --sessions --stats`, in one process and with
`--workers N`, and the script prints wall time, peak RSS (for --workers, the largest sum of the
resident sizes of the parent and its workers, sampled from /proc every 50 ms, and the largest
single process from wait4), connection records written against flows sent, evictions, and
whether every real session's recipient was seen. Target (issue 13): peak RSS under 300 MB in
both modes for 1M flows. A third run adds `--alerts` (features, rules and the bundled model, as
`sensor live` always runs them): the spoofed sources then fill the host table to its cap.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchlib import sensor_exe

from sensor.capture.writer import PcapWriter
from sensor.simulate.frames import checksum_fold, words_sum

ETH = bytes.fromhex("020000000002" "020000000001" "0800")
SERVER = bytes([192, 0, 2, 25])
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
MSS_OPT = b"\x02\x04\x05\xb4\x01\x03\x03\x07"  # MSS 1460, NOP, window scale 7
T0 = 1_700_000_000.0


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"", opts: bytes = b"") -> bytes:  # fmt: skip
    """Ethernet + IPv4 + TCP with correct checksums."""
    hlen = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, hlen << 2, flags, 64240, 0, 0) + opts
    tcp_len = hlen + len(payload)
    pseudo = words_sum(src + dst) + 6 + tcp_len
    csum = checksum_fold(pseudo + words_sum(tcp) + words_sum(payload))
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum_fold(words_sum(ip))) + ip[12:]
    return ETH + ip + tcp + payload


def session_frames(k: int) -> tuple[str, list[bytes]]:
    """One complete SMTP session of client k: its recipient address and its frames."""
    client = bytes([198, 51, (k >> 8) & 255, k & 255])
    cport = 20000 + k % 40000
    rcpt = f"user{k}@example.org"
    dialogue = [
        (False, b"220 mx.example.org ESMTP\r\n"),
        (True, b"EHLO client%d.example.com\r\n" % k),
        (False, b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
        (True, b"MAIL FROM:<sender%d@example.com>\r\n" % k),
        (False, b"250 2.1.0 Ok\r\n"),
        (True, f"RCPT TO:<{rcpt}>\r\n".encode()),
        (False, b"250 2.1.5 Ok\r\n"),
        (True, b"DATA\r\n"),
        (False, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
        (True, b"Subject: hello %d\r\nFrom: <sender%d@example.com>\r\n\r\nhi\r\n.\r\n" % (k, k)),
        (False, b"250 2.0.0 Ok: queued\r\n"),
        (True, b"QUIT\r\n"),
        (False, b"221 2.0.0 Bye\r\n"),
    ]
    cseq, sseq = 1000 + k, 5000 + k
    out = [frame(client, SERVER, cport, 25, cseq, 0, SYN, opts=MSS_OPT),
           frame(SERVER, client, 25, cport, sseq, cseq + 1, SYN | ACK, opts=MSS_OPT)]  # fmt: skip
    cseq += 1
    sseq += 1
    out.append(frame(client, SERVER, cport, 25, cseq, sseq, ACK))
    for to_server, data in dialogue:
        if to_server:
            out.append(frame(client, SERVER, cport, 25, cseq, sseq, ACK | PSH, data))
            cseq += len(data)
        else:
            out.append(frame(SERVER, client, 25, cport, sseq, cseq, ACK | PSH, data))
            sseq += len(data)
    out.append(frame(client, SERVER, cport, 25, cseq, sseq, ACK | FIN))
    out.append(frame(SERVER, client, 25, cport, sseq, cseq + 1, ACK | FIN))
    out.append(frame(client, SERVER, cport, 25, cseq + 1, sseq + 1, ACK))
    return rcpt, out


def write_flood(path: Path, flows: int, sessions: int, seconds: float) -> tuple[int, list[str]]:
    """The flood capture; returns its packet count and the real sessions' recipients."""
    syn_hdr = struct.Struct("!HHIIBBHHH")
    base_ip = struct.pack("!BBHHHBBH", 0x45, 0, 40 + len(MSS_OPT), 0, 0x4000, 64, 6, 0)
    every = max(1, flows // max(1, sessions))
    rcpts: list[str] = []
    packets = 0
    step = seconds / flows
    with PcapWriter(str(path)) as w:
        for i in range(flows):
            ts = T0 + i * step
            src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
            sport = 1024 + i % 64000
            tcp = syn_hdr.pack(sport, 25, (i * 2654435761) & 0xFFFFFFFF, 0, 0x70, SYN, 64240,
                               0, 0) + MSS_OPT  # fmt: skip
            pseudo = words_sum(src + SERVER) + 6 + len(tcp)
            csum = checksum_fold(pseudo + words_sum(tcp))
            tcp = tcp[:16] + csum.to_bytes(2, "big") + tcp[18:]
            ip = base_ip + src + SERVER
            ip = ip[:10] + checksum_fold(words_sum(ip)).to_bytes(2, "big") + ip[12:]
            w.write(ts, ETH + ip + tcp)
            packets += 1
            if sessions and i % every == every // 2 and len(rcpts) < sessions:
                rcpt, frames = session_frames(len(rcpts))
                rcpts.append(rcpt)
                for j, f in enumerate(frames):
                    w.write(ts + j * step / (len(frames) + 1), f)
                packets += len(frames)
    return packets, rcpts


def write_benign(path: Path, packets: int, seconds: float) -> tuple[int, list[str]]:
    """SMTP sessions only, about `packets` packets, over `seconds` of packet time."""
    per = len(session_frames(0)[1])
    count = max(1, packets // per)
    rcpts: list[str] = []
    written = 0
    with PcapWriter(str(path)) as w:
        for k in range(count):
            rcpt, frames = session_frames(k)
            rcpts.append(rcpt)
            t = T0 + k * seconds / count
            for j, f in enumerate(frames):
                w.write(t + j * 1e-4, f)
            written += len(frames)
    return written, rcpts


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MB (from /proc)."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total / 1024.0


def run(cmd: list[str]) -> dict[str, float]:
    """Run to completion: wall seconds, sampled peak RSS of the tree, largest process's peak."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {code}: {err.strip()[:400]}")
    return {"wall": wall, "tree_peak": peak[0], "proc_peak": usage.ru_maxrss / 1024.0}


def analyse(pcap: Path, workers: int, out: Path, rcpts: list[str],
            detect: bool = False) -> dict[str, object]:
    conns, sess, stats = out / "conns.jsonl", out / "sessions.jsonl", out / "stats.json"
    cmd = [sensor_exe(), "analyze", "--quiet", "--conns", str(conns), "--sessions", str(sess),
           "--stats", str(stats), str(pcap)]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if detect:  # what `sensor live` always runs: features, rules and the bundled model
        cmd += ["--alerts", str(out / "alerts.jsonl")]
    got = run(cmd)
    with conns.open() as fh:
        n_conns = sum(1 for _ in fh)
    seen: set[str] = set()
    with sess.open() as fh:
        for line in fh:
            for txn in json.loads(line)["transactions"]:
                seen.update(r["addr"] for r in txn["rcpt_to"])
    summary = json.loads(stats.read_text())
    tcp, det = summary["tcp"], summary.get("detect", {})
    return {
        **got,
        "conns": n_conns,
        "sessions_ok": sum(1 for r in rcpts if r in seen),
        "evicted": tcp["evicted_memcap"] + tcp["evicted_lru"],
        "evicted_half_open": tcp["evicted_half_open"],
        "active_peak": tcp["active_peak"],
        "hosts_evicted": det.get("evicted", 0),
        "early_batches": det.get("model_early_batches", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/port25-bench", help="where captures are written")
    ap.add_argument("--flows", type=int, default=1_000_000, help="SYN-only flows")
    ap.add_argument("--sessions", type=int, default=200, help="real SMTP sessions mixed in")
    ap.add_argument("--seconds", type=float, default=100.0, help="packet time of the flood")
    ap.add_argument("--workers", type=int, default=2, help="also run with --workers N (1: skip)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    flood = work / f"flood_{args.flows}_{args.sessions}.pcap"
    benign = work / f"flood_benign_{args.flows}.pcap"
    t0 = time.perf_counter()
    n_flood, flood_rcpts = write_flood(flood, args.flows, args.sessions, args.seconds)
    n_benign, benign_rcpts = write_benign(benign, n_flood, args.seconds)
    print(f"captures written in {time.perf_counter() - t0:.1f} s: {flood} ({n_flood:,} packets, "
          f"{args.flows:,} SYN-only flows + {len(flood_rcpts)} sessions), {benign} "
          f"({n_benign:,} packets, {len(benign_rcpts):,} sessions)", flush=True)  # fmt: skip
    print(f"\n{'run':<22}{'wall s':>8}{'tree peak MB':>14}{'max proc MB':>13}{'conns':>10}"
          f"{'flows':>10}{'evicted':>10}{'sessions ok':>14}")  # fmt: skip
    modes: list[tuple[int, bool]] = [(1, False)] + ([(args.workers, False)] if args.workers > 1
                                                      else []) + [(1, True)]
    for label, pcap, flows, rcpts in (
        ("flood", flood, args.flows + len(flood_rcpts), flood_rcpts),
        ("benign", benign, len(benign_rcpts), benign_rcpts),
    ):
        for workers, detect in modes:
            r = analyse(pcap, workers, work, rcpts, detect)
            name = f"{label} workers={workers}" + (" +alerts" if detect else "")
            print(f"{name:<22}{r['wall']:>8.1f}{r['tree_peak']:>14.1f}{r['proc_peak']:>13.1f}"
                  f"{r['conns']:>10,}{flows:>10,}{r['evicted']:>10,}"
                  f"{str(r['sessions_ok']) + '/' + str(len(rcpts)):>14}"
                  + (f"  hosts evicted {r['hosts_evicted']:,}, early model batches "
                     f"{r['early_batches']}" if detect else ""), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
