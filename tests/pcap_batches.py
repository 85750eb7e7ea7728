"""Frames packed as pcapy's next_batch returns a live capture's batch (for the batch tests)."""

from __future__ import annotations

import struct
from typing import Final

META: Final = struct.Struct("=IIII")
"""Per frame: sec, usec, offset into the packets, caplen (native byte order)."""


def pack(frames: list[tuple[int, int, bytes]]) -> tuple[bytes, bytes]:
    """(packets, meta) as pcapy's next_batch returns them, from (sec, usec, frame) triples."""
    packets = bytearray()
    meta = bytearray()
    for sec, usec, data in frames:
        meta += META.pack(sec, usec, len(packets), len(data))
        packets += data
    return bytes(packets), bytes(meta)


def sec_usec(ts: float) -> tuple[int, int]:
    """A packet time as a batch's metadata carries it: whole seconds and microseconds."""
    sec = int(ts)
    return sec, min(999_999, round((ts - sec) * 1e6))
