"""The per-frame loops of a Dask task (sensor.cluster.task): its own file, and the read-on into
later files; compiled by mypyc, as the pipeline's loop is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from sensor.decode.packet import Segment
from sensor.pipeline import Pipeline
from sensor.tcp.conn import ACK, SYN
from sensor.tcp.reassembler import Reassembler

FlowKey = tuple[bytes, int, bytes, int]
"""A connection's 4-tuple, the same for both directions: the lower (address, port) first."""
Claims = dict[FlowKey, int]
"""Flows of one file whose first packets belong to a connection an earlier task carries: flow
-> 1-based frame index in that file of its first packet the carrier does not take (ALL: none)."""

ALL: Final = 1 << 62
"""A claim on every packet of the flow in the file."""
FILE_SHIFT: Final = 40
"""Merge positions are file index << FILE_SHIFT | frame index within the file."""
FRAME_MASK: Final = (1 << FILE_SHIFT) - 1
_IP4_NO_OPTIONS: Final = b"\x08\x00\x45"  # Ethernet type IPv4, version 4, header of 20 bytes
PORT_PREFILTER_MAX: Final = 16
"""While reading on, frames are searched for the carried flows' ports before being decoded, as
long as no more flows than this are carried (beyond, every frame is decoded)."""


def flow_key(seg: Segment) -> FlowKey:
    """The direction-free key of a segment's connection."""
    return _key(seg[0], seg[2], seg[1], seg[3])


def _key(src: bytes, sport: int, dst: bytes, dport: int) -> FlowKey:
    """The direction-free key of a connection from one direction's 4-tuple."""
    if (src, sport) <= (dst, dport):
        return (src, sport, dst, dport)
    return (dst, dport, src, sport)


def read_on(
    pipe: Pipeline,
    frames: Iterator[tuple[float, int, bytes]],
    index: int,
    servers: frozenset[int],
) -> tuple[Claims, int]:
    """Feed the packets of a later file that belong to the connections still in the table, until
    none is left; the others only keep the clock (`pipe.frame_index`: the merge position of the
    frame being fed). Returns the claims on that file and the frames read.

    A frame is decoded only if it may belong to a carried flow or may move the clock (its time
    reaches the next expiry pass): for untagged Ethernet frames of IPv4 without options or IPv6
    without extension headers, its port pair must be a carried flow's; for the others, one of
    the carried flows' client ports must be among its bytes.
    """
    decoder = pipe.decoder
    reasm = pipe.reassembler
    base = index << FILE_SHIFT
    taken: Claims = {}
    pairs, needles = _prefilter(reasm, servers)
    n = 0
    check = reasm.next_expiry_check  # read again after every call into the reassembler
    for ts, linktype, data in frames:
        n += 1
        if ts < check:
            if linktype == 1 and data[12:15] == _IP4_NO_OPTIONS:
                if data[34:38] not in pairs:
                    continue  # an IPv4 frame of another flow (or no TCP segment at all)
            elif linktype == 1 and data[12:14] == b"\x86\xdd" and data[20:21] == b"\x06":
                if data[54:58] not in pairs:
                    continue  # an IPv6 frame of another flow, TCP right behind its header
            elif needles is not None:
                for needle in needles:
                    if needle in data:
                        break
                else:
                    continue  # not a carried flow's, and too early to move the clock
        seg = decoder.decode(linktype, data)
        if seg is None:
            continue
        if reasm.has_flow(seg[0], seg[2], seg[1], seg[3]):
            pipe.frame_index = base | n
            taken.setdefault(flow_key(seg), ALL)
            reasm.segment(ts, seg)
        else:
            key = flow_key(seg)
            if taken.get(key) == ALL:
                taken[key] = n  # the carried connection is gone: the rest is the owner's
            if ts < check:
                continue
            pipe.frame_index = base | n
            reasm.expire(ts)
        if not len(reasm):
            return taken, n
        if reasm.next_expiry_check != check:  # an expiry pass ran: fewer flows to look for
            check = reasm.next_expiry_check
            pairs, needles = _prefilter(reasm, servers)
    return taken, n


def _prefilter(
    reasm: Reassembler, servers: frozenset[int]
) -> tuple[frozenset[bytes], tuple[bytes, ...] | None]:
    """The carried connections' port pairs as a TCP header starts (source port, destination
    port), and their client ports as on the wire (None: too many to search
    frames for)."""
    pairs: set[bytes] = set()
    ports: set[bytes] = set()
    for _src, sport, _dst, dport in reasm.flow_keys():
        pairs.add(sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
        for port in (sport, dport):
            if port not in servers or (sport in servers and dport in servers):
                ports.add(port.to_bytes(2, "big"))
    return frozenset(pairs), (tuple(ports) if len(ports) <= PORT_PREFILTER_MAX else None)


class _Admit:
    """Which flows of a task's own file it feeds (the reassembler's Admit): those the claims
    leave it, or, without claims, those whose first packet in the file is a bare SYN (and a
    flow's packets from a bare SYN that reuses its 4-tuple on); the guess is kept in
    `guessed`."""

    def __init__(self, pipe: Pipeline, claims: Claims | None) -> None:
        self.pipe = pipe
        self.claims = claims
        self.guessed: Claims = {}
        self.owned: dict[FlowKey, bool] = {}  # guessing: flow -> fed (False: an earlier task's)

    def __call__(self, src: bytes, sport: int, dst: bytes, dport: int, flags: int) -> bool:
        key = _key(src, sport, dst, dport)
        n = self.pipe.frame_index & FRAME_MASK
        claims = self.claims
        if claims is not None:
            return n >= claims.get(key, 0)
        fed = self.owned.get(key)
        bare_syn = flags & (SYN | ACK) == SYN
        if fed is None:
            fed = self.owned[key] = bare_syn
            if not bare_syn:
                self.guessed[key] = ALL
        elif not fed and bare_syn:  # a new connection on the 4-tuple: ours from here
            fed = self.owned[key] = True
            self.guessed[key] = n
        return fed


def own_file(
    pipe: Pipeline,
    frames: Iterator[tuple[float, int, bytes]],
    index: int,
    claims: Claims | None,
) -> Claims | None:
    """Feed this task's file, leaving the claimed (or guessed) flows' packets out (they still
    move the expiry clock); `pipe.frame_index` holds the merge position of the frame being
    fed. Returns the guess (None when claims were given).

    The loop is Pipeline.run's: the claims are consulted by the reassembler, only for segments
    of flows not in its table, not by a lookup per packet here."""
    decoder = pipe.decoder
    reasm = pipe.reassembler
    admit = None if claims is not None and not claims else _Admit(pipe, claims)
    reasm.admit = admit
    first = pipe.totals.first_ts
    ts = 0.0
    n = index << FILE_SHIFT
    try:
        for ts, linktype, data in frames:
            n += 1
            seg = decoder.decode(linktype, data)
            if seg is not None:
                pipe.frame_index = n
                reasm.segment(ts, seg)
                if first is None:
                    first = pipe.totals.first_ts = ts
    finally:
        reasm.admit = None
    if first is not None and (pipe.totals.last_ts is None or ts > pipe.totals.last_ts):
        pipe.totals.last_ts = ts
    return None if claims is not None or admit is None else admit.guessed
