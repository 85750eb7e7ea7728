"""Wires capture -> decode -> tcp -> smtp for one run and collects what each stage counted."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from sensor.capture.common import BatchedFrames
from sensor.decode.batch import feed
from sensor.decode.packet import DecodeLimits, Decoder
from sensor.records import CaptureStats, ConnRecord, SmtpSession, TcpStats
from sensor.smtp.parser import SmtpLimits, SmtpParser
from sensor.tcp.reassembler import (
    C_KEYS,
    DEFAULT_SERVER_PORTS,
    HandlerFactory,
    Reassembler,
    StreamHandler,
    TcpLimits,
)

if TYPE_CHECKING:
    from sensor.config import Config

Frame = tuple[float, int, bytes]

FLOW_MIX: Final = 0x9E3779B1
"""Fibonacci-hashing multiplier (2**32 / golden ratio): spreads the flow key's low bits (Linux
clients pick even ephemeral ports, so a plain port sum modulo 2 would send every flow to one
worker)."""
FLOW_MIX_SHIFT: Final = 16


def flow_share(src: bytes, dst: bytes, sport: int, dport: int, workers: int) -> int:
    """Index of the worker that owns this flow; the same for both directions of a connection.

    `src` and `dst` are packed addresses as the decoder gives them (never empty).
    """
    return ((sport + dport + src[-1] + dst[-1]) * FLOW_MIX >> FLOW_MIX_SHIFT) % workers


SMTP_PARSER_BYTES: Final = 4500
"""Estimated memory of one SMTP parser with a short dialogue under way, charged to the reassembly
memcap for each connection that carries payload (tracemalloc, 64-bit CPython 3.11: with its
connection, about 6.1 KB compiled and 7.1 KB interpreted; tests/tcp/test_memcap.py checks the
estimate on both builds)."""


def limits_from_config(cfg: Config) -> TcpLimits:
    """The reassembly caps of a configuration ([reassembly] and [bounds] memcap_mb)."""
    r = cfg.reassembly
    return TcpLimits(
        max_connections=r.max_connections,
        max_ooo_bytes_per_dir=r.max_ooo_bytes_per_dir,
        max_ooo_chunks_per_dir=r.max_ooo_chunks_per_dir,
        max_total_bytes=r.max_total_bytes,
        idle_timeout_s=r.idle_timeout_s,
        closed_linger_s=r.closed_linger_s,
        expire_interval_s=r.expire_interval_s,
        max_ack_gap=r.max_ack_gap,
        rexmit_segments=r.rexmit_segments,
        memcap_bytes=cfg.bounds.memcap_mb << 20,
        half_open_share=r.half_open_share,
    )


def no_streams(
    uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
) -> None:
    """Handler factory for runs that stop after reassembly (only connection records wanted)."""
    return None


@dataclass(slots=True)
class RunTotals:
    """What a run produced, for the closing summary."""

    connections: int = 0
    sessions: int = 0
    transactions: int = 0
    messages: int = 0
    recipients: int = 0
    auth_attempts: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    wall_s: float = 0.0
    anomalies: dict[str, int] = field(default_factory=dict)


class Pipeline:
    """One analysis run: feed it frames, then `finish()` to flush every open connection."""

    def __init__(
        self,
        *,
        ports: Iterable[int] = DEFAULT_SERVER_PORTS,
        on_conn: Callable[[ConnRecord], None] | None = None,
        on_session: Callable[[SmtpSession], None] | None = None,
        tcp_limits: TcpLimits | None = None,
        smtp_limits: SmtpLimits | None = None,
        decode_limits: DecodeLimits | None = None,
        handlers: HandlerFactory | None = None,
    ) -> None:
        """`handlers` gives each connection its stream consumer (None: an SmtpParser on the
        server ports); a factory returning None stops the run after reassembly."""
        self.capture_stats = CaptureStats()
        self.tcp_stats = TcpStats()
        self.totals = RunTotals()
        self._ports = frozenset(ports)
        self._on_conn = on_conn
        self._on_session = on_session
        # One bounds object for every parser of the run (never mutated once the run starts).
        self._smtp_limits = smtp_limits if smtp_limits is not None else SmtpLimits()
        self._decoder = Decoder(self.capture_stats, decode_limits)
        limits = tcp_limits if tcp_limits is not None else TcpLimits()
        if handlers is None and limits.handler_bytes == 0:
            limits = replace(limits, handler_bytes=SMTP_PARSER_BYTES)
        self._reasm = Reassembler(
            self._new_handler if handlers is None else handlers,
            self.tcp_stats,
            limits,
            server_ports=self._ports,
            on_record=self._conn_done,
        )
        self._t0 = time.perf_counter()
        self.frame_index = 0
        """Frames read when `run_share` emitted the current record (the workers' merge order);
        sensor.cluster's loops keep there the archive position of the frame being fed."""

    @property
    def decoder(self) -> Decoder:
        """The frame decoder (for loops that choose which segments to feed: sensor.cluster)."""
        return self._decoder

    @property
    def reassembler(self) -> Reassembler:
        """The TCP reassembler (for loops that choose which segments to feed: sensor.cluster)."""
        return self._reasm

    def _new_handler(
        self, uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
    ) -> StreamHandler | None:
        if sport not in self._ports:
            return None
        return SmtpParser(
            uid, ts, cip, cport, sip, sport, self._session_done, self._smtp_limits, midstream
        )

    def _conn_done(self, rec: ConnRecord) -> None:
        self.totals.connections += 1
        if self._on_conn is not None:
            self._on_conn(rec)

    def _session_done(self, s: SmtpSession) -> None:
        if not (s.bytes_from_client or s.bytes_from_server):
            return  # refused, unanswered or silent: the connection record tells all there is
        t = self.totals
        t.sessions += 1
        t.transactions += len(s.transactions)
        t.auth_attempts += len(s.auth)
        for tx in s.transactions:
            t.recipients += len(tx.rcpt_to)
            if tx.data_mode is not None:
                t.messages += 1
        for name, n in s.anomalies.items():
            t.anomalies[name] = t.anomalies.get(name, 0) + n
        if self._on_session is not None:
            self._on_session(s)

    def run(self, frames: Iterable[Frame]) -> None:
        """Process frames (the per-packet hot loop); may be called once per source."""
        if isinstance(frames, BatchedFrames):
            self._run_batches(frames.batches(), frames.linktype)
            return
        # Methods are called on the objects, not hoisted into locals: compiled, a call on a
        # native object is a direct C call, while a bound method object goes through the
        # Python calling convention.
        decoder = self._decoder
        reasm = self._reasm
        first = self.totals.first_ts
        ts = 0.0
        for ts, linktype, data in frames:
            seg = decoder.decode(linktype, data)
            if seg is not None:
                reasm.segment(ts, seg)
                if first is None:
                    first = self.totals.first_ts = ts
        if first is not None and (self.totals.last_ts is None or ts > self.totals.last_ts):
            self.totals.last_ts = ts

    def _run_batches(self, batches: Iterable[tuple[bytes, bytes]], linktype: int) -> None:
        """`run` for frames read in libpcap batches: each batch decoded and fed in one loop,
        in C where it is built (sensor.decode.batch), with the same results."""
        decode = self._decoder.decode
        segment = self._reasm.segment
        owner = self._reasm.owner
        stats = self.capture_stats
        totals = self.totals
        last: float | None = None
        for packets, meta in batches:
            fast, first, end = feed(packets, meta, linktype, decode, segment, C_KEYS, owner)
            stats.tcp_segments += fast
            if first is not None and totals.first_ts is None:
                totals.first_ts = first
            if end is not None:
                last = end
        if (last is not None and totals.first_ts is not None
                and (totals.last_ts is None or last > totals.last_ts)):
            totals.last_ts = last

    def run_share(self, frames: Iterable[Frame], workers: int, index: int) -> None:
        """Like `run`, but only the flows `flow_share` gives to worker `index` of `workers`.

        Frames of other flows still advance the packet clock, so idle connections expire at the
        same packet times as in a single-process run.
        """
        decoder = self._decoder
        reasm = self._reasm
        mix, shift = FLOW_MIX, FLOW_MIX_SHIFT
        first = self.totals.first_ts
        ts = 0.0
        n = self.frame_index
        for ts, linktype, data in frames:
            n += 1
            seg = decoder.decode(linktype, data)
            if seg is None:
                continue
            if first is None:
                first = self.totals.first_ts = ts
            # flow_share(), inlined: decoded addresses are never empty (4 or 16 bytes)
            if ((seg[2] + seg[3] + seg[0][-1] + seg[1][-1]) * mix >> shift) % workers == index:
                self.frame_index = n
                reasm.segment(ts, seg)
            elif ts >= reasm.next_expiry_check:  # keep the single-process expiry clock
                self.frame_index = n
                reasm.expire(ts)
        self.frame_index = n + 1  # records flushed by finish() come after every frame
        if first is not None and (self.totals.last_ts is None or ts > self.totals.last_ts):
            self.totals.last_ts = ts

    def advance(self, ts: float) -> None:
        """Move the packet clock to `ts` without a packet (a live worker whose share of the
        traffic is idle): what a packet at `ts` would expire (closed connections past their
        linger, idle ones past their timeout) is emitted now."""
        if ts >= self._reasm.next_expiry_check:
            self._reasm.expire(ts)

    def open_connections(self) -> int:
        """Connections the reassembler holds now, closed ones still lingering included (what a
        worker that died would lose)."""
        return len(self._reasm)

    def finish(self) -> RunTotals:
        """End of input: flush every open connection (nothing is lost) and return the totals."""
        self._reasm.flush()
        self.totals.wall_s = time.perf_counter() - self._t0
        return self.totals
