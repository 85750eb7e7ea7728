"""One Dask task: analyse one file of a rotated archive, reading on for the flows it leaves open.

The task is pure: the same arguments give the same result, so that Dask may run it again on
another worker when one dies. docs/scaling.md ("Archives on Dask") describes the stitching.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from sensor.capture.source import open_files
from sensor.cluster.feed import FILE_SHIFT, Claims, own_file, read_on
from sensor.decode.packet import DecodeLimits
from sensor.parallel import Item, WorkerWants, line_formatters
from sensor.pipeline import Pipeline, RunTotals, no_streams
from sensor.records import CaptureStats, ConnRecord, SmtpSession, TcpStats

if TYPE_CHECKING:
    from sensor.tcp.reassembler import TcpLimits

GC_YOUNG_THRESHOLD: Final = 500_000
"""Young-generation threshold of the cyclic collector in a worker, as sensor.cli._tune_gc sets it
for one process: the packet loop's short-lived tuples otherwise trigger collections that find
nothing (10-15% of a task)."""


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
    skipped = own_file(pipe, frames, index, claims, position)
    # The decoder counts into the pipeline's capture counters: keep those of this file only.
    own = replace(pipe.capture_stats, truncated_files=dict(pipe.capture_stats.truncated_files))
    result = TaskResult(index, items, skipped, {}, own, pipe.tcp_stats, pipe.totals,
                        errors=errors)  # fmt: skip
    for later in range(index + 1, len(spec.paths)):
        if not len(reasm):
            break
        stats = CaptureStats()  # later files are counted, and their errors told, by their task
        frames = open_files([spec.paths[later]], spec.bpf, stats, _silent)
        taken, read = read_on(pipe, frames, later, position, frozenset(spec.ports))
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
