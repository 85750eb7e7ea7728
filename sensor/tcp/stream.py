"""One direction of a TCP connection: sequence tracking, out-of-order buffer, data and gaps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from collections.abc import Hashable
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from sensor.records import ConnRecord, TcpStats

if TYPE_CHECKING:
    from sensor.tcp.conn import Connection

SEQ_MASK: Final = 0xFFFFFFFF  # RFC 9293 §3.4: sequence numbers are taken modulo 2**32
SEQ_HALF: Final = 1 << 31  # RFC 1982 §3.2: serial-number comparison window (half the space)


class StreamSink(ABC):
    """A connection's stream handler (sensor.tcp.reassembler.StreamHandler) of a class compiled
    with the reassembler (sensor.smtp's parser): the reassembler calls it through the compiled
    method table, on most packets. A handler of any other class is wrapped in one that calls it
    through Python (reassembler._Wrapped); a call through Python parses its arguments, about 150
    instructions."""

    @abstractmethod
    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        """In-order bytes of one direction."""

    @abstractmethod
    def gap(self, to_server: bool, ts: float, n: int) -> None:
        """`n` bytes of one direction were lost."""

    @abstractmethod
    def close(self, ts: float, record: ConnRecord) -> None:
        """The connection ended."""


class EndpointState(IntEnum):
    """Zeek's per-endpoint TCP state, from which the conn.log state is derived."""

    INACTIVE = 0
    """Nothing sent by this endpoint yet."""
    SYN_SENT = 1
    """Sent a SYN (without ACK) and no SYN-ACK came back yet."""
    SYN_ACK_SENT = 2
    """The originator itself sent a SYN-ACK (odd, but seen)."""
    PARTIAL = 3
    """Sent traffic without a handshake we saw (mid-stream pick-up)."""
    ESTABLISHED = 4
    """The handshake completed from this endpoint's point of view."""
    CLOSED = 5
    """Sent a FIN."""
    RESET = 6
    """Sent a RST."""


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in sequence space, in [-2**31, 2**31)."""
    return ((a - b + SEQ_HALF) & SEQ_MASK) - SEQ_HALF


def _is_pow10(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


_NO_STARTS: Final[list[int]] = []
"""Shared by every direction that buffers nothing (never appended to): two empty lists per
direction were a tenth of a half-open connection's memory."""
_NO_CHUNKS: Final[list[bytes]] = []

MAX_UNSEEN_START: Final = 1 << 20
"""Most bytes before a stream's first seen one that the peer's ACK may place in a gap (more is
taken for a bogus ACK number, and the stream starts at its first seen byte)."""

KEPT_COST: Final = 40
"""Memory of one kept segment beyond its payload (its bytes object, its list slot)."""


class Budget:
    """Reassembly memory shared by every direction: the per-direction and global caps."""

    __slots__ = ("holders", "kept", "max_chunks", "max_dir", "max_total", "stats", "total")

    def __init__(self, stats: TcpStats, max_dir: int, max_chunks: int, max_total: int) -> None:
        self.stats = stats
        self.max_dir = max_dir
        self.max_chunks = max_chunks
        self.max_total = max_total
        self.total = 0
        self.kept = 0  # memory of the delivered segments kept, all directions (KEPT_COST each)
        self.holders: dict[Half, None] = {}  # directions holding buffered data, oldest first

    def enforce_total(self, ts: float) -> None:
        """Flush the oldest buffers, with gaps, until the global cap holds again."""
        if self.total <= self.max_total:
            return
        self.stats.total_cap_hits += 1
        while self.total > self.max_total and self.holders:
            next(iter(self.holders)).flush(ts)


class Half:
    """The bytes one endpoint sends: next expected sequence number, buffered chunks, counters."""

    __slots__ = (
        "budget",
        "chunks",
        "conflicts",
        "conn",
        "delivered",
        "extra_key",
        "fast",
        "fin_rel",
        "first_ack",
        "gap_bytes",
        "gaps",
        "hist",
        "isn",
        "kept",
        "kept_max",
        "last_ack",
        "letter_counts",
        "next_seq",
        "note_a",
        "note_d",
        "once",
        "ooo_bytes",
        "ooo_segs",
        "pkts",
        "prev_state",
        "retrans",
        "seq_f",
        "seq_h",
        "seq_r",
        "seq_s",
        "sink",
        "starts",
        "state",
        "syn_seen",
        "to_server",
        "unseen_to",
        "wire",
    )

    def __init__(self, conn: Connection, to_server: bool, budget: Budget) -> None:
        self.conn = conn
        self.to_server = to_server  # True for the client's direction
        self.budget = budget
        self.sink: StreamSink | None = None  # the connection's handler, once it has one
        self.next_seq = -1  # absolute sequence number of the next byte to deliver; -1 unknown
        self.delivered = 0  # stream offset of the next byte to deliver (data + gaps so far)
        self.isn = -1
        self.syn_seen = False
        self.starts: list[int] = _NO_STARTS  # offsets of buffered chunks, sorted, disjoint
        self.chunks: list[bytes] = _NO_CHUNKS
        self.ooo_bytes = 0
        # The last delivered segments (ending at stream offset `delivered`), at most kept_max,
        # to compare retransmissions of delivered data with; None before the connection's first
        # payload byte, and always when kept_max is 0 (comparison off).
        self.kept: list[bytes] | None = None
        self.kept_max = 0
        self.fin_rel = -1  # stream offset of the FIN, -1 before one is seen
        self.last_ack = -1  # last acknowledgment number this endpoint sent, -1 none
        self.first_ack = -1  # the first one: where the peer's stream stood, SYN or not seen
        self.pkts = 0
        self.wire = 0  # frame bytes, as tshark's conversation table counts them
        self.retrans = 0
        self.ooo_segs = 0
        self.conflicts = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.unseen_to = 0  # stream offset up to which acknowledged, uncaptured bytes were counted
        self.state = EndpointState.INACTIVE
        self.prev_state = EndpointState.INACTIVE
        self.hist: list[str] = conn.hist
        self.once = ""  # history letters recorded once per direction
        # s/h/f/r: the sequence number when last recorded, -1 never (slots: a dict per
        # direction cost more than a SYN-only flow's whole Half)
        self.seq_s = self.seq_h = self.seq_f = self.seq_r = -1
        self.letter_counts: dict[str, int] | None = None  # g/t/w: counts, recorded at 1, 10...
        # A FlowKey the C batch loop made for this direction after the connection's own (in
        # Connection.keys) left its cache, bound to this half too (Reassembler._bind_extra)
        self.extra_key: Hashable | None = None
        self.fast = False  # in-order data and pure ACKs of this direction may take the fast path
        self.note_a = True  # a fast pure ACK must first call Connection.first_fast
        self.note_d = True  # fast data must first call Connection.first_fast

    # ------------------------------------------------------------------------------------
    # history (Zeek conn.log letters; uppercase for the client)

    def letter(self, c: str) -> None:
        """Record a letter that appears once per direction (a, d, i, q)."""
        if c not in self.once:
            self.once += c
            self.hist.append(c.upper() if self.to_server else c)

    def flag_letter(self, c: str, seq: int) -> None:
        """Record s/h/f/r again only when the sequence number differs from the last one."""
        if c == "s":
            if self.seq_s == seq:
                return
            self.seq_s = seq
        elif c == "h":
            if self.seq_h == seq:
                return
            self.seq_h = seq
        elif c == "f":
            if self.seq_f == seq:
                return
            self.seq_f = seq
        else:
            if self.seq_r == seq:
                return
            self.seq_r = seq
        self.hist.append(c.upper() if self.to_server else c)

    def count_letter(self, c: str) -> None:
        """Record g/t/w on a logarithmic scale: at the 1st, 10th, 100th... occurrence."""
        counts = self.letter_counts
        if counts is None:
            counts = self.letter_counts = {}
        n = counts[c] = counts.get(c, 0) + 1
        if _is_pow10(n):
            self.hist.append(c.upper() if self.to_server else c)

    # ------------------------------------------------------------------------------------
    # data path

    def set_state(self, state: EndpointState) -> None:
        """Change the endpoint state, remembering the previous one (Zeek's prev_state)."""
        self.prev_state = self.state
        self.state = state

    def start_syn(self, isn: int) -> None:
        """A SYN was seen: the stream starts one after the ISN unless it already started."""
        if self.next_seq < 0:
            self.next_seq = (isn + 1) & SEQ_MASK
            self.isn = isn
            self.syn_seen = True

    def accept(self, ts: float, seq: int, payload: bytes) -> None:
        """Place a segment's payload (first byte at seq): deliver, buffer or drop as old data."""
        if self.next_seq < 0:
            self.next_seq = self._unseen_start(seq)
        start = self.delivered + seq_diff(seq, self.next_seq)
        d = self.delivered
        end = start + len(payload)
        if start < d:
            self._retransmitted()
            if self.kept:
                self._compare_delivered(start, payload)
            if end <= d:
                return
            payload = payload[d - start :]
            start = d
        if not self.starts:
            if start == d:
                self._deliver(ts, payload)
                return
            self.ooo_segs += 1
            self.budget.stats.ooo_segments += 1
            self._insert(start, payload)
        else:
            if start > d:
                self.ooo_segs += 1
                self.budget.stats.ooo_segments += 1
            self._add_pieces(start, payload)
            self._drain(ts)
        self._enforce_caps(ts)

    def _unseen_start(self, seq: int) -> int:
        """Where a stream whose SYN went unseen starts: at the first byte seen, or earlier
        where the peer's ACKs say it had already received bytes (lost first segments, the
        banner for one: they then become a gap, not a dialogue that seems to start later)."""
        ack = self.conn.peer(self).first_ack
        if ack >= 0 and 0 < seq_diff(seq, ack) <= MAX_UNSEEN_START:
            return ack
        return seq  # mid-stream pick-up: the first seen sequence number is the start

    def set_fin(self, seq: int, n: int) -> None:
        """Remember where the FIN sits (after the segment's n payload bytes starting at seq)."""
        if self.next_seq < 0:
            self.next_seq = seq
        if self.fin_rel < 0:
            self.fin_rel = max(self.delivered + seq_diff(seq, self.next_seq) + n, self.delivered)

    def fin_done(self) -> bool:
        """The FIN was seen and every byte before it was delivered."""
        return 0 <= self.fin_rel <= self.delivered

    def flush(self, ts: float) -> None:
        """Deliver everything buffered, announcing each hole before it as a gap."""
        while self.starts:
            self._skip_hole(ts)

    def acked(self, ts: float, ack: int, max_ack_gap: int) -> None:
        """The peer acknowledged up to `ack` while we hold data after a hole.

        The peer can only acknowledge bytes it received, so the acknowledged part of a hole was
        sent but not captured: it becomes a gap now, and the data buffered after it is delivered
        in time, not at the end of the connection (Zeek's "content gap" on ACK).
        """
        if self.next_seq < 0:
            return
        acked_to = self.delivered + seq_diff(ack & SEQ_MASK, self.next_seq)
        if not 0 < acked_to - self.delivered <= max_ack_gap:
            return
        while self.starts and acked_to > self.delivered:
            if self.starts[0] <= acked_to:
                self._skip_hole(ts)
            else:
                self._gap(ts, acked_to - self.delivered)

    def ack_unseen(self, ts: float, ack: int, max_ack_gap: int) -> int:
        """Bytes the peer's ACK up to `ack` acknowledges that were never captured, each counted
        once (Zeek's capture-loss "gap event": an ACK above a hole); 0 when all were seen.

        A hole at the tail (nothing buffered after it) becomes a gap at once, as in Zeek: the
        peer received those bytes, so the dialogue went on without them, and the parser must
        know before it reads the answer to them. A hole before buffered data waits for
        `acked` (called next), which delivers the buffered data too.
        """
        if self.next_seq < 0:
            return 0
        hi = self.delivered + seq_diff(ack & SEQ_MASK, self.next_seq)
        if 0 <= self.fin_rel < hi:
            hi = self.fin_rel  # the FIN's sequence number is no data byte
        lo = self.delivered if self.unseen_to < self.delivered else self.unseen_to
        if hi <= lo or hi - lo > max_ack_gap:  # nothing new, or an ACK number out of reason
            return 0
        self.unseen_to = hi
        missing = hi - lo
        starts = self.starts
        if not starts:
            self._gap(ts, hi - self.delivered)
            return missing
        chunks = self.chunks  # bytes buffered after a hole were seen
        i = max(bisect_right(starts, lo) - 1, 0)
        while i < len(starts):
            cs = starts[i]
            if cs >= hi:
                break
            ce = cs + len(chunks[i])
            if ce > lo:
                missing -= min(ce, hi) - max(cs, lo)
            i += 1
        return missing

    def close_gaps(self, ts: float, peer_ack: int, max_ack_gap: int) -> None:
        """At the end: flush, then report a gap for bytes before the FIN or acked by the peer."""
        self.flush(ts)
        if self.next_seq < 0:
            return
        if self.fin_rel > self.delivered:
            self._gap(ts, self.fin_rel - self.delivered)
        elif self.fin_rel < 0 and peer_ack >= 0:
            missing = seq_diff(peer_ack & SEQ_MASK, self.next_seq)
            if 0 < missing <= max_ack_gap:
                self._gap(ts, missing)

    # ------------------------------------------------------------------------------------
    # internals

    def _retransmitted(self) -> None:
        self.retrans += 1
        self.budget.stats.retransmissions += 1
        self.count_letter("t")

    def _compare_delivered(self, start: int, payload: bytes) -> None:
        """A retransmission over delivered bytes: count a conflict if the kept copy differs.

        The first copy stays delivered (first wins); bytes older than the kept segments are not
        compared.
        """
        kept = self.kept
        if not kept:
            return
        old = kept[0] if len(kept) == 1 else b"".join(kept)
        d = self.delivered
        base = d - len(old)
        lo = max(start, base)
        hi = min(start + len(payload), d)
        if lo < hi and payload[lo - start : hi - start] != old[lo - base : hi - base]:
            self.conflicts += 1
            self.budget.stats.conflicting_overlaps += 1

    def kept_bytes(self) -> int:
        """Delivered bytes kept for the comparison."""
        return sum(len(p) for p in self.kept) if self.kept else 0

    def keep(self, payload: bytes) -> None:
        """Remember a delivered segment for the retransmission comparison (the last kept_max)."""
        kept = self.kept
        if kept is None:  # the connection has no handler yet, or the comparison is off
            return
        kept.append(payload)
        budget = self.budget
        budget.kept += len(payload) + KEPT_COST
        if len(kept) > self.kept_max:
            budget.kept -= len(kept.pop(0)) + KEPT_COST  # pop(0): compiled, del is generic

    def forget(self) -> None:
        """Drop the kept segments (after a gap they no longer end where delivery stands)."""
        kept = self.kept
        if kept:
            n = 0
            for seg in kept:  # a compiled loop: sum(map(len, ...)) is two generic calls
                n += len(seg) + KEPT_COST
            self.budget.kept -= n
            kept.clear()

    def _deliver(self, ts: float, payload: bytes) -> None:
        n = len(payload)
        self.delivered += n
        self.next_seq = (self.next_seq + n) & SEQ_MASK
        self.keep(payload)
        if self.sink is not None:
            self.sink.data(self.to_server, ts, payload)

    def _gap(self, ts: float, n: int) -> None:
        self.forget()
        self.delivered += n
        self.next_seq = (self.next_seq + n) & SEQ_MASK
        self.gaps += 1
        self.gap_bytes += n
        stats = self.budget.stats
        stats.gaps += 1
        stats.gap_bytes += n
        self.count_letter("g")
        if self.sink is not None:
            self.sink.gap(self.to_server, ts, n)

    def _insert(self, start: int, data: bytes) -> None:
        if self.starts is _NO_STARTS:
            self.starts = []
            self.chunks = []
        i = bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.chunks.insert(i, data)
        n = len(data)
        self.ooo_bytes += n
        budget = self.budget
        budget.total += n
        if self not in budget.holders:
            budget.holders[self] = None
            # While a direction holds data, the peer's ACKs are checked on the slow path.
            self.fast = False
            self.conn.peer(self).fast = False

    def _add_pieces(self, start: int, payload: bytes) -> None:
        """Buffer the parts of payload no chunk covers yet; compare the parts one does."""
        end = start + len(payload)
        starts = self.starts
        chunks = self.chunks
        i = max(bisect_right(starts, start) - 1, 0)
        pos = start
        pieces: list[tuple[int, bytes]] = []
        overlapped = conflict = False
        while i < len(starts):
            cs = starts[i]
            if cs >= end:
                break
            cd = chunks[i]
            ce = cs + len(cd)
            if ce > start:
                lo = max(start, cs)
                hi = min(end, ce)
                overlapped = True
                if payload[lo - start : hi - start] != cd[lo - cs : hi - cs]:
                    conflict = True
                if pos < cs:
                    pieces.append((pos, payload[pos - start : cs - start]))
                pos = max(pos, ce)
            i += 1
        if pos < end:
            pieces.append((pos, payload[pos - start :] if pos > start else payload))
        if overlapped:
            self._retransmitted()
        if conflict:
            self.conflicts += 1
            self.budget.stats.conflicting_overlaps += 1
        for s, data in pieces:
            self._insert(s, data)

    def _drain(self, ts: float) -> None:
        starts = self.starts
        while starts and starts[0] <= self.delivered:
            s = starts.pop(0)
            data = self.chunks.pop(0)
            self.ooo_bytes -= len(data)
            self.budget.total -= len(data)
            if s < self.delivered:  # never after _add_pieces, kept as a guard against duplication
                data = data[self.delivered - s :]
            if data:
                self._deliver(ts, data)
        if not starts:
            self.starts = _NO_STARTS
            self.chunks = _NO_CHUNKS
            self.budget.holders.pop(self, None)
            self.conn.refresh_fast()

    def _skip_hole(self, ts: float) -> None:
        hole = self.starts[0] - self.delivered
        if hole > 0:
            self._gap(ts, hole)
        self._drain(ts)

    def _enforce_caps(self, ts: float) -> None:
        budget = self.budget
        if self.ooo_bytes > budget.max_dir or len(self.starts) > budget.max_chunks:
            budget.stats.ooo_cap_hits += 1
            while self.starts and (
                self.ooo_bytes > budget.max_dir or len(self.starts) > budget.max_chunks
            ):
                self._skip_hole(ts)
        budget.enforce_total(ts)
