"""Reads Wireshark's view of a capture through tshark, for parity tests."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

_CONV_ROW = re.compile(
    r"^(?P<a>\S+):(?P<pa>\d+)\s+<->\s+(?P<b>\S+):(?P<pb>\d+)\s+"
    r"(?P<f_ba>\d+)\s+(?P<b_ba>[\d,]+ \S+)\s+(?P<f_ab>\d+)\s+(?P<b_ab>[\d,]+ \S+)\s+"
)


def _run(args: list[str]) -> str:
    out = subprocess.run(["tshark", *args], capture_output=True, text=True, check=True)
    return out.stdout


@dataclass(frozen=True)
class ConvRow:
    """One row of `tshark -q -z conv,tcp`: endpoint A, endpoint B, frames and bytes each way."""

    a: tuple[str, int]
    b: tuple[str, int]
    frames_a_to_b: int
    bytes_a_to_b: str
    frames_b_to_a: int
    bytes_b_to_a: str


def conv_tcp(path: str) -> list[ConvRow]:
    """The TCP conversation table as tshark prints it (byte columns kept as printed)."""
    rows = []
    for line in _run(["-r", path, "-q", "-z", "conv,tcp"]).splitlines():
        m = _CONV_ROW.match(line.strip())
        if m:
            rows.append(
                ConvRow(
                    (m["a"], int(m["pa"])),
                    (m["b"], int(m["pb"])),
                    int(m["f_ab"]),
                    m["b_ab"],
                    int(m["f_ba"]),
                    m["b_ba"],
                )
            )
    return rows


def _fields(
    path: str, display_filter: str, extra: list[str]
) -> list[tuple[tuple[str, int, str, int], list[str]]]:
    """Per TCP packet matching the filter: its innermost 4-tuple and the `extra` fields."""
    cols = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport", *extra]
    args = ["-r", path, "-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    text = _run(args + [a for c in cols for a in ("-e", c)])
    out = []
    for line in text.splitlines():
        f = line.split("|")
        if len(f) < len(cols) or not f[2] or not f[5]:
            continue
        # Tunnelled packets list several addresses; the innermost is the last one.
        src = (f[0] or f[1]).split(",")[-1]
        dst = (f[3] or f[4]).split(",")[-1]
        key = (src, int(f[2].split(",")[-1]), dst, int(f[5].split(",")[-1]))
        out.append((key, f[6:]))
    return out


def exact_frame_bytes(path: str) -> dict[tuple[str, int, str, int], tuple[int, int]]:
    """Per direction (src, sport, dst, dport): (frames, sum of frame.len), exactly."""
    out: dict[tuple[str, int, str, int], tuple[int, int]] = {}
    for key, (flen,) in _fields(path, "tcp and not icmp and not icmpv6", ["frame.len"]):
        frames, nbytes = out.get(key, (0, 0))
        out[key] = (frames + 1, nbytes + int(flen))
    return out


def wireshark_size(n: int) -> str:
    """A byte count rendered as tshark 4.0's conversation table renders it."""
    if n < 10_000:
        return f"{n} bytes"
    return f"{n // 1000} kB"


def follow_raw(path: str, stream: int) -> tuple[tuple[str, int], bytes, bytes]:
    """`follow,tcp,raw,N`: (node 0 endpoint, bytes sent by node 0, bytes sent by node 1)."""
    text = _run(["-r", path, "-q", "-z", f"follow,tcp,raw,{stream}"])
    node0: tuple[str, int] | None = None
    sent0, sent1 = bytearray(), bytearray()
    for line in text.splitlines():
        if line.startswith("Node 0: "):
            host, _, port = line[8:].rpartition(":")
            node0 = (host.strip("[]"), int(port))
        elif re.fullmatch(r"\t[0-9a-f]+", line):
            sent1 += bytes.fromhex(line[1:])
        elif re.fullmatch(r"[0-9a-f]+", line):
            sent0 += bytes.fromhex(line)
    if node0 is None:
        raise ValueError(f"tshark follow output for stream {stream} of {path} has no Node 0")
    return node0, bytes(sent0), bytes(sent1)


def stream_ids(path: str, port: int = 25) -> dict[tuple[str, int, str, int], int]:
    """tshark's tcp.stream index of each connection touching `port`, keyed by first-seen 4-tuple."""
    out: dict[tuple[str, int, str, int], int] = {}
    for key, (stream,) in _fields(path, f"tcp.port == {port}", ["tcp.stream"]):
        rev = (key[2], key[3], key[0], key[1])
        if stream and key not in out and rev not in out:
            out[key] = int(stream.split(",")[-1])
    return out
