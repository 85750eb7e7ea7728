"""Multi-core live capture: forked workers read PACKET_FANOUT shares of the interfaces; the parent
merges their records in packet-time order, restarts a worker that dies and counts what was lost."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from enum import IntEnum
from multiprocessing.connection import Connection, wait
from typing import Any, Final

from sensor.capture.live import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_SNAPLEN,
    FANOUT_HASH_DEFRAG,
    LiveSource,
)
from sensor.errors import SensorError
from sensor.parallel import (
    BATCH_RECORDS,
    START_METHOD,
    Outputs,
    WorkerWants,
    _deliver,
    add_totals,
    line_formatters,
    out_wants,
)
from sensor.parallel import _grow_pipe as grow_pipe
from sensor.pipeline import Pipeline, RunTotals, no_streams
from sensor.records import CaptureStats, ConnRecord, SmtpSession, TcpStats
from sensor.service.affinity import pin, worker_cpus
from sensor.service.memory import HeapTrimmer, reserve
from sensor.service.signals import Shutdown, die_with_parent
from sensor.tcp.reassembler import TcpLimits

WORKER_TICK_S: Final = 0.1
"""A worker sends its pending records and its packet-time progress at least this often."""
COUNTERS_INTERVAL_S: Final = 0.25
"""A worker sends its counters this often (what a worker that dies takes uncounted with it)."""
HANDLE_STATS_INTERVAL_S: Final = 1.0
"""How often the parent reads every handle's kernel counters (packets received, drops)."""
IDLE_LAG_S: Final = 0.5
"""An idle worker (its ring drained) vouches for packet times up to the wall clock minus this:
the kernel hands a ring block over at most its retire timeout (libpcap: the read timeout, 100 ms)
after the block's first packet, and a packet's timestamp is taken on arrival."""
RESTART_PAUSE_S: Final = 1.0
"""Shortest time between two starts of the same worker (a worker dying at once does not spin)."""
STOP_GRACE_S: Final = 10.0
"""After a stop, how long workers may take to flush and send what they hold before being killed."""
_WAIT_S: Final = 0.05  # the parent's longest wait for a message before looking at the clock
_MAX_MESSAGES: Final = 64  # messages read from one worker before the parent delivers again

Item = tuple[float, float, int, int, int, bytes | None, Any]
"""(packet time at emission, connection end time, worker key, sequence, kind, JSON line or None,
record or None): the first four order the merge (records flushed at the end of a worker's run
have emission time +inf and sort by start time). The worker key differs for every process that
ever ran in a slot."""


class _Msg(IntEnum):
    """Tags of the messages a live worker sends."""

    BATCH = 0
    """(progress, items): records, and the packet time up to which the worker has read."""
    COUNTERS = 1
    """(CaptureStats, TcpStats, RunTotals, open connections), about once a second."""
    RESYNCED = 2
    """Packets a restarted worker gave up while resynchronising the ring (first message)."""
    DONE = 3
    """(CaptureStats, TcpStats, RunTotals, connections flushed at the end): the last message."""
    FAILED = 4
    """A SensorError raised in the worker (e.g. the interface went away)."""
    CRASHED = 5
    """Any other exception: its formatted traceback."""


@dataclass(slots=True)
class LiveInput:
    """Interfaces to capture on with `workers` processes each, joined in one fanout group per
    interface, and how to open their capture handles."""

    ifaces: tuple[str, ...]
    workers: int
    shutdown: Shutdown
    snaplen: int = DEFAULT_SNAPLEN
    promisc: bool = True
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    duration: float | None = None
    heap_trim_s: float = 0.0
    """Seconds between two malloc_trim calls in each worker (sensor.service.memory); 0: never."""
    reserve_bytes: int = 0
    """Memory each worker makes resident as it starts (sensor.service.memory.reserve)."""
    cpus: tuple[int, ...] = ()
    """Cores the workers run on, worker i on the i-th, round robin (sensor.service.affinity);
    (): not pinned. The parent is never pinned."""
    handles: list[LiveSource] = field(default_factory=list)
    """The capture handles (`open_handles`), opened before privileges are dropped; opened by
    run_live_fanout itself when empty (a caller that keeps its privileges)."""
    on_wake: Callable[[], None] | None = None
    """Called by the parent's loop at least every few tenths of a second (the service's
    SIGHUP handling and watchdog)."""
    on_event: Callable[[str], None] = lambda line: None
    """Receives one line per notable event (a privilege drop, a worker's death and restart)."""
    on_snapshot: Callable[[Callable[[], dict[str, Any]]], None] | None = None
    """Called once with the run's `snapshot()` before the first worker starts."""


@dataclass(slots=True)
class LiveResult:
    """The merged counters of every worker, the capture handles' counters and the restarts."""

    capture_stats: CaptureStats
    tcp_stats: TcpStats
    totals: RunTotals
    flushed: int
    interfaces: dict[str, dict[str, int]]
    workers: dict[str, int]


WorkerCounters = tuple[CaptureStats, TcpStats, RunTotals, int]


@dataclass(slots=True)
class _Slot:
    """One worker position: its capture handle outlives the processes that read it."""

    index: int
    iface: str
    source: LiveSource
    proc: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None
    progress: float = 0.0
    counters: WorkerCounters | None = None
    """The running worker's latest counters."""
    retired: list[WorkerCounters] = field(default_factory=list)
    """The last counters of the workers that died in this slot."""
    final: WorkerCounters | None = None
    done: bool = False
    started: float = 0.0
    restarts: int = 0
    lost_packets: int = 0
    lost_connections: int = 0
    drops_at_death: int | None = None
    booked: int | None = None
    """Pid of the last dead worker whose counters were retired (each is booked once)."""
    handle_stats: tuple[int, int, int] = (0, 0, 0)


def open_handles(src: LiveInput, bpf: str) -> list[LiveSource]:
    """One capture handle per worker of every interface, each joined to its interface's
    PACKET_FANOUT_HASH group: the part of a live run that needs CAP_NET_RAW. Raises
    CaptureError (one line) when an interface cannot be opened, with none left open."""
    handles: list[LiveSource] = []
    try:
        for j, iface in enumerate(src.ifaces):
            group = (os.getpid() + j) & 0xFFFF
            for _ in range(src.workers):
                handles.append(LiveSource(iface, bpf=bpf, snaplen=src.snaplen,
                                          promisc=src.promisc, buffer_bytes=src.buffer_bytes,
                                          fanout=(group, FANOUT_HASH_DEFRAG)))  # fmt: skip
    except BaseException:
        for source in handles:
            source.close()
        raise
    return handles


def run_live_fanout(
    src: LiveInput,
    bpf: str,
    ports: tuple[int, ...],
    out: Outputs,
    limits: TcpLimits | None = None,
) -> LiveResult:
    """Capture on src.ifaces with src.workers forked workers per interface until a stop signal
    (or src.duration), delivering the merged records to `out` in packet-time order.

    The handles are src.handles (`open_handles`, opened here when empty: the caller drops
    privileges in between), then the workers are forked; each worker gets 1/(all workers) of the
    global caps in `limits`. A worker that dies is restarted on the same handle, and what was lost
    is counted. Raises CaptureError (one line) when an interface cannot be opened.
    """
    n_workers = src.workers * len(src.ifaces)
    share = (limits if limits is not None else TcpLimits()).split(n_workers)
    if not src.handles:
        src.handles = open_handles(src, bpf)
    slots = [_Slot(i, source.iface, source) for i, source in enumerate(src.handles)]
    try:
        src.on_event(f"capturing on {', '.join(src.ifaces)}: {src.workers} worker(s) each")
        run = _Run(src, slots, tuple(ports), out_wants(out), share)
        if src.on_snapshot is not None:
            src.on_snapshot(run.snapshot)
        run.loop(out)
        return run.result()
    finally:
        for slot in slots:
            slot.source.close()


class _Run:
    """The parent's state: the workers, the merge heap and the counters snapshot() reads."""

    def __init__(
        self,
        src: LiveInput,
        slots: list[_Slot],
        ports: tuple[int, ...],
        wants: WorkerWants,
        limits: TcpLimits,
    ) -> None:
        self.src = src
        self.slots = slots
        self.ports = ports
        self.wants = wants
        self.limits = limits
        self.ctx = multiprocessing.get_context(START_METHOD)
        self.heap: list[Item] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.stop_at = 0.0
        self.parent = os.getpid()
        self.t0 = time.perf_counter()

    # ---- workers ------------------------------------------------------------------------

    def start(self, slot: _Slot, restart: bool) -> None:
        recv_end, send_end = self.ctx.Pipe(duplex=False)
        grow_pipe(send_end)
        inherited = (*(s.conn for s in self.slots if s.conn is not None), recv_end)
        key = (slot.restarts << 16) | slot.index
        proc = self.ctx.Process(
            target=_worker_main,
            args=(slot.source, key, self.ports, self.wants, self.limits, send_end,
                  inherited, self.parent, restart, self.src.shutdown.stop.is_set(),
                  self.src.heap_trim_s, self.src.reserve_bytes,
                  worker_cpus(self.src.cpus, slot.index)),
            name=f"sensor-live-{slot.index}",
            daemon=True,
        )  # fmt: skip
        proc.start()
        send_end.close()
        slot.proc, slot.conn, slot.started = proc, recv_end, time.monotonic()

    def stop_all(self, signum: int = int(signal.SIGTERM)) -> None:
        """Ask every worker to stop reading and flush (safe in a signal handler)."""
        if not self.stopping:
            self.stopping = True
            self.stop_at = time.monotonic()
        for slot in self.slots:
            proc = slot.proc
            if proc is not None and proc.pid is not None and not slot.done:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signum)

    def loop(self, out: Outputs) -> None:
        shutdown = self.src.shutdown
        hook = self.stop_all
        shutdown.add_hook(hook)
        timer = None
        if self.src.duration is not None:
            timer = threading.Timer(self.src.duration, self.stop_all)
            timer.daemon = True
        try:
            for slot in self.slots:
                self.start(slot, restart=False)
            if timer is not None:
                timer.start()
            next_counters = 0.0
            on_wake = self.src.on_wake
            while not all(s.done for s in self.slots):
                if on_wake is not None:
                    on_wake()
                self._receive()
                now = time.monotonic()
                if now >= next_counters:
                    self._poll_handles()
                    next_counters = now + HANDLE_STATS_INTERVAL_S
                self._restart_dead(now)
                if self.stopping and now - self.stop_at > STOP_GRACE_S:
                    self._give_up()
                self._deliver(out, self._watermark())
            self._deliver(out, math.inf)
            self._poll_handles()
        finally:
            shutdown.remove_hook(hook)
            if timer is not None:
                timer.cancel()
            for slot in self.slots:
                if slot.proc is not None and slot.proc.is_alive():
                    slot.proc.kill()
                    slot.proc.join()
                if slot.conn is not None:
                    slot.conn.close()

    def _receive(self) -> None:
        conns = {s.conn: s for s in self.slots if s.conn is not None and not s.done}
        sentinels = {s.proc.sentinel: s for s in self.slots
                     if s.proc is not None and s.conn is None and not s.done}  # fmt: skip
        ready = wait([*conns, *sentinels], _WAIT_S) if conns or sentinels else []
        for obj in ready:
            if obj in sentinels:
                continue  # reaped in _restart_dead
            slot = conns[obj]  # type: ignore[index]
            conn = slot.conn
            assert conn is not None
            try:
                for _ in range(_MAX_MESSAGES):  # then deliver: a busy worker never stalls it
                    if not conn.poll():
                        break
                    self._handle(slot, conn.recv())
                    if slot.done or slot.conn is None:
                        break
            except (EOFError, OSError):
                conn.close()
                slot.conn = None  # died without its final message: _restart_dead takes over

    def _handle(self, slot: _Slot, msg: tuple[int, Any]) -> None:
        tag, payload = msg
        if tag == _Msg.BATCH:
            progress, items = payload
            for item in items:
                heapq.heappush(self.heap, item)
            slot.progress = max(slot.progress, progress)
        elif tag == _Msg.COUNTERS:
            with self.lock:
                slot.counters = payload
        elif tag == _Msg.RESYNCED:
            self._poll_handles()
            with self.lock:
                drops = slot.handle_stats[1]
                since = drops - slot.drops_at_death if slot.drops_at_death is not None else 0
                slot.lost_packets += int(payload) + max(0, since)
                slot.drops_at_death = None
        elif tag == _Msg.DONE:
            with self.lock:
                slot.final = payload
                slot.counters = None
                slot.done = True
            slot.progress = math.inf
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
            if slot.proc is not None:
                slot.proc.join()
        elif tag == _Msg.FAILED:
            self.stop_all()
            raise payload
        else:
            self.src.on_event(f"worker {slot.index} ({slot.iface}) crashed:\n{payload}")

    def _restart_dead(self, now: float) -> None:
        for slot in self.slots:
            proc = slot.proc
            if slot.done or proc is None or slot.conn is not None:
                continue
            if proc.is_alive():
                proc.join(_WAIT_S)  # the pipe closed just before the process ended
                if proc.is_alive():
                    continue
            if slot.booked != proc.pid:
                self._retire(slot, proc)
            if self.stopping:
                with self.lock:
                    slot.done = True
                slot.progress = math.inf
                continue
            if now - slot.started < RESTART_PAUSE_S:
                continue
            slot.restarts += 1
            self.start(slot, restart=True)
            self.src.on_event(f"worker {slot.index} ({slot.iface}) restarted on the same capture "
                              f"handle (restart {slot.restarts})")  # fmt: skip

    def _retire(self, slot: _Slot, proc: multiprocessing.process.BaseProcess) -> None:
        """Book a dead worker: its last counters, the connections it held, the drop count now."""
        slot.booked = proc.pid
        code = proc.exitcode
        how = (
            f"killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exit code {code}"
        )
        self._poll_handles()
        with self.lock:
            held = 0
            if slot.counters is not None:
                held = slot.counters[3]
                slot.retired.append(slot.counters)
                slot.counters = None
            slot.lost_connections += held
            slot.drops_at_death = slot.handle_stats[1]
        slot.proc = None if self.stopping else proc
        self.src.on_event(f"worker {slot.index} ({slot.iface}) died ({how}): {held} open "
                          "connections lost, its unsent records with them")  # fmt: skip

    def _give_up(self) -> None:
        """Workers still flushing after STOP_GRACE_S are killed; what they held is counted lost."""
        for slot in self.slots:
            if not slot.done and slot.proc is not None and slot.proc.is_alive():
                slot.proc.kill()

    def _watermark(self) -> float:
        return min((s.progress for s in self.slots), default=math.inf)

    def _deliver(self, out: Outputs, upto: float) -> None:
        _deliver(self._due(upto), out)

    def _due(self, upto: float) -> Iterator[Item]:
        """The merged records emitted at or before packet time `upto`, in order."""
        heap = self.heap
        while heap and heap[0][0] <= upto:
            yield heapq.heappop(heap)

    # ---- counters -----------------------------------------------------------------------

    def _poll_handles(self) -> None:
        """Read every handle's kernel counters (only this process reads them: a read resets the
        kernel's count, which libpcap accumulates in the reading process)."""
        for slot in self.slots:
            try:
                got = slot.source.read_stats()  # no thread of this process reads packets
            except Exception:  # a counter read never ends the run
                continue
            with self.lock:
                slot.handle_stats = got

    def _counters(self) -> tuple[CaptureStats, TcpStats, RunTotals, int]:
        cap, tcp, totals = CaptureStats(), TcpStats(), RunTotals()
        flushed = 0
        for slot in self.slots:
            parts = list(slot.retired)
            for extra in (slot.counters, slot.final):
                if extra is not None:
                    parts.append(extra)
            for c, t, r, _n in parts:
                _add(cap, c)
                _add(tcp, t)
                add_totals(totals, r)
            if slot.final is not None:
                flushed += slot.final[3]
        totals.anomalies = dict(sorted(totals.anomalies.items()))
        return cap, tcp, totals, flushed

    def interfaces(self) -> dict[str, dict[str, int]]:
        """Per interface: packets received, dropped by the kernel (every handle), and dropped by
        the interface (the same device counter seen through each handle: the largest)."""
        out: dict[str, dict[str, int]] = {}
        for slot in self.slots:
            received, dropped, if_dropped = slot.handle_stats
            row = out.setdefault(slot.iface, {"received": 0, "dropped": 0, "if_dropped": 0})
            row["received"] += received
            row["dropped"] += dropped
            row["if_dropped"] = max(row["if_dropped"], if_dropped)
        return out

    def workers(self) -> dict[str, int]:
        """Workers running, restarts, packets and connections lost to deaths."""
        running = sum(1 for s in self.slots
                      if not s.done and s.proc is not None and s.proc.is_alive())  # fmt: skip
        return {
            "running": running,
            "restarts": sum(s.restarts for s in self.slots),
            "lost_packets": sum(s.lost_packets for s in self.slots),
            "lost_connections": sum(s.lost_connections for s in self.slots),
        }

    def snapshot(self) -> dict[str, Any]:
        """The run's counters so far, in `--stats` shape plus interfaces, workers and process
        (safe from any thread; the workers' counters are at most about a second old)."""
        from sensor.output.summary import stats_dict

        with self.lock:
            cap, tcp, totals, _ = self._counters()
            out = stats_dict(cap, tcp, totals)
            out["interfaces"] = self.interfaces()
            out["workers"] = self.workers()
            pids = [os.getpid()] + [s.proc.pid for s in self.slots
                                    if s.proc is not None and s.proc.pid is not None]  # fmt: skip
        out["process"] = {"rss_bytes": sum(pss_bytes(pid) for pid in pids)}
        return out

    def result(self) -> LiveResult:
        with self.lock:
            cap, tcp, totals, flushed = self._counters()
            totals.wall_s = time.perf_counter() - self.t0
            return LiveResult(cap, tcp, totals, flushed, self.interfaces(), self.workers())


_CONN: Final = 0
_SESSION: Final = 1
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


def pss_bytes(pid: int) -> int:
    """Process `pid`'s proportional set size (PSS): summed over the parent and its forked workers
    it counts each shared page once (their RSS would count the copy-on-write heap and the
    capture rings once per process). Its RSS where smaps_rollup is missing."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _add(into: Any, other: Any) -> None:
    """Add every int field of the dataclass `other` to `into`'s."""
    for f in fields(other):
        value = getattr(other, f.name)
        if isinstance(value, int):
            setattr(into, f.name, getattr(into, f.name) + value)


def _worker_main(
    source: LiveSource,
    key: int,
    ports: tuple[int, ...],
    wants: WorkerWants,
    limits: TcpLimits,
    conn: Connection,
    inherited: tuple[Connection, ...],
    parent: int,
    restart: bool,
    stopped: bool,
    heap_trim_s: float,
    reserve_bytes: int,
    cpus: tuple[int, ...],
) -> None:
    """Process entry: read this worker's handle until stopped, send everything; never returns."""
    code = 0
    try:
        # SIGHUP (reopen outputs, reload) is the parent's business: it owns every output.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        shutdown = Shutdown(abort_on_second=False)
        shutdown.install()
        shutdown.add_hook(lambda _signum: source.stop())
        if stopped:
            source.stop()
        die_with_parent(parent)
        for other in inherited:
            other.close()
        pin(cpus)  # before the reservation: its pages come from the pinned core's node
        kept = reserve(reserve_bytes).malloc_bytes  # this worker forks nothing
        HeapTrimmer(heap_trim_s, kept).start()  # a daemon thread: ends with the process
        try:
            if restart:
                conn.send((_Msg.RESYNCED, source.resync_ring()))
            result = _work(source, key, ports, wants, limits, conn)
        except SensorError as exc:
            conn.send((_Msg.FAILED, exc))
        except Exception:
            conn.send((_Msg.CRASHED, traceback.format_exc()))
        else:
            conn.send((_Msg.DONE, result))
        conn.close()
    except BaseException:  # the parent went away, or a signal before install(): just leave
        code = 1
    finally:
        os._exit(code)  # never pcap_close(): that would tear down the ring the parent keeps


def _work(
    source: LiveSource,
    key: int,
    ports: tuple[int, ...],
    wants: WorkerWants,
    limits: TcpLimits,
    conn: Connection,
) -> WorkerCounters:
    conn_lines, session_lines = wants.conn_lines, wants.session_lines
    conn_dict, session_dict, to_json_line = line_formatters(wants)
    conn_recs, session_recs = wants.conn_records, wants.session_records
    batch: list[Item] = []
    seq = itertools.count()
    send = conn.send
    at_end = False  # finish() flushes in table order, i.e. by start time
    clock = {"sent": time.monotonic(), "counters": time.monotonic(), "advanced": 0.0}

    def emit(kind: int, rec: Any, line: bytes | None, ts: float, duration: float) -> None:
        if at_end:
            batch.append((math.inf, ts, key, next(seq), kind, line, rec))
        else:
            now = max(source.last_ts, clock["advanced"])
            batch.append((now, ts + duration, key, next(seq), kind, line, rec))
        if len(batch) >= BATCH_RECORDS:
            flush(source.last_ts)

    def flush(progress: float) -> None:
        send((_Msg.BATCH, (progress, list(batch))))
        batch.clear()
        clock["sent"] = time.monotonic()

    def on_conn(rec: ConnRecord) -> None:
        line = to_json_line(conn_dict(rec)) if conn_lines else None
        emit(_CONN, rec if conn_recs else None, line, rec.ts, rec.duration_s)

    def on_session(s: SmtpSession) -> None:
        line = to_json_line(session_dict(s)) if session_lines else None
        emit(_SESSION, s if session_recs else None, line, s.ts, s.duration_s)

    pipe = Pipeline(
        ports=ports,
        on_conn=on_conn if conn_lines or conn_recs else None,
        on_session=on_session if session_lines or session_recs else None,
        tcp_limits=limits,
        handlers=None if wants.smtp else no_streams,
        smtp_limits=wants.smtp_limits,
        decode_limits=wants.decode_limits,
    )
    reasm_len = pipe.open_connections

    def tick(idle: bool) -> None:
        now = time.monotonic()
        if now - clock["sent"] >= WORKER_TICK_S:
            progress = source.last_ts
            if idle:  # drained: no packet older than this can still come
                progress = max(progress, time.time() - IDLE_LAG_S)
                # This worker's clock runs on its share of the packets only: on a quiet share
                # it would hold finished connections until its next packet, where one process
                # reading every packet would have emitted them.
                if progress > source.last_ts:
                    clock["advanced"] = progress
                    pipe.advance(progress)
            flush(progress)
        if now - clock["counters"] >= COUNTERS_INTERVAL_S:
            clock["counters"] = now
            send((_Msg.COUNTERS, (pipe.capture_stats, pipe.tcp_stats, pipe.totals, reasm_len())))

    pipe.run(source.frames(pipe.capture_stats, tick, counters=False))  # the parent reads them
    at_end = True
    before = pipe.totals.connections
    totals = pipe.finish()
    if batch:
        flush(math.inf)
    return pipe.capture_stats, pipe.tcp_stats, totals, totals.connections - before
