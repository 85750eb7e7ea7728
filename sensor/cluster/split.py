"""Cut a classic pcap file into parts at record boundaries, as `tcpdump -C` or `-G` rotates."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import Final

from sensor.errors import CaptureError

PCAP_HEADER: Final = 24
RECORD_HEADER: Final = 16
_MAGICS: Final = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
                  b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}  # fmt: skip


def _records(path: str) -> tuple[bytes, Iterator[bytes]]:
    """The file header and an iterator over its records (header and data, raw)."""
    fh = open(path, "rb")  # noqa: SIM115 - closed by the iterator
    head = fh.read(PCAP_HEADER)
    order = _MAGICS.get(head[:4])
    if len(head) < PCAP_HEADER or order is None:
        fh.close()
        raise CaptureError(f"{path}: not a classic pcap file")
    rec = struct.Struct(order + "IIII")

    def records() -> Iterator[bytes]:
        with fh:
            while True:
                rh = fh.read(RECORD_HEADER)
                if len(rh) < RECORD_HEADER:
                    return
                caplen = rec.unpack(rh)[2]
                yield rh + fh.read(caplen)

    return head, records()


def split_at(path: str, cuts: Sequence[int], out_dir: str, stem: str = "part") -> list[str]:
    """Cut `path` before each 0-based record index of `cuts`; returns the parts' paths."""
    head, records = _records(path)
    wanted = sorted(set(cuts))
    parts: list[str] = []
    out = None
    try:
        for n, raw in enumerate(records):
            if out is None or (wanted and n >= wanted[0]):
                while wanted and n >= wanted[0]:
                    wanted.pop(0)
                if out is not None:
                    out.close()
                parts.append(os.path.join(out_dir, f"{stem}{len(parts):05d}.pcap"))
                out = open(parts[-1], "wb")  # noqa: SIM115 - closed below
                out.write(head)
            out.write(raw)
    finally:
        if out is not None:
            out.close()
    return parts


def split_by_size(path: str, max_bytes: int, out_dir: str, stem: str = "part") -> list[str]:
    """Cut `path` into parts of at most about `max_bytes` each (tcpdump -C); returns their paths."""
    head, records = _records(path)
    parts: list[str] = []
    out = None
    size = 0
    try:
        for raw in records:
            if out is None or size + len(raw) > max_bytes:
                if out is not None:
                    out.close()
                parts.append(os.path.join(out_dir, f"{stem}{len(parts):05d}.pcap"))
                out = open(parts[-1], "wb")  # noqa: SIM115 - closed below
                out.write(head)
                size = PCAP_HEADER
            out.write(raw)
            size += len(raw)
    finally:
        if out is not None:
            out.close()
    return parts
