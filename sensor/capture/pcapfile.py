"""Pure-Python reader of classic pcap files: both byte orders, µs and ns, truncation counted."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from sensor.capture.common import (
    DEFAULT_MAX_CAPLEN,
    PCAP_HEADER_LEN,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    READ_CHUNK_BYTES,
    Cut,
    Frame,
    Readable,
    count_truncated_tail,
    mark_truncated,
    refill,
    remaining_bytes,
)
from sensor.records import CaptureStats

_REC_LEN = 16
_LINKTYPE_MASK = 0x0FFFFFFF  # upper bits of the header's link-type field carry FCS information


class PcapHeaderError(ValueError):
    """The 24-byte file header is missing, short or carries an unknown magic."""


def parse_header(hdr: bytes) -> tuple[str, float, int]:
    """(struct byte-order prefix, fraction scale, link type) from a classic pcap file header."""
    if len(hdr) < PCAP_HEADER_LEN:
        raise PcapHeaderError(f"truncated pcap file header ({len(hdr)} of {PCAP_HEADER_LEN} bytes)")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", hdr, 0)
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            (linktype,) = struct.unpack_from(order + "I", hdr, 20)
            scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
            return order, scale, linktype & _LINKTYPE_MASK
    raise PcapHeaderError("not a classic pcap file")


def read_pcap(
    fh: Readable,
    stats: CaptureStats,
    max_caplen: int = DEFAULT_MAX_CAPLEN,
    chunk_bytes: int = READ_CHUNK_BYTES,
    cut: Cut | None = None,
) -> Iterator[Frame]:
    """Yield every record of an open classic pcap file; count truncation and corruption in stats.

    Records are read whole whatever the header's snap length says (as tshark does), up to
    `max_caplen`. A record claiming more is counted in stats.oversized_records; the format has
    no other way to find the next record, so the rest of the file is skipped and the file is
    counted as truncated, with what was skipped in `cut`.
    """
    try:
        order, scale, linktype = parse_header(fh.read(PCAP_HEADER_LEN))
    except PcapHeaderError:
        stats.malformed += 1
        return
    unpack_rec = struct.Struct(order + "IIII").unpack_from
    buf = b""
    pos = 0
    eof = False
    index = 0  # records yielded so far
    base = PCAP_HEADER_LEN  # file offset of buf[0]
    while True:
        end = len(buf)
        # Yield every complete record in the buffer.
        while pos + _REC_LEN <= end:
            sec, frac, caplen, _orig = unpack_rec(buf, pos)
            if caplen > max_caplen:
                stats.oversized_records += 1
                rest = end - pos + remaining_bytes(fh, chunk_bytes)
                mark_truncated(
                    stats,
                    cut,
                    f"record {index + 1} at byte {base + pos} claims {caplen} captured bytes "
                    f"(more than {max_caplen}): the {rest} bytes from there to the end "
                    "were skipped",
                )
                return
            start = pos + _REC_LEN
            stop = start + caplen
            if stop > end:
                break
            pos = stop
            index += 1
            yield (sec + frac * scale, linktype, buf[start:stop])
        if eof:
            count_truncated_tail(stats, end - pos, cut, index + 1)
            return
        need = chunk_bytes
        if pos + _REC_LEN <= end:
            need = max(chunk_bytes, _REC_LEN + unpack_rec(buf, pos)[2] - (end - pos))
        base += pos
        buf, eof = refill(fh, buf, pos, need)
        pos = 0
