"""One Dask task: analyse one file of a rotated archive, reading on for the flows it leaves open.

The task is pure: the same arguments give the same result, so that Dask may run it again on
another worker when one dies. docs/scaling.md ("Archives on Dask") describes the stitching.
"""

from __future__ import annotations

import copyreg
import gc
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from sensor.capture.source import open_files
from sensor.decode.packet import DecodeLimits, Segment
from sensor.parallel import Item, WorkerWants, line_formatters
from sensor.pipeline import Pipeline, RunTotals, no_streams
from sensor.records import (
    Attachment,
    AuthAttempt,
    CaptureStats,
    ConnRecord,
    MailTransaction,
    Recipient,
    SmtpSession,
    TcpStats,
)
from sensor.tcp.conn import ACK, SYN

if TYPE_CHECKING:
    from sensor.tcp.reassembler import Reassembler, TcpLimits

FlowKey = tuple[bytes, int, bytes, int]
"""A connection's 4-tuple, the same for both directions: the lower (address, port) first."""
Claims = dict[FlowKey, int]
"""Flows of one file whose first packets belong to a connection an earlier task carries: flow
-> 1-based frame index in that file of its first packet the carrier does not take (ALL: none)."""

ALL: Final = 1 << 62
"""A claim on every packet of the flow in the file."""
FILE_SHIFT: Final = 40
"""Merge positions are file index << FILE_SHIFT | frame index within the file."""
GC_YOUNG_THRESHOLD: Final = 500_000
"""Young-generation threshold of the cyclic collector in a worker, as sensor.cli._tune_gc sets it
for one process: the packet loop's short-lived tuples otherwise trigger collections that find
nothing (10-15% of a task)."""
_IP4_NO_OPTIONS: Final = b"\x08\x00\x45"  # Ethernet type IPv4, version 4, header of 20 bytes
PORT_PREFILTER_MAX: Final = 16
"""While reading on, frames are searched for the carried flows' ports before being decoded, as
long as no more flows than this are carried (beyond, every frame is decoded)."""


WIRE_RECORDS: Final = (ConnRecord, SmtpSession, MailTransaction, Recipient, Attachment, AuthAttempt)
"""Record classes a task sends back when the client runs detection."""


def _reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """Pickle an instance of the frozen dataclass `cls` as a call of `cls` on its field values."""
    names = [f.name for f in fields(cls)]
    values = attrgetter(*names)
    return lambda obj: (cls, values(obj))


def register_reducers() -> None:
    """Pickle the records a task sends as constructor calls: a frozen slotted dataclass pickles
    through dataclasses' __getstate__/__setstate__, which list the fields on every call (about
    120 us per record, dumped and loaded, nested objects included); a call on the field values
    costs a tenth of that. Only the pickling side needs this; unpickling calls the class."""
    for cls in WIRE_RECORDS:
        copyreg.pickle(cls, _reducer(cls))


register_reducers()  # in the client and in every worker: both import this module


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What every task of one run shares."""

    paths: tuple[str, ...]
    """The archive's readable files in reading order (by first packet time)."""
    bpf: str
    ports: tuple[int, ...]
    wants: WorkerWants
    """What to produce; its decode_limits travel in `decode` instead."""
    limits: TcpLimits
    decode: tuple[int, int] | None = None
    """DecodeLimits' fields (max_vlan_tags, max_ip6_ext_headers): the compiled frozen
    dataclass does not unpickle in a worker."""

    @classmethod
    def of(cls, paths: tuple[str, ...], bpf: str, ports: tuple[int, ...], wants: WorkerWants,
           limits: TcpLimits) -> TaskSpec:
        """The spec, with `wants.decode_limits` made picklable."""
        d = wants.decode_limits
        decode = None if d is None else (d.max_vlan_tags, d.max_ip6_ext_headers)
        return cls(paths, bpf, ports, replace(wants, decode_limits=None), limits, decode)

    def decode_limits(self) -> DecodeLimits | None:
        """The run's DecodeLimits, rebuilt in the worker."""
        return None if self.decode is None else DecodeLimits(*self.decode)


@dataclass(slots=True)
class TaskResult:
    """What one task sends back: records with their merge keys, claims, counters."""

    index: int
    items: list[Item]
    skipped: Claims | None
    """The flows this task left to earlier tasks, guessed (None when it was given the claims)."""
    claims: dict[int, Claims]
    """file index -> flows of that later file whose packets this task took (read-on)."""
    capture_stats: CaptureStats
    tcp_stats: TcpStats
    totals: RunTotals
    read_on_frames: int = 0
    """Frames of later files this task read to finish the connections open at its end."""
    errors: list[tuple[str, str]] = field(default_factory=list)


def flow_key(seg: Segment) -> FlowKey:
    """The direction-free key of a segment's connection."""
    src, dst, sport, dport = seg[0], seg[1], seg[2], seg[3]
    if (src, sport) <= (dst, dport):
        return (src, sport, dst, dport)
    return (dst, dport, src, sport)


def run_task(spec: TaskSpec, index: int, claims: Claims | None) -> TaskResult:
    """Analyse file `index` of `spec.paths`, then read on until its connections have ended.

    `claims`: the flows of this file that earlier tasks carry (exact); None: guess them (a flow
    whose first packet in this file is not a bare SYN is left to an earlier task) and report
    the guess in `skipped`, which the client checks against the earlier tasks' claims.
    """
    if gc.get_threshold()[0] < GC_YOUNG_THRESHOLD:  # once per worker process
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
    wants = spec.wants
    items: list[Item] = []
    seq = itertools.count()
    position = [index << FILE_SHIFT]  # where in the archive the pipeline stands
    at_end = [False]  # records of the final flush are ordered by start time
    conn_dict, session_dict, to_line = line_formatters(wants)

    def on_conn(rec: ConnRecord) -> None:
        line = to_line(conn_dict(rec)) if wants.conn_lines else None
        end = rec.ts if at_end[0] else reasm.emit_deadline
        items.append((position[0], end, index, next(seq), 0,
                      line, rec if wants.conn_records else None))  # fmt: skip

    def on_session(s: SmtpSession) -> None:
        line = to_line(session_dict(s)) if wants.session_lines else None
        end = s.ts if at_end[0] else reasm.emit_deadline
        items.append((position[0], end, index, next(seq), 1,
                      line, s if wants.session_records else None))  # fmt: skip

    conns_wanted = wants.conn_lines or wants.conn_records
    sessions_wanted = wants.session_lines or wants.session_records
    pipe = Pipeline(
        ports=spec.ports,
        on_conn=on_conn if conns_wanted else None,
        on_session=on_session if sessions_wanted else None,
        tcp_limits=spec.limits,
        handlers=None if wants.smtp else no_streams,
        smtp_limits=wants.smtp_limits,
        decode_limits=spec.decode_limits(),
    )
    reasm = pipe.reassembler
    errors: list[tuple[str, str]] = []

    def on_error(path: str, reason: str) -> None:
        errors.append((path, reason))

    frames = open_files([spec.paths[index]], spec.bpf, pipe.capture_stats, on_error)
    skipped = _own_file(pipe, frames, index, claims, position)
    # The decoder counts into the pipeline's capture counters: keep those of this file only.
    own = replace(pipe.capture_stats, truncated_files=dict(pipe.capture_stats.truncated_files))
    result = TaskResult(index, items, skipped, {}, own, pipe.tcp_stats, pipe.totals,
                        errors=errors)  # fmt: skip
    for later in range(index + 1, len(spec.paths)):
        if not len(reasm):
            break
        stats = CaptureStats()  # later files are counted, and their errors told, by their task
        frames = open_files([spec.paths[later]], spec.bpf, stats, _silent)
        taken, read = _read_on(pipe, frames, later, position, frozenset(spec.ports))
        result.read_on_frames += read
        if taken:
            result.claims[later] = taken
    if len(reasm):
        position[0] = len(spec.paths) << FILE_SHIFT
        at_end[0] = True
    pipe.finish()
    return result


def _silent(path: str, reason: str) -> None:
    """Errors of a later file read on: its own task reports them."""


def _own_file(
    pipe: Pipeline,
    frames: Iterator[tuple[float, int, bytes]],
    index: int,
    claims: Claims | None,
    position: list[int],
) -> Claims | None:
    """Feed this task's file, leaving the claimed (or guessed) flows' first packets out; every
    decoded segment keeps the expiry clock. Returns the guess (None when claims were given)."""
    decoder = pipe.decoder
    reasm = pipe.reassembler
    base = index << FILE_SHIFT
    guessed: Claims | None = {} if claims is None else None
    owned: dict[FlowKey, bool] = {}  # guessing: flow -> fed (False: left to an earlier task)
    first = pipe.totals.first_ts
    ts = 0.0
    n = 0
    for ts, linktype, data in frames:
        n += 1
        seg = decoder.decode(linktype, data)
        if seg is None:
            continue
        if first is None:
            first = pipe.totals.first_ts = ts
        if not reasm.has_flow(seg[0], seg[2], seg[1], seg[3]):
            key = flow_key(seg)
            if guessed is None:
                assert claims is not None
                feed = n >= claims.get(key, 0)
            else:
                fed = owned.get(key)
                bare_syn = seg[6] & (SYN | ACK) == SYN
                if fed is None:
                    fed = owned[key] = bare_syn
                    if not bare_syn:
                        guessed[key] = ALL
                elif not fed and bare_syn:  # a new connection on the 4-tuple: ours from here
                    fed = owned[key] = True
                    guessed[key] = n
                feed = fed
            if not feed:
                if ts >= reasm.next_expiry_check:
                    position[0] = base | n
                    reasm.expire(ts)
                continue
        position[0] = base | n
        reasm.segment(ts, seg)
    if first is not None and (pipe.totals.last_ts is None or ts > pipe.totals.last_ts):
        pipe.totals.last_ts = ts
    return guessed


def _read_on(
    pipe: Pipeline,
    frames: Iterator[tuple[float, int, bytes]],
    index: int,
    position: list[int],
    servers: frozenset[int],
) -> tuple[Claims, int]:
    """Feed the packets of a later file that belong to the connections still in the table, until
    none is left; the others only keep the clock. Returns the claims on that file and the frames
    read.

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
            position[0] = base | n
            taken.setdefault(flow_key(seg), ALL)
            reasm.segment(ts, seg)
        else:
            key = flow_key(seg)
            if taken.get(key) == ALL:
                taken[key] = n  # the carried connection is gone: the rest is the owner's
            if ts < check:
                continue
            position[0] = base | n
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
