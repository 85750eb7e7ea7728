"""`sensor detect`: features, rules and the model over every sensor's records, read through a
consumer group, acknowledged only once applied and committed (docs/scaling.md)."""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, BinaryIO, Final

from sensor.detect.detector import Detector
from sensor.errors import OutputError, RecordError
from sensor.output.readers import record_from_line
from sensor.records import Alert, ConnRecord
from sensor.stream.entries import CONN, END, SESSION, EntryError, Parsed
from sensor.stream.merge import INF, Merge
from sensor.stream.transport import StreamTransport, TransportError

READ_COUNT: Final = 1000  # entries per XREADGROUP
BLOCK_S: Final = 1.0  # longest wait for new entries (then the loop checks its timers)
COMMIT_EVERY: Final = 5000  # records applied between commits, at most
COMMIT_INTERVAL_S: Final = 1.0  # and at least this often while records come
MAX_BUFFER: Final = 200_000  # entries held for the merge; beyond, the oldest go on (late)
SENSOR_TIMEOUT_S: Final = 30.0
BACKOFF_MAX_S: Final = 5.0
CHECKPOINT_VERSION: Final = 1
PRUNE_EVERY: Final = 100  # commits between looks for ended sources the stream no longer holds
STOP_COMMIT_S: Final = 10.0  # after a stop signal, how long a failing commit is retried


def shard_of(ip: str, shards: int) -> int:
    """The shard (0..shards-1) that owns a host: CRC-32 of its address, the same everywhere."""
    return zlib.crc32(ip.encode()) % shards


@dataclass(slots=True)
class StreamStats:
    """What the detector read, applied and committed (all restarts of one group together for
    `records`, `alerts`; this process's for the rest)."""

    read: int = 0  # entries delivered to this process
    records: int = 0  # records applied to the per-host state since the group began
    replayed: int = 0  # of those, re-applied from the stream at start-up (state rebuilt)
    other_shards: int = 0  # entries whose hosts belong to other shards (acknowledged, skipped)
    duplicates: int = 0  # entries already applied (sent again after a failure)
    late: int = 0  # entries behind the merge (a sensor that fell silent, then resumed)
    bad: int = 0  # entries or records that could not be read (acknowledged, skipped)
    alerts: int = 0  # alerts written since the group began
    muted: int = 0  # alerts the replay produced again and did not write (written before)
    commits: int = 0
    commit_failures: int = 0
    read_failures: int = 0
    sources: int = 0  # publisher runs met since this process started
    pruned: int = 0  # ended sources forgotten once the stream no longer held their entries


class AlertLog:
    """The --alerts file, appended to and flushed to disk before each commit, so that its
    length at the last commit says which alerts are durable; a restart cuts off the rest."""

    def __init__(self, path: str, resume_at: int | None, warn: Callable[[str], None]) -> None:
        self.path = path
        self.offset = 0
        try:
            if path == "-":
                self._fh: BinaryIO = sys.stdout.buffer
                self._owned = False
                return
            self._owned = True
            if resume_at is None or not os.path.exists(path):
                self._fh = open(path, "wb")  # noqa: SIM115 - closed by close()
                return
            self._fh = open(path, "r+b")  # noqa: SIM115 - closed by close()
            size = os.fstat(self._fh.fileno()).st_size
            if size > resume_at:
                warn(f"{path}: {size - resume_at} bytes of alerts written after the last "
                     "commit cut off (they are written again)")
                self._fh.truncate(resume_at)
            elif size < resume_at:
                warn(f"{path}: shorter than at the last commit (rotated?): appending")
            self._fh.seek(0, os.SEEK_END)
            self.offset = self._fh.tell()
        except OSError as exc:
            raise OutputError(f"{path}: cannot open for writing: {exc.strerror}") from None

    def write(self, lines: list[bytes]) -> int:
        """Append the lines and make them durable; returns the file's length."""
        try:
            if lines:
                self._fh.write(b"".join(lines))
            self._fh.flush()
            if self._owned and lines:
                os.fsync(self._fh.fileno())
                self.offset = self._fh.tell()
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed: {exc.strerror}") from None
        return self.offset

    def close(self) -> None:
        """Flush and close (standard output is flushed, not closed)."""
        try:
            self._fh.flush()
            if self._owned:
                self._fh.close()
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed: {exc.strerror}") from None


class StreamDetector:
    """The detect loop of one group (one shard): replay, then read, merge, apply, commit.

    Delivery: an entry is acknowledged in the same MULTI/EXEC that stores the checkpoint (per
    source, the highest sequence number applied; the alerts written and the --alerts file's
    length), after the alerts its records raised are on disk. After a crash, the start-up
    replays from the stream, muted, every entry the checkpoint covers (rebuilding the per-host
    state exactly while the stream still holds them), cuts the alerts file back to its
    committed length, and then takes the group's pending entries again: each record is applied
    to the state once and each alert written once.
    """

    def __init__(self, transport: StreamTransport, group: str, consumer: str, key: str,
                 make_detector: Callable[[Callable[[Alert], None]], Detector],
                 shard: tuple[int, int] = (0, 1), sensor_timeout_s: float = SENSOR_TIMEOUT_S,
                 commit_every: int = COMMIT_EVERY,
                 warn: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.group = group
        self.consumer = consumer
        self.key = key
        self.stats = StreamStats()
        self._warn = warn or (lambda _text: None)
        self._shard, self._shards = shard
        self.detector = make_detector(self._on_alert)
        if self._shards > 1:
            index, shards = self._shard, self._shards
            self.detector.table.owns = lambda ip: shard_of(ip, shards) == index
        self._timeout = sensor_timeout_s
        self._commit_every = commit_every
        self.applied: dict[str, int] = {}
        self._outbox: list[Alert] = []
        self._to_ack: list[str] = []
        self._mute = 0
        self._since_commit = 0
        self._final_alerts = 0
        self.ended: dict[str, str] = {}  # sources whose end was applied: the end's entry id
        self.alert_log: AlertLog | None = None
        self.on_alerts: Callable[[list[Alert]], None] | None = None  # after each commit
        self.format_alert: Callable[[Alert], bytes] | None = None
        self.stopping = False
        self.resume_offset: int | None = None
        self._merge = Merge(None, sensor_timeout_s)

    # -- records ------------------------------------------------------------------------------

    def _on_alert(self, alert: Alert) -> None:
        if self._mute > 0:
            self._mute -= 1
            self.stats.muted += 1
            return
        self._outbox.append(alert)

    def _owned(self, p: Parsed) -> bool:
        if self._shards == 1:
            return True
        if shard_of(p.client, self._shards) == self._shard:
            return True
        return p.kind == SESSION and shard_of(p.server, self._shards) == self._shard

    def _apply(self, p: Parsed, replay: bool) -> None:
        """One entry, in merge order: its record to the detector when it is ours."""
        if p.kind in (CONN, SESSION):
            if not self._owned(p):
                self.stats.other_shards += 1
            else:
                try:
                    rec = record_from_line(p.rec)
                except RecordError as exc:
                    self.stats.bad += 1
                    self._warn(f"entry {p.id} from {p.src}: unreadable record ({exc})")
                    rec = None
                if rec is not None:
                    if isinstance(rec, ConnRecord):
                        self.detector.on_conn(rec)
                    else:
                        self.detector.on_session(rec)
                    self.stats.records += 1
                    if replay:
                        self.stats.replayed += 1
        self.applied[p.src] = p.seq
        if p.kind == END:
            self.ended[p.src] = p.id
        if not replay:
            self._to_ack.append(p.id)
            self._since_commit += 1

    # -- start-up: checkpoint and replay -------------------------------------------------------

    def start(self) -> None:
        """Create the group, load the checkpoint, rebuild the state from the stream."""
        self._retry(lambda: self.transport.create_group(self.group))
        raw = self._retry(lambda: self.transport.load_checkpoint(self.key))
        if raw is None:
            return
        try:
            ck = json.loads(raw)
            applied = {str(k): int(v) for k, v in ck["applied"].items()}
            alerts, offset = int(ck["alerts"]), int(ck["alerts_offset"])
            final_alerts, records = int(ck.get("final_alerts", 0)), int(ck["records"])
            ended = {str(k): str(v) for k, v in ck.get("ended", {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._warn(f"checkpoint {self.key}: unreadable ({exc}); starting afresh")
            return
        self.resume_offset = offset
        self.stats.alerts = alerts
        self._final_alerts = final_alerts
        self._mute = alerts - final_alerts  # the final flush of an --until-idle run replays not
        complete = self._replay(applied)
        if not complete:  # trimmed: only what the replay gave again was written before
            self._mute = 0
        self.stats.records = max(self.stats.records, records)
        self.applied = dict(applied)
        self.ended = {k: v for k, v in ended.items() if k in applied}
        self._merge = Merge(dict(applied), self._timeout)

    def _replay(self, floor: dict[str, int]) -> bool:
        """Re-apply, muted, the entries the checkpoint covers; whether the stream held all."""
        merge = Merge(None, INF)
        merge.expect(list(floor))
        first: dict[str, int] = {}
        after = ""
        while True:
            batch = self._retry(partial(self.transport.read_range, after, READ_COUNT))
            if not batch:
                break
            after = batch[-1][0]
            for eid, fields in batch:
                try:
                    p = Parsed(eid, fields)
                except EntryError:
                    continue
                top = floor.get(p.src, 0)
                if p.seq > top:
                    continue
                first.setdefault(p.src, p.seq)
                if merge.add(p, 0.0) and p.seq == top:
                    merge.end(p.src)
            if len(merge) > MAX_BUFFER:
                for name in floor:
                    if name not in first:
                        merge.end(name)  # never seen: trimmed away
            for p in merge.pop(merge.watermark(0.0)):
                self._apply(p, replay=True)
        for p in merge.pop(INF):
            self._apply(p, replay=True)
        return all(first.get(name) == 1 for name in floor)

    # -- the loop -----------------------------------------------------------------------------

    def _retry(self, op: Callable[[], Any]) -> Any:
        """Run a transport operation until it succeeds (or the detector is told to stop)."""
        backoff = 0.1
        while True:
            try:
                return op()
            except TransportError as exc:
                self.stats.read_failures += 1
                self._warn(f"stream server: {exc}; retrying")
                if self.stopping:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _take(self, entries: list[tuple[str, dict[bytes, bytes]]], now: float) -> None:
        for eid, fields in entries:
            self.stats.read += 1
            try:
                p = Parsed(eid, fields)
            except EntryError as exc:
                self.stats.bad += 1
                self._warn(f"entry {eid}: not a sensor record ({exc}); skipped")
                self._to_ack.append(eid)
                continue
            if not self._merge.add(p, now):
                self._to_ack.append(eid)  # a duplicate: applied before
        self.stats.duplicates = self._merge.duplicates
        self.stats.late = self._merge.late
        self.stats.sources = self._merge.seen

    def run(self, until_idle_s: float | None = None) -> None:
        """Read and apply until `stopping` is set or, with `until_idle_s`, until no entry has
        come for that long (then flush as `sensor analyze` does at the end of its input)."""
        self._retry(lambda: self.transport.claim_pending(self.group, self.consumer))
        after = "0"
        while True:  # this consumer's pending entries first: delivered before, never acked
            got = self._retry(partial(self.transport.read_group, self.group, self.consumer,
                                      READ_COUNT, 0, pending_after=after))
            if not got:
                break
            after = got[-1][0]
            self._take(got, time.monotonic())
        last_entry = last_commit = time.monotonic()
        final = down = False
        while not self.stopping:
            try:
                got = self.transport.read_group(self.group, self.consumer, READ_COUNT, BLOCK_S)
                if down:
                    self._warn("stream server: reading again")
                    down = False
            except TransportError as exc:
                self.stats.read_failures += 1
                if not down:  # once per outage: the counters tell the rest
                    self._warn(f"stream server: {exc}; retrying every second")
                down = True
                time.sleep(1.0)
                got = []
            now = time.monotonic()
            if got:
                last_entry = now
                self._take(got, now)
            if until_idle_s is not None and not got and now - last_entry >= until_idle_s:
                final = True
            if len(got) < READ_COUNT or len(self._merge) > MAX_BUFFER or final:
                limit = INF if final else self._merge.watermark(now)
                if len(self._merge) > MAX_BUFFER and not final:
                    limit = INF  # too far behind a silent sensor: go on without it
                for p in self._merge.pop(limit):
                    self._apply(p, replay=False)
                    if self._since_commit >= self._commit_every:
                        self.commit()
                        last_commit = time.monotonic()
            if final:
                before = len(self._outbox)
                self.detector.finish()
                self._final_alerts += len(self._outbox) - before
                self.commit()
                return
            if (self._to_ack or self._outbox) and now - last_commit >= COMMIT_INTERVAL_S:
                self.commit()
                last_commit = now
        self.commit()

    def commit(self) -> None:
        """Alerts to disk, then acks and checkpoint in one transaction, then the other sinks."""
        alerts = self._outbox
        fmt = self.format_alert
        offset = 0
        if self.alert_log is not None and fmt is not None:
            offset = self.alert_log.write([fmt(a) for a in alerts])
        self.stats.alerts += len(alerts)
        if self.stats.commits % PRUNE_EVERY == PRUNE_EVERY - 1:
            self._prune()
        ck = json.dumps({"v": CHECKPOINT_VERSION, "applied": self.applied, "ended": self.ended,
                         "alerts": self.stats.alerts, "alerts_offset": offset,
                         "final_alerts": self._final_alerts, "records": self.stats.records,
                         "consumer": self.consumer}, separators=(",", ":")).encode()
        ids = self._to_ack
        backoff = 0.1
        give_up = time.monotonic() + STOP_COMMIT_S
        while True:
            try:
                self.transport.commit(self.group, ids, self.key, ck)
                break
            except TransportError as exc:
                self.stats.commit_failures += 1
                if self.stopping and time.monotonic() > give_up:
                    # safe: the alerts past the last commit are cut off and written again, and
                    # the entries are applied again, at the next start
                    self._warn(f"commit failed ({exc}); stopping without it")
                    return
                self._warn(f"commit failed ({exc}); retrying")
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self.stats.commits += 1
        self._outbox = []
        self._to_ack = []
        self._since_commit = 0
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)

    def _prune(self) -> None:
        """Forget the sources that ended and whose entries MAXLEN has trimmed away: nothing of
        theirs can come again (the checkpoint would otherwise grow with every sensor run)."""
        try:
            first = self.transport.first_id()
        except TransportError:
            return
        gone = [src for src, eid in self.ended.items()
                if first is None or _id_key(eid) < _id_key(first)]
        for src in gone:
            del self.ended[src]
            self.applied.pop(src, None)
            self._merge.forget(src)
        self.stats.pruned += len(gone)

    def stats_dict(self) -> dict[str, Any]:
        """The counters of the detector and of the stream, JSON-ready."""
        return {"detect": asdict(self.detector.stats), "stream": asdict(self.stats)}


def _id_key(eid: str) -> tuple[int, int]:
    """A stream id ("ms-seq") as numbers, for comparing."""
    ms, _, seq = eid.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return (0, 0)
