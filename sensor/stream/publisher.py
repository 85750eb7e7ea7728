"""`--publish`: every session and connection record to a stream, from a bounded queue and a
thread of its own, so that a slow or absent server never holds up analysis."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from sensor.output.jsonl import conn_to_dict, to_json_line
from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.schema import session_to_dict
from sensor.stream.entries import CONN, END, ROW_NAMES, SESSION, TICK, common_fields, entry_row
from sensor.stream.transport import Packed, StreamTransport, TransportError

BATCH_RECORDS: Final = 500  # entries per XADD pipeline
WAKE_RECORDS: Final = 2000  # a queue this long wakes the thread (else it wakes on its timer)
FLUSH_INTERVAL_S: Final = 0.5  # the longest a record waits in the queue when all is well
TICK_INTERVAL_S: Final = 1.0  # live: a tick when nothing was published for this long
BACKOFF_START_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
FLUSH_TIMEOUT_S: Final = 5.0  # close(): how long the queue may take to drain
WARNINGS_PER_MINUTE: Final = 5
SOCKET_SLACK_S: Final = 11.0  # a publish blocked in its socket ends by the socket timeout (10 s)


@dataclass(slots=True)
class PublishStats:
    """What happened to the records given to the publisher (the syslog sinks' counter names)."""

    sent: int = 0  # appended to the stream (the server answered the XADD)
    dropped_queue_full: int = 0  # refused because the queue was full (server away or slow)
    dropped_undeliverable: int = 0  # still queued, or in a failed batch, when close() gave up
    truncated: int = 0  # never: kept for the summary's shape
    reconnects: int = 0  # connections re-established after one was lost
    connect_failures: int = 0  # attempts that failed
    resent: int = 0  # entries of a failed batch sent again (the detector drops duplicates)
    queued: int = 0  # waiting when the stats were read

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for summaries and --stats."""
        return {"sent": self.sent, "dropped_queue_full": self.dropped_queue_full,
                "dropped_undeliverable": self.dropped_undeliverable, "truncated": self.truncated,
                "reconnects": self.reconnects, "connect_failures": self.connect_failures,
                "resent": self.resent, "queued": self.queued}


def _json(d: dict[str, Any]) -> bytes:
    """`to_json_line` without its newline (and without copying the line to drop it)."""
    try:
        return orjson.dumps(d)
    except orjson.JSONEncodeError:
        return to_json_line(d)[:-1]


def source_id(sensor: str) -> str:
    """A name for one publisher run, unique across restarts and machines."""
    return f"{sensor}/{socket.gethostname()}/{os.getpid()}/{time.time_ns():x}"


class Publisher:
    """Queues records in the order the pipeline emits them and appends them to a stream.

    Each entry carries the sensor name, this run's source id and sequence number, and a merge
    key `t`: the running maximum of the records' close times (ts + duration_s) and of the
    ticks, so that it never decreases within a source. A source quiet for a second sends a
    tick: it tells the detector that the source is alive (a source silent for the detector's
    --sensor-timeout stops holding the merge back), and, from a live sensor, which passes
    `clock` (time.time: live packet time is wall time), how far its packet time has come, so
    that the merge need not wait for its next record. A failed batch is sent again after
    reconnecting (same sequence numbers: the detector drops what it already has); a full queue
    drops new records and counts them. `close()` appends an end entry.

    The pipeline's thread makes each entry whole (the record's JSON, its number, its key, as
    the transport packs it) when it queues it: the record is then still in the CPU's caches,
    the queue holds bytes that the garbage collector does not walk, and the sending thread,
    which holds the interpreter's lock while it runs Python, has little more to do than write.
    A lock keeps numbers in queue order when that thread makes a tick.
    """

    def __init__(self, transport: StreamTransport, sensor: str, name: str, queue_size: int,
                 clock: Callable[[], float] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.name = name
        self._transport = transport
        self.src = source_id(sensor)
        self._pack = transport.packer(common_fields(sensor.encode("utf-8", "replace"),
                                                    self.src.encode("utf-8", "replace")),
                                      ROW_NAMES)
        self._cap = queue_size
        self._clock = clock
        self._on_warning = on_warning
        self._queue: deque[Packed] = deque()
        self._lock = threading.Lock()  # the sequence number, the key and the queue's order
        self._end: Packed = None  # the end entry, once queued
        self._wake = threading.Event()
        self._stop = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._t = float("-inf")
        self._failed: list[Packed] = []  # a batch to send again once connected
        self._failed_records = 0  # how many of its entries are records (not ticks or the end)
        self._stats = PublishStats()
        self._warned_at: deque[float] = deque()

    @property
    def stats(self) -> PublishStats:
        """The counters, with `queued` as of now."""
        self._stats.queued = len(self._queue) + len(self._failed)
        return self._stats

    def start(self) -> None:
        """Start the sending thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"publish {self.name}",
                                            daemon=True)
            self._thread.start()

    def conn(self, rec: ConnRecord) -> None:
        """Queue one connection record (never blocks; a full queue drops and counts)."""
        if len(self._queue) >= self._cap or self._stop:
            self._stats.dropped_queue_full += 1
            return
        self._add(CONN, rec.ts + rec.duration_s, rec.client_ip, rec.server_ip,
                  _json(conn_to_dict(rec)))

    def session(self, s: SmtpSession) -> None:
        """Queue one SMTP session (never blocks; a full queue drops and counts)."""
        if len(self._queue) >= self._cap or self._stop:
            self._stats.dropped_queue_full += 1
            return
        self._add(SESSION, s.ts + s.duration_s, s.client_ip, s.server_ip,
                  _json(session_to_dict(s)))

    def _add(self, kind: bytes, close: float, client: str, server: str, line: bytes) -> None:
        queue = self._queue
        with self._lock:
            self._seq += 1
            if close > self._t:
                self._t = close
            queue.append(self._pack(entry_row(self._seq, kind, self._t, client.encode(),
                                              server.encode(), line)))
        if len(queue) == WAKE_RECORDS:
            self._wake.set()

    def _marker(self, kind: bytes) -> Packed:
        """A tick or the end entry: the next number, the key as it stands (a live sensor's
        tick moves it to its clock). Called with the lock held."""
        self._seq += 1
        if kind == TICK and self._clock is not None:
            self._t = max(self._t, self._clock())
        t = self._t if self._t != float("-inf") else 0.0
        return self._pack(entry_row(self._seq, kind, t, b"", b"", b""))

    def close(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Append the end entry, flush for at most `timeout_s`, count what is left as lost."""
        if self._stop:
            return
        with self._lock:  # past the cap on purpose: it ends the source
            self._end = self._marker(END)
            self._queue.append(self._end)
        self._deadline = time.monotonic() + timeout_s
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s + SOCKET_SLACK_S)
        queued = list(self._queue)
        left = self._failed_records if self._failed else 0
        left += len(queued) - (1 if queued and queued[-1] is self._end else 0)
        self._failed = []
        self._failed_records = 0
        self._queue.clear()
        self._stats.dropped_undeliverable += left
        self._transport.close()

    # -- the sending thread -------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        if self._on_warning is None:
            return
        now = time.monotonic()
        while self._warned_at and self._warned_at[0] < now - 60.0:
            self._warned_at.popleft()
        if len(self._warned_at) >= WARNINGS_PER_MINUTE:
            return
        self._warned_at.append(now)
        with contextlib.suppress(Exception):
            self._on_warning(f"publish {self.name}: {text}")

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must not end analysis: say so, count at close
            self._warn(f"sending thread failed: {exc}")

    def _loop(self) -> None:
        queue = self._queue
        stats = self._stats
        backoff = BACKOFF_START_S
        down = False
        last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= self._deadline:
                return
            batch = self._failed
            resend = bool(batch)
            if not batch:
                while queue and len(batch) < BATCH_RECORDS:
                    batch.append(queue.popleft())
                # records: all but the end entry, which comes last
                self._failed_records = len(batch) - (1 if batch and batch[-1] is self._end else 0)
                if not batch and not self._stop and now - last_sent >= TICK_INTERVAL_S:
                    with self._lock:
                        if not queue:  # else a record came: the tick would be numbered after it
                            batch.append(self._marker(TICK))
            if not batch:
                if self._stop:
                    return
                self._wake.wait(FLUSH_INTERVAL_S)
                self._wake.clear()
                continue
            try:
                self._transport.publish_packed(batch)
            except TransportError as exc:
                self._failed = batch
                stats.connect_failures += 1
                if not down:
                    self._warn(f"cannot publish ({exc}); retrying in the background, up to "
                               f"{self._cap} records are queued meanwhile")
                down = True
                self._wake.wait(min(backoff, max(0.0, self._deadline - time.monotonic())))
                self._wake.clear()
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if down:
                stats.reconnects += 1
                down = False
            backoff = BACKOFF_START_S
            if resend:
                stats.resent += len(batch)
            stats.sent += self._failed_records
            self._failed = []
            self._failed_records = 0
            last_sent = time.monotonic()
            if len(queue) < BATCH_RECORDS and not self._stop:
                self._wake.wait(FLUSH_INTERVAL_S)
                self._wake.clear()


