"""Syslog sinks: a bounded queue and its own sending thread per destination (the URLs and
tables that name destinations are parsed in sensor.sinks.urls)."""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sensor.sinks.transports import Transport, TransportError, make_transport
from sensor.sinks.urls import (
    DEFAULT_PORTS,
    FORMAT_NAMES,
    SCHEMES,
    SinkSpec,
    parse_sink_url,
    spec_from_table,
)

__all__ = [
    "DEFAULT_PORTS",
    "FORMAT_NAMES",
    "SCHEMES",
    "SinkSpec",
    "SinkStats",
    "SyslogSink",
    "parse_sink_url",
    "spec_from_table",
]

BACKOFF_START_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 5.0
BATCH_MESSAGES: Final = 512  # messages framed into one write by the sending thread
IDLE_TICK_S: Final = 2.0  # how often an idle thread re-checks its connection (its socket
# wakes it at once on EOF or reset; each wake-up takes the GIL from the packet loop: at 0.2 s
# the running sink cost `analyze --alerts` 8-10% of CPU with no message to send, at 2 s 3%,
# within the noise: scripts/bench_syslog_cost.py)
WARNINGS_PER_MINUTE: Final = 5
CHECKPOINT_WAIT_S: Final = 5.0  # tcp/tls: how long a checkpoint close waits for the answer


@dataclass(slots=True)
class SinkStats:
    """What happened to the messages given to one sink (counters, and `queued` as a gauge)."""

    sent: int = 0  # delivered: see SyslogSink's docstring for what each transport can confirm
    dropped_queue_full: int = 0  # refused by send() because the queue was full
    dropped_undeliverable: int = 0  # lost or possibly lost: connection died, flush timed out
    truncated: int = 0  # udp datagrams cut at max_datagram (still sent)
    reconnects: int = 0  # connections re-established after one was lost
    connect_failures: int = 0  # connection attempts that failed (refused, timeout, TLS error)
    resent: int = 0  # relp: unacknowledged messages sent again after a reconnect
    queued: int = 0  # messages waiting in the queue when the stats were read

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for summaries and --stats."""
        return {
            "sent": self.sent, "dropped_queue_full": self.dropped_queue_full,
            "dropped_undeliverable": self.dropped_undeliverable, "truncated": self.truncated,
            "reconnects": self.reconnects, "connect_failures": self.connect_failures,
            "resent": self.resent, "queued": self.queued,
        }


class SyslogSink:
    """Sends syslog messages to one collector from its own thread, never blocking the caller.

    send() appends to a bounded queue (a full queue drops and counts). The thread frames
    batches of messages for the transport, reconnects with exponential backoff (0.1 s doubling
    to 5 s) and accounts for every message exactly once: `sent` + `dropped_undeliverable` +
    `dropped_queue_full` = messages given to send(), once close() has returned.

    What `sent` means per transport:
    - udp, unix datagrams: handed to the kernel (no delivery signal exists); udp truncates
      to max_datagram and counts `truncated`.
    - relp: acknowledged by the collector with "rsp 200". Unacknowledged messages are sent
      again after a reconnect (`resent`); a message is lost only if the flush at close times out.
    - tcp, tls (no acknowledgement in the protocol): counted `sent` at a checkpoint, an
      orderly close (FIN, or TLS close_notify) that the collector answers by closing its side
      once it has read everything; the sink makes one 5 s after the first unconfirmed write
      (or after 50,000 messages) and connects again, and one at close(). When the connection
      ends any other way, every message written since the last checkpoint is counted in
      `dropped_undeliverable` as possibly lost: the count bounds the messages missing at the
      collector from above (some of them may have arrived). Nothing is sent twice.
    """

    def __init__(self, spec: SinkSpec, on_warning: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self._on_warning = on_warning
        self._stats = SinkStats()
        self._queue: deque[bytes] = deque()
        self._cap = spec.queue_size
        self._idle = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = False
        self._deadline = math.inf
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._transport: Transport | None = None
        self._resend: deque[bytes] = deque()  # relp: to send again after reconnecting
        self._warned_at: deque[float] = deque()
        self._warnings_suppressed = 0
        self._refusals_warned = False

    @property
    def stats(self) -> SinkStats:
        """The sink's counters, with `queued` as of now."""
        self._stats.queued = len(self._queue) + len(self._resend)
        return self._stats

    def start(self) -> None:
        """Starts the sending thread; an unreachable collector gives one warning, not an error."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"sink {self.name}", daemon=True)
        self._thread.start()

    def send(self, message: bytes) -> None:
        """Queues one complete syslog message (no framing); drops and counts if the queue is
        full. Never blocks. Meant to be called from one thread."""
        queue = self._queue
        if len(queue) >= self._cap or self._stop:
            self._stats.dropped_queue_full += 1
            return
        queue.append(message)
        if self._idle:
            self._idle = False
            # a full pipe means the thread is awake already
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"\x00")

    def close(self) -> None:
        """Flushes for at most flush_timeout_s, stops the thread, and counts what is left."""
        if self._stop:
            return
        self._deadline = time.monotonic() + self.spec.flush_timeout_s
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\x00")
        thread = self._thread
        if thread is not None:
            thread.join(self.spec.flush_timeout_s + 1.0)
            if thread.is_alive():
                transport = self._transport
                if transport is not None:
                    transport.abort()  # unblocks a connect or write stuck past the deadline
                thread.join(1.0)
        self._finish()
        if thread is None or not thread.is_alive():  # a stuck thread may still use the pipe
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- the sending thread -------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        """Passes a warning on, at most WARNINGS_PER_MINUTE a minute (a flapping collector
        must not flood the operator; the counters tell the rest)."""
        if self._on_warning is None:
            return
        now = time.monotonic()
        recent = self._warned_at
        while recent and recent[0] < now - 60.0:
            recent.popleft()
        if len(recent) >= WARNINGS_PER_MINUTE:
            self._warnings_suppressed += 1
            return
        recent.append(now)
        if self._warnings_suppressed:
            text += f" ({self._warnings_suppressed} similar warnings suppressed)"
            self._warnings_suppressed = 0
        # a broken warning callback must not end the sink
        with contextlib.suppress(Exception):
            self._on_warning(f"syslog sink {self.name}: {text}")

    def _finish(self) -> None:
        """Counts every message not yet accounted for as undeliverable: when the thread ends,
        and again at close() for what was queued after a thread that failed."""
        with self._lock:
            left = 0
            while self._queue:  # popped one by one: send() may still append meanwhile
                self._queue.popleft()
                left += 1
            left += len(self._resend)
            transport = self._transport
            if transport is not None:
                confirmed, truncated, rejected = transport.drain()
                self._stats.sent += confirmed
                self._stats.truncated += truncated
                left += rejected + len(transport.take_unconfirmed())
                transport.abort()
                self._transport = None
            self._resend.clear()
            self._stats.dropped_undeliverable += left

    def _wait(self, timeout: float, fd: int = -1, accept: bool = True) -> None:
        """Sleeps until `timeout` passes, `fd` becomes readable, close() is called, or (when
        `accept` says a new message could be written at once) send() queues one."""
        if accept:
            self._idle = True
            if self._queue:
                self._idle = False
                return
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if fd >= 0:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        try:
            ready = poller.poll(max(0, int(timeout * 1000)))
        except OSError:
            ready = []
        self._idle = False
        if any(ready_fd == self._wake_r for ready_fd, _ in ready):
            with contextlib.suppress(OSError):
                while os.read(self._wake_r, 4096):
                    pass

    def _connect(self, outage_warned: bool) -> bool:
        """One connection attempt; returns whether it succeeded."""
        timeout = min(CONNECT_TIMEOUT_S, max(0.05, self._deadline - time.monotonic()))
        transport: Transport | None = None
        try:
            transport = make_transport(self.spec)
            self._transport = transport
            transport.open(timeout)
        except (OSError, TransportError) as exc:
            if transport is not None:
                transport.abort()
            self._transport = None
            self._stats.connect_failures += 1
            if not outage_warned:
                self._warn(f"cannot connect ({_describe(exc)}); retrying in the background, "
                           f"up to {self.spec.queue_size} messages are queued meanwhile")
            return False
        return True

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug must not kill analysis; count and say so
            self._warn(f"sending thread failed: {_describe(exc)}")
        finally:
            self._finish()

    def _collect(self, transport: Transport) -> None:
        """Moves the transport's counters into the sink's."""
        confirmed, truncated, rejected = transport.drain()
        stats = self._stats
        stats.sent += confirmed
        stats.truncated += truncated
        if rejected:
            stats.dropped_undeliverable += rejected
            if not self._refusals_warned:
                self._refusals_warned = True
                self._warn("the collector refused a message (counted as undeliverable; "
                           "later refusals are only counted)")

    def _loop(self) -> None:
        backoff = BACKOFF_START_S
        outage_warned = False
        ever_connected = False
        connected_at = 0.0
        planned = False  # the last connection was closed for a checkpoint
        stats = self._stats
        queue = self._queue
        resend = self._resend
        while True:
            if time.monotonic() >= self._deadline:
                return
            transport = self._transport
            if transport is None:
                if self._stop and not queue and not resend:
                    return
                if self._connect(outage_warned):
                    if ever_connected and not planned:
                        stats.reconnects += 1
                    planned = False
                    ever_connected = True
                    outage_warned = False
                    connected_at = time.monotonic()
                    continue
                outage_warned = True
                self._wait(min(backoff, self._deadline - time.monotonic()), accept=False)
                backoff = min(backoff * 2.0, BACKOFF_MAX_S)
                continue
            try:
                transport.poll()
                if transport.checkpoint_due():
                    # tcp/tls: an orderly close the collector answers confirms what it read
                    transport.finish(min(self._deadline, time.monotonic() + CHECKPOINT_WAIT_S))
                    self._collect(transport)
                    lost = transport.take_unconfirmed()
                    transport.abort()
                    self._transport = None
                    planned = True
                    if lost:
                        stats.dropped_undeliverable += len(lost)
                        self._warn(f"the collector did not answer a checkpoint close; {len(lost)} "
                                   "messages possibly lost, counted as undeliverable")
                    continue
                if resend and transport.can_accept():
                    count = min(len(resend), BATCH_MESSAGES, transport.room())
                    batch = [resend.popleft() for _ in range(count)]
                    stats.resent += count
                    transport.deliver(batch)
                elif queue and transport.can_accept():
                    count = min(len(queue), BATCH_MESSAGES, transport.room())
                    transport.deliver([queue.popleft() for _ in range(count)])
                elif self._stop and not queue and not resend:
                    transport.finish(self._deadline)
                    self._collect(transport)
                    stats.dropped_undeliverable += len(transport.take_unconfirmed())
                    transport.abort()
                    self._transport = None
                    return
                else:
                    self._wait(IDLE_TICK_S, transport.wait_fd(), transport.can_accept())
                self._collect(transport)
            except (OSError, TransportError) as exc:
                self._transport = None
                self._collect(transport)
                lost = transport.take_unconfirmed()
                transport.abort()
                if transport.resends:
                    resend.extendleft(reversed(lost))
                    what = f"{len(lost)} unacknowledged messages will be sent again"
                else:
                    stats.dropped_undeliverable += len(lost)
                    what = f"{len(lost)} messages possibly lost, counted as undeliverable"
                self._warn(f"connection lost ({_describe(exc)}); {what}; reconnecting")
                outage_warned = True
                # a connection that lived a while starts the backoff again; one a collector
                # drops at once (flapping) keeps doubling it
                if time.monotonic() - connected_at > BACKOFF_MAX_S:
                    backoff = BACKOFF_START_S
                self._wait(min(backoff, self._deadline - time.monotonic()), accept=False)
                backoff = min(backoff * 2.0, BACKOFF_MAX_S)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")
