"""Syslog sinks: destination URLs, and a sink with a bounded queue and its own sending thread."""

from __future__ import annotations

import contextlib
import math
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from sensor.errors import ConfigError
from sensor.sinks.transports import Transport, TransportError, make_transport

SCHEMES: Final = ("udp", "tcp", "tls", "relp", "unix")
# tcp+tls is the spelling DESIGN.md uses for RFC 5425; it means the same as tls.
SCHEME_ALIASES: Final = {"tcp+tls": "tls"}
DEFAULT_PORTS: Final = {
    "udp": 514,  # RFC 5426 section 3.3
    "tcp": 514,  # customary for RFC 6587 (no registered port)
    "tls": 6514,  # RFC 5425 section 4.1
    "relp": 2514,  # rsyslog's documented default for imrelp examples
}
# The --format names of sensor.sinks.formats.FORMATS; a spec only carries the name for the CLI.
FORMAT_NAMES: Final = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")
FRAMINGS: Final = ("octet", "lf")
TLS_VERSIONS: Final = ("1.2", "1.3")
MIN_DATAGRAM: Final = 480  # RFC 5426 section 3.2: every receiver accepts 480 octets over IPv4
MAX_DATAGRAM: Final = 65507  # largest UDP payload over IPv4
MAX_QUEUE: Final = 10_000_000

BACKOFF_START_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 5.0
BATCH_MESSAGES: Final = 512  # messages framed into one write by the sending thread
IDLE_TICK_S: Final = 0.2  # how often an idle thread re-checks its connection
WARNINGS_PER_MINUTE: Final = 5
CHECKPOINT_WAIT_S: Final = 5.0  # tcp/tls: how long a checkpoint close waits for the answer


@dataclass(slots=True, frozen=True)
class SinkSpec:
    """One syslog destination, from a URL or a [[sinks.syslog]] table."""

    url: str
    scheme: str  # udp | tcp | tls | relp | unix
    host: str
    port: int
    path: str  # for unix://
    framing: str = "octet"  # tcp/tls: "octet" (RFC 6587 octet counting) or "lf"
    format: str = "rfc5424"  # carried for the CLI's wiring
    max_datagram: int = 2048  # udp truncation size (RFC 5426 section 3.2's SHOULD)
    queue_size: int = 10000
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_hostname: bool = True
    server_name: str = ""
    tls_min: str = "1.2"
    flush_timeout_s: float = 5.0

    @property
    def name(self) -> str:
        """The destination without its options, for summaries and warnings."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# Option names: URL query key -> (SinkSpec field, kind). Tables use the field names.
_QUERY_KEYS: Final = {
    "framing": "framing",
    "format": "format",
    "max_datagram": "max_datagram",
    "queue": "queue_size",
    "ca": "ca_file",
    "cert": "cert_file",
    "key": "key_file",
    "verify": "verify_hostname",
    "server_name": "server_name",
    "tls_min": "tls_min",
    "flush_timeout": "flush_timeout_s",
}
_TLS_FIELDS: Final = (
    "ca_file", "cert_file", "key_file", "verify_hostname", "server_name", "tls_min")
_FIELD_SCHEMES: Final = {
    "framing": ("tcp", "tls"),
    "max_datagram": ("udp",),
    **{f: ("tls",) for f in _TLS_FIELDS},
}


def _expect(label: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"{label}: expected {expected}, got {got!r}")


def _check_field(field: str, value: object, label: str) -> object:
    """Validates one option value (a string from a URL, or a TOML value) for `field`;
    `label` names it in errors."""
    if field == "framing":
        if value not in FRAMINGS:
            raise _expect(label, '"octet" or "lf"', value)
        return value
    if field == "format":
        if value not in FORMAT_NAMES:
            raise _expect(label, "one of " + ", ".join(FORMAT_NAMES), value)
        return value
    if field == "tls_min":
        if value not in TLS_VERSIONS:
            raise _expect(label, '"1.2" or "1.3"', value)
        return value
    if field in ("max_datagram", "queue_size"):
        lo, hi = (MIN_DATAGRAM, MAX_DATAGRAM) if field == "max_datagram" else (1, MAX_QUEUE)
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            number = int(value)
        if number is None or not lo <= number <= hi:
            raise _expect(label, f"an integer from {lo} to {hi}", value)
        return number
    if field == "flush_timeout_s":
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                seconds = None
        if seconds is None or not math.isfinite(seconds) or not 0.0 <= seconds <= 3600.0:
            raise _expect(label, "a number of seconds from 0 to 3600", value)
        return seconds
    if field == "verify_hostname":
        if isinstance(value, bool):
            return value
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise _expect(label, "a boolean (1/0, true/false)", value)
    # file names and the TLS server name: any non-empty string without NUL
    if not isinstance(value, str) or "\x00" in value:
        raise _expect(label, "a string", value)
    return value


def _base_spec(url: str, where: str) -> SinkSpec:
    """The scheme, host, port and path of a sink URL (options are applied by the callers)."""
    head = f"{where}: {url!r}"
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{head}: expected a URL such as udp://HOST:514, tcp://HOST:514, "
                          "tls://HOST:6514, relp://HOST:2514 or unix:///dev/log")
    try:
        parts = urlsplit(url)
        port_given = parts.port
    except ValueError as exc:
        raise ConfigError(f"{head}: expected a port from 1 to 65535 ({exc})") from None
    scheme = SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in SCHEMES:
        raise ConfigError(f"{head}: unknown scheme {parts.scheme!r} "
                          f"(expected one of {', '.join(SCHEMES)})")
    if parts.fragment:
        raise ConfigError(f"{head}: a sink URL has no #fragment")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{head}: user names and passwords are not supported in a sink URL")
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"{head}: expected unix:///ABSOLUTE/PATH such as unix:///dev/log")
        return SinkSpec(url=url, scheme=scheme, host="", port=0, path=parts.path)
    if parts.path not in ("", "/"):
        raise ConfigError(f"{head}: expected no path after the host and port, got {parts.path!r}")
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"{head}: expected a host, as in {scheme}://HOST:{DEFAULT_PORTS[scheme]}")
    if port_given == 0:
        raise ConfigError(f"{head}: expected a port from 1 to 65535, got 0")
    port = port_given if port_given is not None else DEFAULT_PORTS[scheme]
    return SinkSpec(url=url, scheme=scheme, host=host, port=port, path="")


def _apply(spec: SinkSpec, options: dict[str, object], where: str,
           labels: dict[str, str]) -> SinkSpec:
    """Returns `spec` with the validated options (field -> value) set; `labels` names each
    option in errors."""
    changes: dict[str, Any] = {}
    for field, value in options.items():
        label = labels[field]
        allowed = _FIELD_SCHEMES.get(field)
        if allowed is not None and spec.scheme not in allowed:
            raise ConfigError(f"{label}: only applies to "
                              + " and ".join(f"{s}://" for s in allowed)
                              + f" sinks, not {spec.scheme}://")
        changes[field] = _check_field(field, value, label)
    new = replace(spec, **changes)
    if (new.cert_file == "") != (new.key_file == ""):
        raise ConfigError(f"{where}: a client certificate needs both cert and key")
    return new


def parse_sink_url(url: str, where: str = "--syslog") -> SinkSpec:
    """Parses a sink URL such as tcp://siem:514?framing=lf; raises ConfigError naming `where`."""
    spec = _base_spec(url, where)
    query = urlsplit(url).query
    options: dict[str, object] = {}
    names: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        field = _QUERY_KEYS.get(key)
        if field is None:
            raise ConfigError(f"{where}: {url!r}: unknown option {key!r} (known: "
                              + ", ".join(sorted(_QUERY_KEYS)) + ")")
        if field in options:
            raise ConfigError(f"{where}: {url!r}: option {key!r} given twice")
        options[field] = value
        names[field] = f"{where}: {url!r}: {key}"
    return _apply(spec, options, where, names)


_TABLE_FIELDS: Final = ("url", *_QUERY_KEYS.values())


def spec_from_table(table: dict[str, Any], where: str) -> SinkSpec:
    """Builds a spec from a [[sinks.syslog]] table: `url` plus option keys named as SinkSpec's
    fields (framing, format, max_datagram, queue_size, ca_file, ...); ConfigError names `where`."""
    for key in table:
        if key not in _TABLE_FIELDS:
            raise ConfigError(f"{where}.{key}: unknown key (known: "
                              + ", ".join(sorted(_TABLE_FIELDS)) + ")")
    url = table.get("url")
    if not isinstance(url, str):
        raise ConfigError(f"{where}.url: expected a sink URL string such as tcp://siem:514, "
                          f"got {url!r}")
    spec = parse_sink_url(url, f"{where}.url")
    options = {k: v for k, v in table.items() if k != "url"}
    return _apply(spec, options, where, {k: f"{where}.{k}" for k in options})


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
