"""Rotated captures for the cluster tests: raw pcap records, cut points of interest, parts."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from sensor.cluster.split import PCAP_HEADER, RECORD_HEADER
from sensor.decode.packet import Decoder
from sensor.records import CaptureStats
from sensor.tcp.conn import ACK, SYN

OUTPUTS = ("conns", "sessions", "alerts")


def sensor(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI exactly as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "sensor", *args], capture_output=True, text=True, timeout=timeout
    )


def analyze(out: Path, *args: str) -> tuple[dict[str, bytes], str]:
    """`sensor analyze -q` writing conns, sessions and alerts under `out`: their bytes, stderr."""
    out.mkdir(parents=True, exist_ok=True)
    done = sensor("analyze", "-q", *[f"--{n}={out / n}" for n in OUTPUTS], *args)
    assert done.returncode == 0, done.stderr
    return {n: (out / n).read_bytes() for n in OUTPUTS}, done.stderr


def read_records(path: Path) -> tuple[bytes, list[bytes]]:
    """A classic pcap's file header and its records (record header and frame, raw)."""
    data = path.read_bytes()
    head, off, recs = data[:PCAP_HEADER], PCAP_HEADER, []
    while off + RECORD_HEADER <= len(data):
        caplen = int.from_bytes(data[off + 8 : off + 12], "little")
        recs.append(data[off : off + RECORD_HEADER + caplen])
        off += RECORD_HEADER + caplen
    return head, recs


def write_parts(head: bytes, recs: list[bytes], cuts: list[int], out_dir: Path) -> list[str]:
    """Write `recs` as files cut before each index of `cuts` (tcpdump -C style names)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(recs))), len(recs)]
    paths = []
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        path = out_dir / f"rot.pcap{k}"
        path.write_bytes(head + b"".join(recs[a:b]))
        paths.append(str(path))
    return paths


def segments(recs: list[bytes]) -> list[tuple | None]:
    """Each record decoded (Ethernet) into a Segment, or None."""
    dec = Decoder(CaptureStats())
    return [dec.decode(1, r[RECORD_HEADER:]) for r in recs]


def interesting_cuts(recs: list[bytes]) -> dict[str, list[int]]:
    """Record indices that cut a connection inside its handshake (before the SYN-ACK, before
    the handshake's ACK) and inside a message's DATA (between two client segments of it)."""
    segs = segments(recs)
    found: dict[str, list[int]] = {"syn_ack": [], "handshake_ack": [], "in_data": []}
    state: dict[tuple, str] = {}
    for i, seg in enumerate(segs):
        if seg is None:
            continue
        src, dst, sport, dport, flags, payload = seg[0], seg[1], seg[2], seg[3], seg[6], seg[10]
        key = (min((src, sport), (dst, dport)), max((src, sport), (dst, dport)))
        st = state.get(key, "")
        if flags & (SYN | ACK) == SYN:
            state[key] = "syn"
        elif flags & SYN and st == "syn":
            found["syn_ack"].append(i)
            state[key] = "synack"
        elif st == "synack" and not payload:
            found["handshake_ack"].append(i)
            state[key] = "open"
        elif dport == 25 and payload.upper().startswith(b"DATA"):
            state[key] = "data_cmd"
        elif dport == 25 and st in ("data_cmd", "data") and payload:
            if st == "data" and not payload.endswith(b"\r\n.\r\n"):
                found["in_data"].append(i)
            state[key] = "data" if not payload.endswith(b"\r\n.\r\n") else "open"
    return found


def simulate(out: Path, *scenarios: str, seed: int = 3, duration: str = "10m") -> Path:
    """A capture made by `sensor simulate`."""
    done = sensor("simulate", *scenarios, "--seed", str(seed), "--duration", duration,
                  "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def environ_without_dask_config() -> dict[str, str]:
    """The environment for CLI runs (no user Dask configuration leaks in)."""
    env = dict(os.environ)
    env.pop("DASK_CONFIG", None)
    return env
