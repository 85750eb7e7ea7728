"""TCP reassembly for all connections: lookup, fast path, lifecycle, timeouts, caps and records."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

from sensor.decode.packet import Segment
from sensor.records import ConnRecord, TcpStats
from sensor.tcp.conn import ACK, FIN, RST, SYN, Connection, EndReason, Phase, make_uid
from sensor.tcp.deadlines import Deadlines
from sensor.tcp.stream import (
    KEPT_COST,
    SEQ_HALF,
    SEQ_MASK,
    Budget,
    EndpointState,
    Half,
    StreamSink,
    seq_diff,
)

_FAST_FLAGS_MASK: Final = SYN | FIN | RST | ACK  # the fast path takes ACK set, SYN/FIN/RST clear
# One int object per port for the tuple keys of a pure-Python install: boxing a port for a key
# made a new object per packet for every port above 256 (each client's ephemeral one), which
# the lookup then compared by value with the key stored at creation.
_PORT_OBJECTS: Final[list[object]] = list(range(65536))
FlowKey = Hashable
"""The sender's (source address, source port, destination address, destination port), as
sensor/decode/_batch.c's FlowKey where it is built (its hash computed once, and the same key
object for a 4-tuple seen lately, from the batch loop or from flow_key), else as a tuple.
Iterated, either gives the four fields."""

_c_flow_key: Callable[[bytes, int, bytes, int], Hashable] | None
_bind: Callable[[Hashable, int, Half], None] | None
_unbind: Callable[[Hashable, int], None] | None
try:  # the C keys (sensor/decode/_batch.c), built beside the compiled modules
    from sensor.decode import _batch

    _c_flow_key = _batch.flow_key
    _bind = _batch.bind
    _unbind = _batch.unbind
except ImportError:  # pure-Python install: tuples
    _c_flow_key = _bind = _unbind = None
C_KEYS: Final = _c_flow_key is not None
"""Whether the keys are FlowKeys: then the C batch loop passes segment() the key it made, and
the half a table bound that key to (Reassembler.owner)."""
_OWNERS: Final = itertools.count(1)


def flow_key(src: bytes, sport: int, dst: bytes, dport: int) -> FlowKey:
    """The flow table's key of a segment from (src, sport) to (dst, dport)."""
    if (_c_flow_key is not None and 0 <= sport < 65536 and 0 <= dport < 65536
            and len(src) <= 16 and len(dst) <= 16):  # fmt: skip
        return _c_flow_key(src, sport, dst, dport)
    return (  # what a FlowKey cannot hold (never decoded) is a tuple, equal to no FlowKey
        src, _PORT_OBJECTS[sport] if 0 <= sport < 65536 else sport,
        dst, _PORT_OBJECTS[dport] if 0 <= dport < 65536 else dport,
    )  # fmt: skip


def key_fields(key: FlowKey) -> tuple[bytes, int, bytes, int]:
    """(src, sport, dst, dport) of a flow_key."""
    src, sport, dst, dport = cast(Iterable[Any], key)
    return src, int(sport), dst, int(dport)


# module constants: cheaper than enum attribute lookups
_OPEN: Final = Phase.OPEN
_CLOSING: Final = Phase.CLOSING
_CLOSED: Final = Phase.CLOSED

__all__ = ["HandlerFactory", "Reassembler", "StreamHandler", "TcpLimits", "make_uid"]


class StreamHandler(Protocol):
    """Receives one connection's in-order bytes per direction, its gaps, and its end."""

    def data(self, to_server: bool, ts: float, payload: bytes) -> None: ...

    def gap(self, to_server: bool, ts: float, n: int) -> None: ...

    def close(self, ts: float, record: ConnRecord) -> None: ...


class _Wrapped(StreamSink):
    """A StreamHandler of a class not compiled with the reassembler, called through Python."""

    def __init__(self, handler: StreamHandler) -> None:
        self.handler = handler

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        self.handler.data(to_server, ts, payload)

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        self.handler.gap(to_server, ts, n)

    def close(self, ts: float, record: ConnRecord) -> None:
        self.handler.close(ts, record)


HandlerFactory = Callable[[str, float, str, int, str, int, bool], StreamHandler | None]
Admit = Callable[[bytes, int, bytes, int, int], bool]
"""Asked (src, sport, dst, dport, flags) for a segment on a 4-tuple the table does not hold:
False leaves the segment out, as if it had not been captured (it still moves the expiry clock)."""
"""factory(uid, ts, client_ip, client_port, server_ip, server_port, midstream), once per
connection, when its first payload byte arrives: a flow that never carries one (a SYN flood)
gets no handler, and its ConnRecord only goes to on_record. midstream is True when no SYN was
seen either way (the connection was picked up mid-stream)."""


DEFAULT_SERVER_PORTS: Final = frozenset({25, 587})  # smtp (RFC 5321), submission (RFC 6409)
CONN_BYTES: Final = 1700
"""Estimated memory of one connection without its handler: the Connection, both Halves, the
two flow-table entries and keys, its deadline-heap slot and history (measured with tracemalloc
on a SYN-only flood, 64-bit CPython 3.11; tests/tcp/test_memcap.py keeps it honest)."""


@dataclass(slots=True)
class TcpLimits:
    """Every bound of the reassembly stage; memory stays bounded whatever the input."""

    max_connections: int = 262144  # table entries, closed ones lingering included (LRU beyond)
    max_ooo_bytes_per_dir: int = 1 << 20  # bytes buffered out of order per direction
    max_ooo_chunks_per_dir: int = 4096  # separate out-of-order chunks per direction
    max_total_bytes: int = 64 << 20  # bytes buffered across all connections
    idle_timeout_s: float = 300.0  # packet time without a packet before a connection ends
    closed_linger_s: float = 5.0  # after FIN/RST: time to wait for stragglers before the record
    expire_interval_s: float = 1.0  # packet time between two expiry passes
    max_ack_gap: int = 1 << 24  # largest tail gap inferred from the peer's ACK at the end
    rexmit_segments: int = 2  # delivered segments kept per direction to compare rexmits; 0: off
    memcap_bytes: int = 128 << 20  # estimated state of all connections (CONN_BYTES each,
    # handler_bytes per handler, buffered and kept bytes): room made as _evict_one says
    handler_bytes: int = 0  # estimated memory of one stream handler, for the memcap (not a cap)
    half_open_share: float = 0.25  # of the memcap (and max_connections) that connections with
    # no payload yet may hold before room is made from them first (a SYN flood's); below it,
    # room comes from the least recently active connection

    def split(self, workers: int) -> TcpLimits:
        """The share of one of `workers` flow-split workers: every global cap divided by it."""
        return TcpLimits(
            max_connections=max(1, self.max_connections // workers),
            max_ooo_bytes_per_dir=self.max_ooo_bytes_per_dir,
            max_ooo_chunks_per_dir=self.max_ooo_chunks_per_dir,
            max_total_bytes=max(1, self.max_total_bytes // workers),
            idle_timeout_s=self.idle_timeout_s,
            closed_linger_s=self.closed_linger_s,
            expire_interval_s=self.expire_interval_s,
            max_ack_gap=self.max_ack_gap,
            rexmit_segments=self.rexmit_segments,
            memcap_bytes=max(1, self.memcap_bytes // workers),
            handler_bytes=self.handler_bytes,
            half_open_share=self.half_open_share,
        )


_RELEASED: Final = Connection(0.0, (b"", 0), (b"", 0), Budget(TcpStats(), 0, 0, 0))
"""What the halves of a removed connection point at, in place of it."""


class Reassembler:
    """One connection per 4-tuple; feeds handlers in-order data and gaps, emits ConnRecords.

    The client is the sender of a SYN without ACK (the receiver of a SYN-ACK); without a SYN,
    the side not on a server port; when both or neither are, the side with the higher port
    (the lower port is taken as the service); on equal ports, the sender of the first packet.
    """

    __slots__ = (
        "_budget",
        "_closed",
        "_count",
        "_factory",
        "_flows",
        "_handlers",
        "_heap",
        "_kept_max",
        "_limits",
        "_max_ack_gap",
        "_next_check",
        "_on_record",
        "_server_ports",
        "_stats",
        "_stray",
        "_young",
        "_young_n",
        "admit",
        "emit_deadline",
        "owner",
    )

    def __init__(
        self,
        factory: HandlerFactory | None,
        stats: TcpStats,
        limits: TcpLimits | None = None,
        server_ports: frozenset[int] = DEFAULT_SERVER_PORTS,
        on_record: Callable[[ConnRecord], None] | None = None,
    ) -> None:
        self._factory = factory
        self._stats = stats
        self._limits = limits if limits is not None else TcpLimits()
        self._server_ports = server_ports
        self._on_record = on_record
        lim = self._limits
        self._budget = Budget(
            stats, lim.max_ooo_bytes_per_dir, lim.max_ooo_chunks_per_dir, lim.max_total_bytes
        )
        self._kept_max = lim.rexmit_segments
        self._max_ack_gap = lim.max_ack_gap
        self._flows: dict[FlowKey, Half] = {}  # sender 4-tuple (flow_key) -> its Half
        self._count = 0
        self._handlers = 0  # connections holding a handler
        # connections in creation order that carried no payload yet (evicted first), lazily
        # cleaned: an entry whose connection was wired or removed is skipped
        self._young: deque[Connection] = deque()
        self._young_n = 0  # connections in the table that carried no payload yet
        # connections opened by a segment with neither SYN nor payload (the last ACKs or FIN of
        # a connection already written out, mostly), lazily cleaned like _young
        self._stray: deque[Connection] = deque()
        # connections in the order they closed (FIN exchange or RST), waiting out their linger:
        # the first to go when room is needed; an entry whose connection was removed is skipped
        self._closed: deque[Connection] = deque()
        self._heap = Deadlines()  # every connection of the table, by its next deadline
        self._next_check = float("-inf")
        self.admit: Admit | None = None
        """Whether a segment may open a connection (None: every segment may); sensor.cluster's
        tasks leave out the connections an earlier file's task carries. Consulted only for
        segments of no connection in the table, so it costs the per-packet path nothing."""
        self.owner = next(_OWNERS)
        """This table's number for the FlowKeys it binds to its halves (never reused in a
        process): the C batch loop hands segment() a key's half only when this table bound it,
        so that another table in the process (a test's, a cluster task's) looks its own up."""
        self.emit_deadline = float("-inf")
        """While expire() emits a record: the deadline that ended it (the pass emits in deadline
        order); -inf otherwise. Runs that merge several reassemblers' records order by it."""

    # ------------------------------------------------------------------------------------
    # public API

    def segment(
        self, ts: float, seg: Segment, key: FlowKey | None = None, bound: Half | None = None
    ) -> None:
        """Process one decoded TCP segment (the per-packet hot path); `key`: its flow_key, when
        the caller has it (the C batch loop), and `bound`: the half this table bound that key
        to, which is the table's entry for it (no lookup then)."""
        src, dst, sport, dport, seq, ack, flags, window, ttl, options, payload, wire = seg
        h = bound
        if h is None:
            h = self._flows.get(flow_key(src, sport, dst, dport) if key is None else key)
            if h is not None and key is not None and _bind is not None:
                self._bind_extra(h, key)
        if h is not None and (flags & _FAST_FLAGS_MASK) == ACK and window:
            if len(payload):  # compiled: the size field, where truth is a call (PyObject_IsTrue)
                if h.fast and seq == h.next_seq:
                    if h.note_d:
                        c = h.conn
                        if not c.wired:
                            self._wire(c, ts)
                        c.first_fast(h, ts, "d")
                    h.conn.last_ts = ts
                    h.pkts += 1
                    h.wire += wire
                    if ack != h.last_ack:
                        self._fast_ack(h, ts, ack)
                    h.last_ack = ack
                    n = len(payload)
                    h.next_seq = (seq + n) & 0xFFFFFFFF
                    h.delivered += n
                    kept = h.kept  # Half.keep, inlined: this is most packets
                    if kept is not None:
                        kept.append(payload)
                        budget = h.budget
                        budget.kept += n + KEPT_COST
                        if len(kept) > self._kept_max:
                            budget.kept -= len(kept.pop(0)) + KEPT_COST  # pop(0): compiled
                    sink = h.sink
                    if sink is not None:
                        sink.data(h.to_server, ts, payload)
                    if ts >= self._next_check:
                        self.expire(ts)
                    return
            elif h.fast:
                if h.note_a:
                    h.conn.first_fast(h, ts, "a")
                h.conn.last_ts = ts
                h.pkts += 1
                h.wire += wire
                last = h.last_ack
                if ack != last:  # _fast_ack, inlined for the pure ACK that acks all it may
                    c = h.conn
                    moved = ((ack - last + SEQ_HALF) & SEQ_MASK) - SEQ_HALF
                    if (last >= 0 and 0 < moved <= self._max_ack_gap
                            and ack == (c.server if h is c.client else c.client).next_seq):
                        stats = self._stats
                        stats.acks += 1
                        stats.ack_bytes += moved
                    else:
                        self._ack_moved(h, ts, ack)
                h.last_ack = ack
                if ts >= self._next_check:
                    self.expire(ts)
                return
        self._slow(
            ts, h, src, dst, sport, dport, seq, ack, flags, window, ttl, options, payload, wire
        )
        # Here, not at the end of _slow: every segment moves the expiry clock, the ones _slow
        # returns early for (a straggler, an RST) included, as a flow-split worker that does not
        # own the segment moves it (a pass one packet later in one process than in the worker
        # reordered the merged records of that pass).
        if ts >= self._next_check:
            self.expire(ts)

    def expire(self, now: float) -> None:
        """End connections idle for idle_timeout_s and emit closed ones whose linger passed."""
        heap = self._heap
        while True:
            c = heap.first()
            if c is None or c.heap_deadline > now:
                break
            dl = c.heap_deadline
            real = self._deadline(c)
            if real > now:
                heap.schedule(c, real)
                continue
            heap.pop()
            self.emit_deadline = dl
            if c.phase == _CLOSED:
                self._emit(c, c.end_ts)
            elif c.phase == _CLOSING:
                self._finish(c, now, EndReason.FIN)
            else:
                self._stats.timed_out += 1
                self._finish(c, now, EndReason.TIMEOUT)
        self.emit_deadline = float("-inf")
        if self.memory() > self._limits.memcap_bytes:  # kept and buffered bytes grew
            self._enforce_memcap(now, None)
        # Passes fall on a grid of packet time (the first packet at or after each multiple of
        # the interval), not `now + interval`: the schedule then depends on no earlier packet,
        # so a run that starts mid-archive (sensor.cluster) expires at the same packets as one
        # that read everything before.
        step = self._limits.expire_interval_s
        self._next_check = (now // step + 1.0) * step if step > 0 else now

    def flush(self) -> None:
        """End of input: deliver everything buffered (with gaps) and emit every record."""
        for c in list(dict.fromkeys(h.conn for h in self._flows.values())):
            if c.removed:
                continue
            if c.phase == _CLOSED:
                self._emit(c, c.end_ts)
            else:
                self._stats.flushed_at_end += 1
                self._finish(c, c.last_ts, EndReason.EOF)
        self._heap.clear()
        self._young.clear()
        self._closed.clear()
        self._stray.clear()

    @property
    def next_expiry_check(self) -> float:
        """Packet time from which the next segment() runs expire() (flow-split workers read it)."""
        return self._next_check

    def has_flow(self, src: bytes, sport: int, dst: bytes, dport: int) -> bool:
        """Whether the table holds a connection on this 4-tuple (either direction)."""
        return flow_key(src, sport, dst, dport) in self._flows

    def flow_keys(self) -> list[tuple[bytes, int, bytes, int]]:
        """The (src, sport, dst, dport) keys of the table, both directions of each connection."""
        return [key_fields(key) for key in self._flows]

    def buffered_bytes(self) -> int:
        """Bytes currently held out of order, all connections together."""
        return self._budget.total

    def memory(self) -> int:
        """Estimated bytes of reassembly state, as the memcap counts them."""
        b = self._budget
        return (
            self._count * CONN_BYTES
            + self._handlers * self._limits.handler_bytes
            + b.total
            + b.kept
        )

    def kept_bytes(self) -> int:
        """Delivered bytes kept to compare retransmissions with, all connections together."""
        return sum(h.kept_bytes() for h in self._flows.values())

    def largest_buffer(self) -> int:
        """Bytes held out of order by the fullest single direction."""
        return max((h.ooo_bytes for h in self._flows.values()), default=0)

    def __len__(self) -> int:
        """Connections in the table (closed ones still lingering included)."""
        return self._count

    # ------------------------------------------------------------------------------------
    # everything off the fast path

    def _slow(
        self,
        ts: float,
        h: Half | None,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        ttl: int,
        options: bytes,
        payload: bytes,
        wire: int,
    ) -> None:
        seq &= SEQ_MASK
        if h is None:
            admit = self.admit
            if admit is not None and not admit(src, sport, dst, dport, flags):
                return
            h = self._create(ts, src, dst, sport, dport, flags)
            if not (flags & SYN or payload):
                self._stray.append(h.conn)
        elif flags & SYN and not flags & ACK and self._is_reuse(h, seq):
            old = h.conn
            if old.phase == _CLOSED:
                self._emit(old, old.end_ts)
            else:
                fin_seen = old.client.fin_rel >= 0 or old.server.fin_rel >= 0
                self._finish(old, ts, EndReason.FIN if fin_seen else EndReason.TIMEOUT)
            h = self._create(ts, src, dst, sport, dport, flags)
        c = h.conn
        c.last_ts = ts
        h.pkts += 1
        h.wire += wire
        n = len(payload)
        c.control(h, ts, seq, flags, window, ttl, options, n)
        if flags & ACK:
            ack &= SEQ_MASK
            if ack != h.last_ack:
                self._ack_moved(h, ts, ack)
            h.last_ack = ack
            peer = c.peer(h)
            if peer.starts:
                peer.acked(ts, ack, self._limits.max_ack_gap)
        if c.phase == _CLOSED:
            return  # a straggler: counted in the record, its bytes are not delivered
        if flags & SYN:
            h.start_syn(seq)
            seq = (seq + 1) & SEQ_MASK
        if flags & RST:
            self._close(c, ts, EndReason.RST)
            return
        if n:
            if not c.wired:
                self._wire(c, ts)
            h.accept(ts, seq, payload)
        if flags & FIN:
            h.set_fin(seq, n)
        if c.phase == _OPEN and c.client.fin_rel >= 0 and c.server.fin_rel >= 0:
            c.phase = _CLOSING
            c.closing_ts = ts
            self._heap.schedule(c, ts + self._limits.closed_linger_s)
        if (
            c.phase == _CLOSING
            and c.removed is False
            and c.client.fin_done()
            and c.server.fin_done()
            and _fin_acked(c.client, c.server)
            and _fin_acked(c.server, c.client)
        ):
            self._close(c, ts, EndReason.FIN)
        c.refresh_fast()

    def _bind_extra(self, h: Half, key: FlowKey) -> None:
        """The C batch loop made `key` anew for h's 4-tuple (the connection's own key left its
        cache, to another 4-tuple of the same slot), or another table bound it since: bind it to
        h, the one key of the kind per direction (the cache holds one key per 4-tuple, so an
        earlier one is never handed again)."""
        if _bind is None or _unbind is None:
            return
        owner = self.owner
        c = h.conn
        if not any(k is key for k in c.keys):
            old = h.extra_key
            if old is not None and old is not key:
                _unbind(old, owner)
            h.extra_key = key
        _bind(key, owner, h)

    def _fast_ack(self, h: Half, ts: float, ack: int) -> None:
        """`_ack_moved` for a fast-path segment: the common ACK (forward, all seen) counted here."""
        last = h.last_ack
        c = h.conn
        moved = ((ack - last + SEQ_HALF) & SEQ_MASK) - SEQ_HALF
        if (last >= 0 and 0 < moved <= self._max_ack_gap
                and ack == (c.server if h is c.client else c.client).next_seq):
            stats = self._stats
            stats.acks += 1
            stats.ack_bytes += moved
        else:
            self._ack_moved(h, ts, ack)

    def _ack_moved(self, h: Half, ts: float, ack: int) -> None:
        """h's endpoint sent a new acknowledgment number: count it if it moved forward, and the
        bytes it acknowledges that the capture never saw (the capture-loss estimate)."""
        stats = self._stats
        last = h.last_ack
        if last >= 0:
            moved = ((ack - last + SEQ_HALF) & SEQ_MASK) - SEQ_HALF  # seq_diff, inlined
            if moved <= 0:
                return  # an older ACK, reordered
            if moved <= self._limits.max_ack_gap:
                stats.ack_bytes += moved
        else:
            h.first_ack = ack
        stats.acks += 1
        c = h.conn
        p = c.server if h is c.client else c.client
        if ack == p.next_seq or p.next_seq < 0 or c.phase == _CLOSED:
            return  # all seen (most ACKs), nothing known, or a straggler after the close
        if not c.wired and p.fin_rel < 0 and seq_diff(ack, p.next_seq) > 0:
            self._wire(c, ts)  # bytes were sent (the banner?) and lost: the parser must know
        missing = p.ack_unseen(ts, ack, self._limits.max_ack_gap)
        if missing:
            stats.acks_unseen += 1
            stats.ack_unseen_bytes += missing

    def _is_reuse(self, h: Half, seq: int) -> bool:
        """A SYN (no ACK) that starts a new connection on this 4-tuple rather than repeats one."""
        c = h.conn
        new_isn = not h.syn_seen or h.isn != seq
        if c.phase != _OPEN or c.client.fin_rel >= 0 or c.server.fin_rel >= 0:
            return new_isn
        # a fresh attempt after a SYN nobody answered
        return h is c.client and h.syn_seen and new_isn and c.server.state == EndpointState.INACTIVE

    def _create(
        self, ts: float, src: bytes, dst: bytes, sport: int, dport: int, flags: int
    ) -> Half:
        lim = self._limits
        if self._count >= lim.max_connections:
            self._evict_one(ts, None, False)
        if self.memory() + CONN_BYTES > lim.memcap_bytes:
            self._enforce_memcap(ts, None, CONN_BYTES)
        ports = self._server_ports
        if flags & SYN:
            sender_is_client = not flags & ACK
        elif (dport in ports) != (sport in ports):
            sender_is_client = dport in ports
        else:
            sender_is_client = sport >= dport
        if sender_is_client:
            c = Connection(ts, (src, sport), (dst, dport), self._budget)
        else:
            c = Connection(ts, (dst, dport), (src, sport), self._budget)
        sender = c.client if sender_is_client else c.server
        key_s = flow_key(src, sport, dst, dport)
        key_r = flow_key(dst, dport, src, sport)
        self._flows[key_r] = c.peer(sender)
        self._flows[key_s] = sender  # on a 4-tuple equal to its reverse, the sender wins
        c.keys = (key_s, key_r)
        if _bind is not None:  # the same order: a key is bound to what the table maps it to
            _bind(key_r, self.owner, c.peer(sender))
            _bind(key_s, self.owner, sender)
        self._count += 1
        young = self._young
        young.append(c)
        self._young_n += 1
        count = self._count
        if len(young) > count + (count >> 2) + 1024:  # drop wired or removed connections
            self._young = deque(x for x in young if not (x.removed or x.wired))
        stray = self._stray
        if len(stray) > count + (count >> 2) + 1024:
            self._stray = deque(x for x in stray if not (x.removed or x.wired))
        stats = self._stats
        stats.connections += 1
        if self._count > stats.active_peak:
            stats.active_peak = self._count
        self._heap.schedule(c, ts + self._limits.idle_timeout_s)
        return sender

    def _wire(self, c: Connection, ts: float) -> None:
        """The connection's first payload byte: give it its handler (lazily, to spare floods)
        and lists to keep delivered bytes in (unless the retransmission window is 0)."""
        c.wired = True
        self._young_n -= 1
        if self._kept_max > 0:
            for h in (c.client, c.server):
                h.kept = []
                h.kept_max = self._kept_max
        factory = self._factory
        if factory is None:
            return
        uid, cip, sip = c.idents()
        midstream = not (c.client.syn_seen or c.server.syn_seen)
        handler = factory(uid, c.ts, cip, c.client_port, sip, c.server_port, midstream)
        if handler is None:
            return
        sink = handler if isinstance(handler, StreamSink) else _Wrapped(handler)
        c.handler = sink
        c.client.sink = c.server.sink = sink
        self._handlers += 1
        if self.memory() > self._limits.memcap_bytes:
            self._enforce_memcap(ts, c)

    def _enforce_memcap(self, ts: float, keep: Connection | None, room: int = 0) -> None:
        """Evict until the estimate plus `room` fits the memcap (never `keep`)."""
        cap = self._limits.memcap_bytes - room
        while self.memory() > cap and self._evict_one(ts, keep, True):
            pass

    def _close(self, c: Connection, ts: float, reason: EndReason) -> None:
        """FIN exchange done or RST: deliver what is buffered now; the record waits the linger."""
        c.phase = _CLOSED
        c.end_reason = reason
        c.end_ts = ts
        self._close_gaps(c, ts)
        c.refresh_fast()
        self._heap.schedule(c, ts + self._limits.closed_linger_s)
        closed = self._closed
        while closed and closed[0].removed:  # lingers end in closing order: the left is done
            closed.popleft()
        closed.append(c)

    def _finish(self, c: Connection, ts: float, reason: EndReason) -> None:
        """End a connection that did not close: flush with gaps, then emit its record."""
        c.end_reason = reason
        self._close_gaps(c, ts)
        self._emit(c, ts)

    def _close_gaps(self, c: Connection, ts: float) -> None:
        gap = self._limits.max_ack_gap
        c.client.close_gaps(ts, c.server.last_ack, gap)
        c.server.close_gaps(ts, c.client.last_ack, gap)

    def _emit(self, c: Connection, ts: float) -> None:
        rec = c.record()
        self._remove(c)
        if self._on_record is not None:
            self._on_record(rec)
        if c.handler is not None:
            self._handlers -= 1
            handler = c.handler
            c.handler = None
            handler.close(ts, rec)

    def _remove(self, c: Connection) -> None:
        c.removed = True
        self._heap.discard(c)
        if not c.wired:
            self._young_n -= 1
        flows = self._flows
        unbind = _unbind
        for key in c.keys:
            flows.pop(key, None)
            if unbind is not None:
                unbind(key, self.owner)
        self._count -= 1
        budget = self._budget
        for h in (c.client, c.server):
            extra = h.extra_key
            if extra is not None:
                if unbind is not None:
                    unbind(extra, self.owner)
                h.extra_key = None
            if h.kept is not None:
                h.forget()
            if h.starts:  # only if a handler raised mid-flush; keep the accounting right
                budget.total -= h.ooo_bytes
                budget.holders.pop(h, None)
                h.starts = []
                h.chunks = []
                h.ooo_bytes = 0
            h.sink = None
            # Half.conn points back at its Connection: break that cycle so that reference
            # counting frees both as soon as the last reference goes, instead of the cyclic
            # collector much later (it held every finished connection until a full collection).
            h.conn = _RELEASED
        # An entry of the lazily cleaned queues (_young, _stray, _closed) may keep the
        # Connection alive a while longer (evicted flows of a flood are many): let it keep
        # only the Connection itself.
        c.client = c.server = _RELEASED.client
        c.hist = _RELEASED.hist
        c.keys = ()

    def _deadline(self, c: Connection) -> float:
        lim = self._limits
        if c.phase == _CLOSED:
            return c.end_ts + lim.closed_linger_s
        idle = c.last_ts + lim.idle_timeout_s
        if c.phase == _CLOSING:
            return min(c.closing_ts + lim.closed_linger_s, idle)
        return idle

    def _evict_one(self, ts: float, keep: Connection | None, memcap: bool) -> bool:
        """Make room, the least harm first:

        1. cut short the linger of the connection that closed first (its record is final:
           only the wait for stragglers ends early);
        2. evict the oldest connection opened by a segment with neither SYN nor payload that
           has carried none since (the last ACKs of a connection already written out);
        3. when connections without payload hold more than half_open_share of the cap, evict
           the oldest of them (a SYN flood's);
        4. else evict the least recently active connection.

        Evicting an open connection that is not dead splits it: the rest of it comes back as a
        connection of its own, picked up mid-stream. The order keeps that for last: on a link
        too busy for the table (a run of kernel drops leaves connections whose FIN was lost
        idle until idle_timeout_s), the least recently active are those. Returns False when
        there is nothing left to evict but `keep`.
        """
        closed = self._closed
        while closed:
            c = closed.popleft()
            if c.removed or c is keep or c.phase != _CLOSED:
                continue
            self._evict(c, ts, memcap)
            return True
        stray = self._stray
        while stray:
            c = stray.popleft()
            if c.removed or c.wired or c is keep or c.client.syn_seen or c.server.syn_seen:
                continue
            self._evict(c, ts, memcap)
            return True
        lim = self._limits
        if memcap:
            crowded = self._young_n * CONN_BYTES > lim.memcap_bytes * lim.half_open_share
        else:
            crowded = self._young_n > lim.max_connections * lim.half_open_share
        if crowded:
            young = self._young
            while young:
                c = young.popleft()
                if c.removed or c.wired or c is keep:
                    continue
                self._evict(c, ts, memcap)
                return True
        heap = self._heap
        kept: Connection | None = None
        evicted = False
        while len(heap):
            c = heap.pop()
            if c is keep:
                kept = c
                continue
            real = self._deadline(c)
            if real > c.heap_deadline:
                heap.schedule(c, real)
                continue
            self._evict(c, ts, memcap)
            evicted = True
            break
        if kept is not None and not kept.removed:  # (nothing here removes it; the heap must
            heap.put_back(kept)  # never hold a removed connection, which expire() would emit)
        return evicted

    def _evict(self, c: Connection, ts: float, memcap: bool) -> None:
        if c.phase == _CLOSED:
            self._stats.linger_cut += 1
            self._emit(c, c.end_ts)  # its record is final: only the wait for stragglers ends
            return
        if not c.wired:
            self._stats.evicted_half_open += 1
        if memcap:
            self._stats.evicted_memcap += 1
        else:
            self._stats.evicted_lru += 1
        self._finish(c, ts, EndReason.EVICTED)


def _fin_acked(h: Half, peer: Half) -> bool:
    """The peer acknowledged h's FIN (one past the FIN's sequence number)."""
    return peer.last_ack >= 0 and seq_diff(peer.last_ack & SEQ_MASK, h.next_seq) >= 1
