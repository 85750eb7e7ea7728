"""Flow-split analysis: forked workers each reassemble a share of the flows; the parent merges."""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import itertools
import math
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final

from sensor.capture.source import STOP_CHECK_FRAMES, CutAgreement, ErrorHandler
from sensor.decode.packet import DecodeLimits
from sensor.errors import SensorError
from sensor.pipeline import Pipeline, RunTotals, no_streams
from sensor.records import CaptureStats, ConnRecord, SmtpSession, TcpStats
from sensor.service.signals import Shutdown, die_with_parent
from sensor.smtp.limits import SmtpLimits
from sensor.tcp.reassembler import TcpLimits

if TYPE_CHECKING:
    from sensor.output.privacy import Privacy

START_METHOD: Final = "fork"
"""Workers are forked: they inherit the validated configuration and the parent's frozen heap
without pickling, and start in milliseconds (Linux; the sensor is not run on Windows/macOS)."""
MAX_WORKERS_AUTO = 8
"""`--workers auto` uses one worker per core, at most this many."""
BATCH_RECORDS = 128
"""Records a worker sends to the parent in one message (one pickle, one pipe write)."""
PIPE_BUFFER_BYTES = 1 << 20
"""Kernel buffer asked for each worker's pipe (Linux caps it at /proc/sys/fs/pipe-max-size):
how far a worker may run ahead of the merge before it blocks (backpressure)."""

CUT_CATCH_UP_FRAMES = 256 * STOP_CHECK_FRAMES
"""After a stop signal, how far past the frame where it saw the signal a worker reads at most to
stop at the same frame as the others (beyond this, it stops where it is)."""
_END_OF_INPUT: Final = 1 << 62  # a cut position meaning: the end of the input

LineSink = Callable[[bytes], None]
Item = tuple[int, float, int, int, int, bytes | None, Any]
"""(frame index at emission, expiry deadline, worker, sequence, RecordKind, JSON line or None,
record or None): the first four order the merge. Records emitted at the same frame by one
expiry pass come in the order of the deadlines that ended them, as the reassembler's deadline
heap emits them (`Reassembler.emit_deadline`; -inf for a record emitted outside a pass); those
flushed at the end of input in order of their start time, as its table is."""


class RecordKind(IntEnum):
    """What an item a worker sends carries."""

    CONN = 0
    """A ConnRecord (and/or its JSON line)."""
    SESSION = 1
    """An SmtpSession (and/or its JSON line)."""


class _Msg(IntEnum):
    """Tags of the last message of a worker's stream."""

    DONE = 0
    """Normal end: the worker's CaptureStats, TcpStats and RunTotals follow."""
    FAILED = 1
    """A SensorError was raised in the worker: the error object follows."""
    CRASHED = 2
    """Any other exception: its formatted traceback follows."""


# Plain ints of RecordKind travel in every item: an enum member pickles as a call to its class.
_CONN = int(RecordKind.CONN)
_SESSION = int(RecordKind.SESSION)


@dataclass(slots=True, frozen=True)
class ParallelInput:
    """Capture files to analyse with `workers` processes (workers >= 2)."""

    paths: tuple[str, ...]
    workers: int
    on_error: ErrorHandler
    shutdown: Shutdown | None = None
    """Stop signals of the parent: forwarded to the workers, which then flush what they hold."""


@dataclass(slots=True, frozen=True)
class Outputs:
    """What the parent does with merged records; a None callback is not produced by workers."""

    conn_line: LineSink | None = None
    session_line: LineSink | None = None
    conn: Callable[[ConnRecord], None] | None = None
    session: Callable[[SmtpSession], None] | None = None
    smtp: bool = True
    """False: workers stop after reassembly (nothing reads SMTP sessions)."""
    smtp_limits: SmtpLimits | None = None
    """The SMTP parser's bounds ([smtp] in the configuration); None: the defaults."""
    decode_limits: DecodeLimits | None = None
    """The frame decoder's bounds ([decode] in the configuration); None: the defaults."""
    privacy: Privacy | None = None
    """[privacy]: applied by the workers to the lines they format (the records they send for
    detection stay raw); inherited through the fork."""


@dataclass(slots=True)
class ParallelResult:
    """The merged counters of every worker (capture counters are counted once)."""

    capture_stats: CaptureStats
    tcp_stats: TcpStats
    totals: RunTotals
    flushed: int = 0
    """Connections the workers flushed at the end of their input (all workers together)."""


def resolve_workers(value: str) -> int:
    """'auto' -> one per core (at most MAX_WORKERS_AUTO); a positive integer -> itself."""
    if value == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS_AUTO))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"expected a positive integer or 'auto', got {value!r}")
    return int(value)


def run_parallel(
    src: ParallelInput,
    bpf: str,
    ports: Sequence[int],
    out: Outputs,
    limits: TcpLimits | None = None,
) -> ParallelResult:
    """Analyse `src` with forked workers, delivering records to `out` in a deterministic order.

    Each worker gets 1/workers of the global caps in `limits` (the memcap, connections, bytes
    buffered). Unreadable files are reported once through src.on_error; an invalid `bpf` raises
    CaptureError before any worker starts. A stop signal of `src.shutdown` is forwarded to every
    worker, which stops reading and flushes what it holds; the merge goes on to the end. Workers
    die with this process (PR_SET_PDEATHSIG, and a broken pipe), and are killed when it leaves
    early (an exception, a second signal).
    """
    share = (limits if limits is not None else TcpLimits()).split(src.workers)
    from sensor.capture.source import open_files

    t0 = time.perf_counter()
    open_files(src.paths, bpf, CaptureStats(), src.on_error)  # validate once, report once
    ctx = multiprocessing.get_context(START_METHOD)
    conns: list[Connection] = []
    procs: list[multiprocessing.process.BaseProcess] = []
    finals: list[WorkerFinal | None] = [None] * src.workers
    parent = os.getpid()
    cut_state = ctx.Array("q", 2)  # shared with the workers: see _SharedCut

    def forward(signum: int) -> None:
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signum)

    if src.shutdown is not None:
        src.shutdown.add_hook(forward)
    try:
        for k in range(src.workers):
            recv_end, send_end = ctx.Pipe(duplex=False)
            _grow_pipe(send_end)
            # A worker must not hold the read end of any pipe (its own or an earlier worker's):
            # then a write to a pipe whose parent is gone fails at once instead of blocking.
            inherited = (*conns, recv_end)
            proc = ctx.Process(
                target=_worker_main,
                args=(src.paths, bpf, tuple(ports), src.workers, k, out_wants(out), share,
                      send_end, inherited, parent, src.shutdown,
                      _SharedCut(cut_state, src.workers)),
                name=f"sensor-worker-{k}",
                daemon=True,
            )  # fmt: skip
            proc.start()
            send_end.close()
            conns.append(recv_end)
            procs.append(proc)
        streams = [_stream(k, c, procs[k], finals) for k, c in enumerate(conns)]
        _deliver(heapq.merge(*streams), out)
        for done in procs:
            done.join()
    finally:
        if src.shutdown is not None:
            src.shutdown.remove_hook(forward)
        for left in procs:
            if left.is_alive():
                left.kill()  # SIGKILL: a worker treats repeated stop signals as one
                left.join()
        for c in conns:
            c.close()
    result = _merge_results([f for f in finals if f is not None])
    result.totals.wall_s = time.perf_counter() - t0
    return result


@dataclass(frozen=True, slots=True)
class WorkerWants:
    """What a worker must produce for the parent's Outputs (callbacks do not cross processes)."""

    conn_lines: bool
    session_lines: bool
    conn_records: bool
    session_records: bool
    smtp: bool
    """False: stop after reassembly (nothing reads SMTP sessions)."""
    smtp_limits: SmtpLimits | None = None
    decode_limits: DecodeLimits | None = None
    privacy: Privacy | None = None


def out_wants(out: Outputs) -> WorkerWants:
    """Which records workers must send for `out`, and whether they parse SMTP at all."""
    return WorkerWants(
        conn_lines=out.conn_line is not None,
        session_lines=out.session_line is not None,
        conn_records=out.conn is not None,
        session_records=out.session is not None,
        smtp=out.smtp,
        smtp_limits=out.smtp_limits,
        decode_limits=out.decode_limits,
        privacy=out.privacy if out.privacy is not None and out.privacy.enabled else None,
    )


def line_formatters(
    wants: WorkerWants,
) -> tuple[
    Callable[[ConnRecord], dict[str, Any]],
    Callable[[SmtpSession], dict[str, Any]],
    Callable[[Any], bytes],
]:
    """How a worker (of --workers, live fanout or a Dask task) turns records into log lines,
    the privacy settings applied: only what is written changes, the records sent stay raw."""
    from sensor.output.jsonl import conn_to_dict, to_json_line
    from sensor.smtp.schema import session_to_dict

    privacy = wants.privacy
    if privacy is None:
        return conn_to_dict, session_to_dict, to_json_line
    return (lambda r: privacy.conn(conn_to_dict(r)),
            lambda s: privacy.session(session_to_dict(s)),
            to_json_line)  # fmt: skip


def _grow_pipe(conn: Connection) -> None:
    """Ask the kernel for a larger pipe buffer; the default (64 KiB) still works, only slower."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BUFFER_BYTES)


def _deliver(items: Iterator[tuple[float, float, int, int, int, bytes | None, Any]],
             out: Outputs) -> None:
    """Hand merged items to the outputs (their first field, an ordering key, is not read:
    a frame index here, a packet time for the live aggregator)."""
    conn_line, session_line, on_conn, on_session = (
        out.conn_line,
        out.session_line,
        out.conn,
        out.session,
    )
    for _idx, _end, _k, _seq, kind, line, rec in items:
        if kind == _CONN:
            if conn_line is not None and line is not None:
                conn_line(line)
            if on_conn is not None:
                on_conn(rec)
        else:
            if session_line is not None and line is not None:
                session_line(line)
            if on_session is not None:
                on_session(rec)


WorkerFinal = tuple[CaptureStats, TcpStats, RunTotals, int]
"""What a worker sends last: its counters and how many connections it flushed at the end."""


def _stream(
    k: int,
    conn: Connection,
    proc: multiprocessing.process.BaseProcess,
    finals: list[WorkerFinal | None],
) -> Iterator[Item]:
    """Worker k's items in its emission order; stores its counters in finals[k] at the end."""
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            proc.join()
            raise SensorError(
                f"worker {k} ended without its results (exit code {proc.exitcode})"
            ) from None
        if isinstance(msg, list):
            yield from msg
            continue
        tag, payload = msg
        if tag == _Msg.DONE:
            finals[k] = payload
            return
        if tag == _Msg.FAILED:
            raise payload
        raise RuntimeError(f"worker {k} failed:\n{payload}")


def _merge_results(finals: list[WorkerFinal]) -> ParallelResult:
    """Capture counters from one worker (every worker reads every frame); the rest summed.

    After a stop signal the workers stopped at nearby but different frames: the capture counters
    are then those of the worker that read furthest.
    """
    cap = finals[0][0]
    for other in finals[1:]:
        if other[0].packets > cap.packets:
            cap = other[0]
    tcp = TcpStats()
    totals = RunTotals()
    flushed = 0
    for _cap, t, r, n_flushed in finals:
        flushed += n_flushed
        for f in fields(TcpStats):
            setattr(tcp, f.name, getattr(tcp, f.name) + getattr(t, f.name))
        add_totals(totals, r)
    totals.anomalies = dict(sorted(totals.anomalies.items()))
    return ParallelResult(cap, tcp, totals, flushed)


def add_totals(into: RunTotals, r: RunTotals) -> None:
    """Add one share's run totals (of a worker, a Dask task) to `into`."""
    for name in ("connections", "sessions", "transactions", "messages", "recipients",
                 "auth_attempts"):  # fmt: skip
        setattr(into, name, getattr(into, name) + getattr(r, name))
    if r.first_ts is not None and (into.first_ts is None or r.first_ts < into.first_ts):
        into.first_ts = r.first_ts
    if r.last_ts is not None and (into.last_ts is None or r.last_ts > into.last_ts):
        into.last_ts = r.last_ts
    for name, n in r.anomalies.items():
        into.anomalies[name] = into.anomalies.get(name, 0) + n


class _SharedCut(CutAgreement):
    """Workers that read the same frames stop at the same one after a signal.

    Shared memory holds [the cut: the furthest position any worker stands at or has committed to
    reach, the workers that saw the signal or the end]. At every slice boundary after the signal,
    a worker stops if every worker has reported and it stands at the cut; else it reads on to its
    next boundary, first raising the cut to it. No worker waits for another (the merge never
    stalls), and all stop at the same frame: the furthest one's next boundary once the last has
    seen the signal. A worker that would have to read more than CUT_CATCH_UP_FRAMES past where
    it saw the signal stops where it is.
    """

    def __init__(self, shared: Any, workers: int) -> None:
        self._shared = shared
        self._workers = workers
        self._seen_at = -1

    def reached(self, position: int) -> bool:
        shared = self._shared
        with shared.get_lock():
            if self._seen_at < 0:
                self._seen_at = position
                shared[1] += 1
            if position > shared[0]:
                shared[0] = position
            agreed: bool = shared[1] >= self._workers and position >= shared[0]
            if agreed or position - self._seen_at >= CUT_CATCH_UP_FRAMES:
                return True
            # Reading on commits this worker to the next boundary: no one may stop before it.
            shared[0] = max(shared[0], position + STOP_CHECK_FRAMES)
            return False

    def finished(self) -> None:
        shared = self._shared
        with shared.get_lock():
            if self._seen_at < 0:
                self._seen_at = 0
                shared[1] += 1
            shared[0] = _END_OF_INPUT


def _worker_main(
    paths: tuple[str, ...],
    bpf: str,
    ports: tuple[int, ...],
    workers: int,
    index: int,
    wants: WorkerWants,
    limits: TcpLimits,
    conn: Connection,
    inherited: tuple[Connection, ...],
    parent: int,
    parent_shutdown: Shutdown | None,
    cut: CutAgreement,
) -> None:
    """Process entry: analyse this worker's share and send everything; never returns.

    The worker dies with its parent; a stop signal (the parent's forward, or the terminal's
    SIGINT to the whole group) makes it stop reading, flush and send what it holds.
    """
    code = 0
    try:
        shutdown = Shutdown(abort_on_second=False)
        shutdown.install()
        if parent_shutdown is not None and parent_shutdown.stop.is_set():
            shutdown.stop.set()  # the signal came between the fork and install()
        die_with_parent(parent)
        for other in inherited:
            other.close()
        try:
            result = _work(
                paths, bpf, ports, workers, index, wants, limits, conn, shutdown, cut
            )
        except SensorError as exc:
            conn.send((_Msg.FAILED, exc))
        except Exception:
            conn.send((_Msg.CRASHED, traceback.format_exc()))
        else:
            conn.send((_Msg.DONE, result))
        conn.close()
    except BrokenPipeError:  # the parent went away
        code = 1
    except BaseException:  # e.g. the parent's inherited handler, before install(): just leave
        code = 1
    finally:
        os._exit(code)  # skip inherited buffers and atexit hooks: the parent owns every output


def _work(
    paths: tuple[str, ...],
    bpf: str,
    ports: tuple[int, ...],
    workers: int,
    index: int,
    wants: WorkerWants,
    limits: TcpLimits,
    conn: Connection,
    shutdown: Shutdown,
    cut: CutAgreement,
) -> WorkerFinal:
    from sensor.capture.source import open_files

    conn_lines, session_lines = wants.conn_lines, wants.session_lines
    conn_dict, session_dict, to_json_line = line_formatters(wants)
    conn_recs, session_recs = wants.conn_records, wants.session_records
    batch: list[Item] = []
    seq = itertools.count()
    send = conn.send
    pipe: Pipeline | None = None
    at_end = False  # finish() flushes in table order, i.e. by start time

    def on_conn(rec: ConnRecord) -> None:
        line = to_json_line(conn_dict(rec)) if conn_lines else None
        end = rec.ts if at_end else _deadline(pipe)
        batch.append((_frame(pipe), end, index, next(seq), _CONN, line, rec if conn_recs else None))
        if len(batch) >= BATCH_RECORDS:
            send(batch)
            batch.clear()

    def on_session(s: SmtpSession) -> None:
        line = to_json_line(session_dict(s)) if session_lines else None
        end = s.ts if at_end else _deadline(pipe)
        batch.append(
            (_frame(pipe), end, index, next(seq), _SESSION, line, s if session_recs else None)
        )
        if len(batch) >= BATCH_RECORDS:
            send(batch)
            batch.clear()

    pipe = Pipeline(
        ports=ports,
        on_conn=on_conn if conn_lines or conn_recs else None,
        on_session=on_session if session_lines or session_recs else None,
        tcp_limits=limits,
        handlers=None if wants.smtp else no_streams,
        smtp_limits=wants.smtp_limits,
        decode_limits=wants.decode_limits,
    )
    frames = open_files(paths, bpf, pipe.capture_stats, _ignore_error, stop=shutdown.stop, cut=cut)
    pipe.run_share(frames, workers, index)
    at_end = True
    before = pipe.totals.connections
    totals = pipe.finish()
    if batch:
        send(batch)
    return pipe.capture_stats, pipe.tcp_stats, totals, totals.connections - before


def _frame(pipe: Pipeline | None) -> int:
    return pipe.frame_index if pipe is not None else 0


def _deadline(pipe: Pipeline | None) -> float:
    """The deadline of the expiry pass emitting the record now (-inf outside one): a single
    run's pass emits in deadline order, which a connection's end time only approximates."""
    return pipe.reassembler.emit_deadline if pipe is not None else -math.inf


def _ignore_error(path: str, reason: str) -> None:
    """Workers stay silent about unreadable files: the parent reported them before forking."""
