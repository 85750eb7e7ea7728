"""The client side of `--cluster`: submit one task per file, check the stitching, merge in order.

Tasks guess which flows of their file belong to connections an earlier file left open; the
client checks every guess against the claims of the earlier tasks, in file order, and runs a task
again with the exact claims when its guess was wrong. Records are delivered in archive order as
soon as every task that may still emit before a position has been checked.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from sensor.cluster.feed import FILE_SHIFT, Claims
from sensor.cluster.task import TaskResult, TaskSpec, run_task
from sensor.errors import SensorError
from sensor.parallel import Item, Outputs, ParallelResult, _deliver, add_totals, out_wants
from sensor.pipeline import RunTotals
from sensor.records import CaptureStats, TcpStats
from sensor.service.memory import one_malloc_arena
from sensor.tcp.reassembler import TcpLimits

if TYPE_CHECKING:
    from sensor.capture.source import ErrorHandler

LOCAL: Final = "local"
POLL_S: Final = 0.1
"""How often the client looks at a stop signal while it waits for tasks."""
TASK_RETRIES: Final = 2
"""Times Dask runs a task again after it raised (a dead worker is retried by the scheduler,
up to its distributed.scheduler.allowed-failures)."""
LOCAL_CONFIG: Final = {
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.tick.interval": "100ms",
    "distributed.nanny.pre-spawn-environ": {
        "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1,
    },
    "distributed.worker.multiprocessing-method": "fork",
    "distributed.worker.profile.enabled": False,
}
"""Dask settings of a LocalCluster started for a run. Its periodic housekeeping wakes less often
(idle, the defaults cost 0.09 s of CPU a second across scheduler, nannies and workers; these
half), CPU that a machine whose every core works for the run takes from the tasks. The
workers keep glibc's default trim threshold: Dask's MALLOC_TRIM_THRESHOLD_=65536 made a task,
which allocates and frees a frame's bytes per packet, a third slower. And the first workers are
forked from this process, which has imported distributed and the sensor already: a spawned
worker imports them again (0.5 s of CPU each, 1.5 s more of wall before the first task and
0.6 s more to close). Dask's statistical profiler is off in the workers: it walks the task
thread's stack every 10 ms, which took 2% of their CPU and slowed the task thread besides (the
dashboard's profile page stays empty). Only the start forks (outputs are still empty then,
stdout flushed); a worker the nanny restarts later is spawned (Dask's default), as the setting
holds only while the cluster starts."""
_PEAKS: Final = frozenset({"active_peak"})  # TcpStats fields merged by max, not summed


class _HeartbeatAtClose(logging.Filter):
    """Drops a worker's "Failed to communicate with scheduler during heartbeat" (logged with a
    traceback): the scheduler of a LocalCluster lives in this process, so it is unreachable only
    while the run closes it, and a heartbeat that fires meanwhile is no error to report."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to communicate with scheduler during "
                                              "heartbeat")


_HEARTBEAT_AT_CLOSE: Final = _HeartbeatAtClose()


class ClusterError(SensorError):
    """The cluster could not be reached, or a task failed for good."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class ClusterInput:
    """Capture files of one archive to analyse on a Dask cluster."""

    address: str
    """tcp://HOST:PORT of a scheduler, or local[:N] for a LocalCluster of N processes."""
    paths: tuple[str, ...]
    on_error: ErrorHandler
    note: Callable[[str], None]
    """Where the dashboard link and the progress lines go (stderr in the CLI)."""
    stop: threading.Event | None = None
    """Set by a stop signal: no more tasks are waited for; what was merged is delivered."""


def parse_address(value: str) -> str:
    """Check a --cluster value: local, local:N (N >= 1) or a scheduler address; else ValueError."""
    if value == LOCAL:
        return value
    if value.startswith(LOCAL + ":"):
        n = value[len(LOCAL) + 1 :]
        if not n.isdigit() or int(n) < 1:
            raise ValueError(f"expected local:N with N a positive integer, got {value!r}")
        return value
    scheme, sep, rest = value.partition("://")
    if not sep or not rest or scheme not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
        raise ValueError(f"expected tcp://HOST:PORT or local[:N], got {value!r}")
    return value


def archive_order(paths: Sequence[str], on_error: ErrorHandler) -> tuple[str, ...]:
    """The readable capture files by their first packet's time, as a single run reads them
    (absolute paths, for the workers); the others are reported through on_error."""
    from sensor.capture.source import _first_ts, _probe
    from sensor.capture.stream import is_stream

    found: list[tuple[float, int, str]] = []
    for index, path in enumerate(paths):
        if is_stream(path):
            on_error(path, "stdin and FIFOs cannot be read on a cluster")
            continue
        probed = _probe(path)
        if isinstance(probed, str):
            on_error(path, probed)
            continue
        fmt, compressed = probed
        found.append((_first_ts(path, fmt, compressed), index, os.path.abspath(path)))
    found.sort()
    return tuple(path for _ts, _index, path in found)


def run_cluster(
    src: ClusterInput,
    bpf: str,
    ports: Sequence[int],
    out: Outputs,
    limits: TcpLimits | None = None,
) -> ParallelResult:
    """Analyse the files of `src` on a Dask cluster, delivering records to `out` in the order of
    a single-process run over them.

    The caps of `limits` apply to each task's connections (those of its file and those it
    carries on into later files).
    """
    from sensor.capture import bpf as bpfmod

    bpfmod.validate(bpf)
    t0 = time.perf_counter()
    paths = archive_order(src.paths, src.on_error)
    spec = TaskSpec.of(paths, bpf, tuple(ports), out_wants(out),
                       limits if limits is not None else TcpLimits())  # fmt: skip
    failed = len(src.paths) - len(paths)
    if not paths:
        result = _merge([], failed)
        result.totals.wall_s = time.perf_counter() - t0
        return result
    with _client(src.address, src.note) as (client, dashboard):
        accepted = _run(client, spec, src, out, dashboard)
        if src.address.startswith(LOCAL):  # its workers ran this run's tasks only
            workers = sum(client.run(_cpu_seconds).values())
            src.note(f"sensor: cluster: {len(accepted)} files in {time.perf_counter() - t0:.1f} s;"
                     f" CPU seconds: workers {workers:.1f}, this process (client, scheduler, "
                     f"nannies) {_cpu_seconds():.1f}")
    result = _merge(accepted, failed)
    result.totals.wall_s = time.perf_counter() - t0
    return result


@contextmanager
def _client(address: str, note: Callable[[str], None]
            ) -> Iterator[tuple[Any, Callable[[], None]]]:  # fmt: skip
    """A Dask client of the scheduler at `address`, or of a LocalCluster started (and closed)
    here, with the call that completes its dashboard once the tasks are submitted; the
    dashboard link goes to `note`."""
    dask = _distributed()
    cluster: Any = None
    try:
        if address.startswith(LOCAL):
            n = int(address.partition(":")[2] or 0) or (os.cpu_count() or 1)
            one_malloc_arena()  # the workers, forked from here, run tasks off their main thread
            logging.getLogger("distributed.worker").addFilter(_HEARTBEAT_AT_CLOSE)  # inherited
            with _dask_config(LOCAL_CONFIG), _sigint_ignored(), _forked_workers_reset():
                # The scheduler serves its HTTP routes (the link, /health, /metrics) from the
                # start, and its dashboard pages from `_dashboard`, once the tasks run.
                cluster = dask.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                            silence_logs=logging.ERROR,
                                            scheduler_kwargs={"dashboard": False})  # fmt: skip
            client = dask.Client(cluster)
        else:
            client = dask.Client(address)  # waits distributed.comm.timeouts.connect
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"--cluster {address}: cannot connect: {exc}") from None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        note(f"sensor: cluster {address}: {workers} workers; dashboard {client.dashboard_link}")
        yield client, (lambda: _dashboard(cluster, note)) if cluster is not None else _nothing
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _nothing() -> None:
    """No dashboard to complete: a remote scheduler has its own."""


def _dashboard(cluster: Any, note: Callable[[str], None]) -> None:
    """Add the dashboard's pages to the LocalCluster's running scheduler.

    Importing the dashboard (bokeh) takes 0.3 s: done while the cluster starts, it held the
    workers' start back by as much; done here, the workers are already forked (without it)
    and at work. The pages are added as the scheduler adds them when started with a dashboard
    (distributed.dashboard.scheduler.connect, on its event loop)."""
    try:
        board: Any = importlib.import_module("distributed.dashboard.scheduler")  # untyped
    except ImportError as exc:  # bokeh missing: the HTTP routes stay, without the pages
        note(f"sensor: cluster: no dashboard pages: {exc}")
        return
    scheduler = cluster.scheduler

    async def attach() -> None:
        board.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="/")

    _distributed().utils.sync(cluster.loop, attach)


def _run(client: Any, spec: TaskSpec, src: ClusterInput, out: Outputs,
         dashboard: Callable[[], None]) -> list[TaskResult]:  # fmt: skip
    """Submit every file, check each result in file order, deliver what is settled; complete the
    dashboard once the tasks are submitted."""
    n = len(spec.paths)
    tag = os.urandom(4).hex()
    # One graph for every file (one message to the scheduler, not one per file); the first
    # file has no earlier one: its claims are known (none).
    done = _distributed().as_completed(client.map(
        run_task, [spec] * n, range(n), [{}] + [None] * (n - 1), pure=False,
        retries=TASK_RETRIES, key=[f"sensor-file-{i}-{tag}" for i in range(n)]))
    dashboard()
    results: dict[int, TaskResult] = {}
    claims: list[Claims] = [{} for _ in range(n)]
    accepted: list[TaskResult] = []
    pending: list[Item] = []  # accepted tasks' records in files not settled yet (read on)
    finished = 0
    while len(accepted) < n:
        if src.stop is not None and src.stop.is_set():
            src.note(f"sensor: cluster: stopped after {len(accepted)} of {n} files")
            break
        if not done.has_ready():
            if done.is_empty():  # cannot happen: every unchecked file has a task under way
                raise ClusterError("cluster: no task left for an unfinished file")
            time.sleep(POLL_S)
            continue
        for fut in done.next_batch(block=False):
            try:
                res: TaskResult = fut.result()
            except Exception as exc:  # a task that raised TASK_RETRIES times, KilledWorker
                raise ClusterError(f"cluster: a task failed: {type(exc).__name__}: {exc}") from None
            finally:
                fut.release()
            results[res.index] = res
            finished += 1
            for path, reason in res.errors:
                src.on_error(path, reason)
            src.note(f"sensor: cluster: [{finished}/{n}] {spec.paths[res.index]}: "
                     f"{len(res.items):,} records"
                     + (f", read on {res.read_on_frames:,} frames" if res.read_on_frames else ""))
        while len(accepted) in results:
            i = len(accepted)
            res = results.pop(i)
            if res.skipped is not None and res.skipped != claims[i]:
                src.note(f"sensor: cluster: {spec.paths[i]}: connections from earlier files "
                         "were not those guessed: analysing it again")
                finished -= 1
                done.add(client.submit(run_task, spec, i, claims[i], pure=False,
                                       retries=TASK_RETRIES,
                                       key=f"sensor-file-{i}-exact-{os.urandom(4).hex()}"))
                break
            for later, taken in res.claims.items():
                claims[later].update(taken)
            accepted.append(res)
            settled = len(accepted) << FILE_SHIFT  # no later task emits before this position
            pending = _deliver_before(pending, res.items, settled, out)
            res.items = []
    # Stopped early: the records the accepted tasks emitted while reading on into files not
    # settled stand, in a single run's order, among those files' records; they are left out
    # with them, so that what is written is a prefix of the single run's output.
    _deliver_before(pending, [], math.inf if len(accepted) == n else len(accepted) << FILE_SHIFT,
                    out)
    return accepted


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the LocalCluster's processes start, so that they keep ignoring it: the
    terminal's Ctrl-C goes to the whole process group, and only this process should act on it
    (stop waiting, deliver what is settled, close the cluster), not die in every worker with a
    traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


class _ForkHook:
    """Keeps the after-fork hook of `_forked_workers_reset` registered while it lives."""


@contextmanager
def _forked_workers_reset() -> Iterator[None]:
    """While the LocalCluster starts, a worker process forked from this one gets SIGTERM's
    default action back: it inherits this process's stop handler, which would make it outlive
    the nanny's terminate. (SIGINT stays ignored, see `_sigint_ignored`.)"""
    from multiprocessing import util

    hook = _ForkHook()
    util.register_after_fork(hook, _default_sigterm)  # held weakly: gone with `hook`
    try:
        yield
    finally:
        del hook


def _default_sigterm(_hook: _ForkHook) -> None:
    """In a forked worker: SIGTERM ends the process again."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _cpu_seconds() -> float:
    """User and system CPU seconds of the calling process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _dask_config(values: dict[str, Any]) -> Any:
    """A context in which Dask's configuration holds `values`."""
    import dask

    return dask.config.set(values)


def _distributed() -> Any:
    """The distributed package (untyped: its calls are checked by the tests)."""
    import distributed

    return distributed


def _deliver_before(pending: list[Item], new: list[Item], limit: float, out: Outputs
                    ) -> list[Item]:
    """Deliver the items of `pending` and `new` before position `limit` in merge order; returns
    the others.

    Each task's items come in emission order, nearly merge order already: sorting their
    concatenation mostly merges a few sorted runs, a twentieth of the time of a heap fed item by
    item. No two items compare equal (their task and sequence number differ), so the order is
    that of the heap it replaces."""
    ready = [item for item in pending if item[0] < limit]
    rest = [item for item in pending if item[0] >= limit]
    for item in new:
        (ready if item[0] < limit else rest).append(item)
    ready.sort()
    _deliver(iter(ready), out)
    return rest


def _merge(accepted: list[TaskResult], failed: int) -> ParallelResult:
    """The counters of a run: every task's summed (each file is counted by its own task)."""
    cap = CaptureStats(files_failed=failed)
    tcp = TcpStats()
    totals = RunTotals()
    for res in accepted:
        for f in fields(CaptureStats):
            value = getattr(res.capture_stats, f.name)
            if isinstance(value, int):
                setattr(cap, f.name, getattr(cap, f.name) + value)
        cap.truncated_files.update(res.capture_stats.truncated_files)
        for f in fields(TcpStats):
            mine, theirs = getattr(tcp, f.name), getattr(res.tcp_stats, f.name)
            setattr(tcp, f.name, max(mine, theirs) if f.name in _PEAKS else mine + theirs)
        add_totals(totals, res.totals)
    totals.anomalies = dict(sorted(totals.anomalies.items()))
    return ParallelResult(cap, tcp, totals, 0)  # a stop signal flushes nothing: see _run
