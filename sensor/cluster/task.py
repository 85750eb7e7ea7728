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

GC_YOUNG_THRESHOLD: Final = 4_000_000
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
    at_end = [False]  # records of the final flush are ordered by start time
    conn_dict, session_dict, to_line = line_formatters(wants)

    # The lines go into one buffer as they come and are cut out of it at the end: kept as
    # separate objects among the frames' short-lived bytes until the task ends, they spread
    # over the heap (a 100 MB file's 16 MB of lines took 110 MB of fresh pages, measured).
    lines = bytearray()
    ends: list[int] = []  # per item: end of its line in `lines`, -1 for none

    def on_conn(rec: ConnRecord) -> None:
        if wants.conn_lines:
            lines.extend(to_line(conn_dict(rec)))
            ends.append(len(lines))
        else:
            ends.append(-1)
        end = rec.ts if at_end[0] else reasm.emit_deadline
        items.append((pipe.frame_index, end, index, next(seq), 0, None,
                      rec if wants.conn_records else None))  # fmt: skip

    def on_session(s: SmtpSession) -> None:
        if wants.session_lines:
            lines.extend(to_line(session_dict(s)))
            ends.append(len(lines))
        else:
            ends.append(-1)
        end = s.ts if at_end[0] else reasm.emit_deadline
        items.append((pipe.frame_index, end, index, next(seq), 1, None,
                      s if wants.session_records else None))  # fmt: skip

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
    skipped = own_file(pipe, frames, index, claims)
    # The decoder counts into the pipeline's capture counters: keep those of this file only.
    own = replace(pipe.capture_stats, truncated_files=dict(pipe.capture_stats.truncated_files))
    result = TaskResult(index, items, skipped, {}, own, pipe.tcp_stats, pipe.totals,
                        errors=errors)  # fmt: skip
    for later in range(index + 1, len(spec.paths)):
        if not len(reasm):
            break
        stats = CaptureStats()  # later files are counted, and their errors told, by their task
        frames = open_files([spec.paths[later]], spec.bpf, stats, _silent)
        taken, read = read_on(pipe, frames, later, frozenset(spec.ports))
        result.read_on_frames += read
        if taken:
            result.claims[later] = taken
    if len(reasm):
        pipe.frame_index = len(spec.paths) << FILE_SHIFT
        at_end[0] = True
    pipe.finish()
    result.items = _with_lines(items, bytes(lines), ends)
    return result


def _with_lines(items: list[Item], lines: bytes, ends: list[int]) -> list[Item]:
    """The items with their lines cut out of `lines` (`ends[i]`: the end of item i's, -1 for
    none; each line starts where the previous one ended)."""
    out: list[Item] = []
    start = 0
    for (pos, end, worker, seq, kind, _none, rec), stop in zip(items, ends, strict=True):
        if stop < 0:
            out.append((pos, end, worker, seq, kind, None, rec))
        else:
            out.append((pos, end, worker, seq, kind, lines[start:stop], rec))
            start = stop
    return out


def _silent(path: str, reason: str) -> None:
    """Errors of a later file read on: its own task reports them."""
