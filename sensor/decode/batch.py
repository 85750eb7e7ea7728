"""One libpcap batch (pcapy's next_batch: frames back to back, 16 bytes of metadata each)
decoded and fed to the reassembler: the per-packet path of a live capture.

`feed` is the C loop of sensor/decode/_batch.c when it is built, else `feed_py`, its Python
reading and the reference it is tested against. Both return (fast, first_ts, last_ts): the
segments built without the Python decoder (the caller adds them to
CaptureStats.tcp_segments, which the decoder counts for the rest), the time of the first frame
that gave a segment and that of the last frame (None when there is none).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from sensor.decode.packet import Segment

Decode = Callable[[int, bytes], Segment | None]
Feed = Callable[[float, Segment], None]
Fed = tuple[int, float | None, float | None]

_iter_meta: Final = struct.Struct("=IIII").iter_unpack  # sec, usec, offset, caplen (native)


def feed_py(packets: bytes, meta: bytes, linktype: int, decode: Decode, segment: Feed,
            keyed: bool = False, owner: int = 0) -> Fed:  # fmt: skip
    """Each frame of the batch through `decode`, each segment to `segment(ts, seg)` (`keyed`:
    the C loop passes the flow key it made as a third argument, and the half table `owner`
    bound it to as a fourth; here there are none to pass)."""
    first: float | None = None
    ts: float | None = None
    for sec, usec, off, caplen in _iter_meta(meta):
        ts = sec + usec * 1e-6
        seg = decode(linktype, packets[off : off + caplen])
        if seg is not None:
            segment(ts, seg)
            if first is None:
                first = ts
    return 0, first, ts


try:  # the C loop (sensor/decode/_batch.c), built beside the compiled modules
    from sensor.decode import _batch

    feed: Callable[[bytes, bytes, int, Decode, Feed, bool, int], Fed] = _batch.feed
except ImportError:  # pure-Python install: the same results, slower
    feed = feed_py

NATIVE_FEED: Final = feed is not feed_py
