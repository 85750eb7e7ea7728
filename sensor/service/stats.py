"""What a live run tells its operator: the status snapshot and the periodic JSON stats lines."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from sensor.tcp.loss import loss_percent

_log: Final = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
"""A zero-argument callable returning the live status: the `--stats` dict (capture, tcp,
totals, detect, sinks) plus interfaces, workers, process and state. Cheap, callable from any
thread."""

GAUGES: Final = frozenset({
    "active_peak", "hosts", "hosts_active", "queued", "rss_bytes", "running",
    "connections_open", "wall_s", "first_ts", "last_ts", "uptime_s",
})
"""Values that are levels, not counters: a stats line shows them in its totals, not its deltas."""
MIN_INTERVAL_ACKS: Final = 100
"""ACKs an interval needs before its loss estimate may warn (a handful of ACKs is noise)."""
WARN_EVERY_S: Final = 300.0
"""Least time between two loss warnings on stderr."""
SNAPSHOT_TRIES: Final = 3
"""Reads of a counter dict the packet thread may grow meanwhile, before the snapshot gives up."""
_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident memory, from /proc/self/statm (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, nested dicts copied (each copy is atomic under the GIL)."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = dict(v) if isinstance(v, dict) else v
    return out


class LiveStatus:
    """The parts of a single-process live run the snapshot reads; filled in as the run starts."""

    def __init__(self) -> None:
        self.pipeline: Any = None  # sensor.pipeline.Pipeline
        self.detector: Any = None  # sensor.detect.detector.Detector
        self.syslog: Any = None  # sensor.sinks.fanout.SyslogFanout
        self.sources: list[Any] = []  # sensor.capture.live.LiveSource, one per interface
        self.started = time.time()
        self._last_detect: dict[str, Any] = {}

    def snapshot(self) -> dict[str, Any]:
        """The status now (see `Snapshot`); counters a thread was growing are read again."""
        for _ in range(SNAPSHOT_TRIES - 1):
            try:
                return self._snapshot()
            except RuntimeError:  # a dict changed size while it was read
                continue
        return self._snapshot()

    def _detect(self) -> dict[str, Any]:
        """The detector's counters, or the last ones read when its table kept changing (the
        events dropped are summed over the hosts, which the packet thread may add to)."""
        for _ in range(SNAPSHOT_TRIES):
            try:
                self._last_detect = _plain(self.detector.stats)
                break
            except RuntimeError:
                continue
        return self._last_detect

    def _snapshot(self) -> dict[str, Any]:
        from sensor.pipeline import RunTotals
        from sensor.records import CaptureStats, TcpStats

        pipe = self.pipeline
        out: dict[str, Any] = {
            "capture": _plain(pipe.capture_stats if pipe is not None else CaptureStats()),
            "tcp": _plain(pipe.tcp_stats if pipe is not None else TcpStats()),
            "totals": _plain(pipe.totals if pipe is not None else RunTotals()),
        }
        if self.detector is not None:
            out["detect"] = self._detect()
        if self.syslog is not None:
            out["sinks"] = self.syslog.stats()
        interfaces: dict[str, dict[str, int]] = {}
        for src in list(self.sources):
            try:
                received, dropped, if_dropped = src.stats()
            except Exception:  # a closed handle: its last figures are gone
                continue
            interfaces[src.iface] = {"received": received, "dropped": dropped,
                                     "if_dropped": if_dropped}
        out["interfaces"] = interfaces
        out["workers"] = {"running": 1 if pipe is not None else 0, "restarts": 0,
                          "lost_packets": 0}
        out["process"] = {"rss_bytes": rss_bytes(),
                          "uptime_s": round(time.time() - self.started, 3)}
        out["state"] = {"connections_open": pipe.open_connections() if pipe is not None else 0}
        return out


def deltas(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Counter by counter, `now` minus `before` (nested dicts alike; gauges and text left out)."""
    out: dict[str, Any] = {}
    for key, value in now.items():
        if key in GAUGES or isinstance(value, bool):
            continue
        old = before.get(key)
        if isinstance(value, dict):
            sub = deltas(value, old if isinstance(old, dict) else {})
            if sub:
                out[key] = sub
        elif isinstance(value, int):
            out[key] = value - (old if isinstance(old, int) and not isinstance(old, bool) else 0)
    return out


def interval_loss(delta: dict[str, Any]) -> dict[str, Any]:
    """The capture-loss estimate of one interval from its tcp deltas."""
    tcp = delta.get("tcp", {})
    acks, unseen = int(tcp.get("acks", 0)), int(tcp.get("acks_unseen", 0))
    return {"percent": round(loss_percent(acks, unseen), 3), "acks": acks,
            "acks_unseen": unseen, "ack_unseen_bytes": int(tcp.get("ack_unseen_bytes", 0)),
            "gaps": int(tcp.get("gaps", 0))}


class StatsReporter:
    """Every `interval_s`, one JSON line (totals, deltas, the interval's loss estimate) to `out`,
    and a warning through `warn` when the loss estimate exceeds `warn_percent`."""

    def __init__(self, snapshot: Snapshot, interval_s: float, out: TextIO | None,
                 warn_percent: float, warn: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot = snapshot
        self.interval_s = interval_s
        self._out = out
        self.warn_percent = warn_percent
        self._warn = warn
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prev: dict[str, Any] = {}
        self._prev_t = clock()
        self._last_warn = float("-inf")
        self._held = 0  # intervals above the threshold not warned about (rate limit)
        self.lines = 0

    def start(self) -> None:
        """Report from a daemon thread until `stop()`."""
        self._prev = self._snapshot()
        self._prev_t = self._clock()
        self._thread = threading.Thread(target=self._loop, name="stats", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.report()
            except Exception:  # a reporting failure must not end the capture
                _log.exception("stats report failed")

    def report(self) -> dict[str, Any]:
        """Take a snapshot now; write its line and check the loss; returns the line's dict."""
        now_t = self._clock()
        snap = self._snapshot()
        delta = deltas(snap, self._prev)
        loss = interval_loss(delta)
        interval = round(now_t - self._prev_t, 3)
        line = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "interval_s": interval, "capture_loss": loss, "totals": snap, "delta": delta}
        self._prev, self._prev_t = snap, now_t
        if self._out is not None:
            import orjson

            self._out.write(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS).decode() + "\n")
            self._out.flush()
            self.lines += 1
        self._check_loss(interval, loss, delta)
        return line

    def _check_loss(self, interval: float, loss: dict[str, Any], delta: dict[str, Any]) -> None:
        if loss["acks"] < MIN_INTERVAL_ACKS or loss["percent"] <= self.warn_percent:
            return
        now = self._clock()
        if now - self._last_warn < WARN_EVERY_S:
            self._held += 1
            return
        kernel = sum(int(v.get("dropped", 0)) + int(v.get("if_dropped", 0))
                     for v in delta.get("interfaces", {}).values())
        where = (f"; the kernel dropped {kernel} packets too" if kernel else
                 ": the kernel dropped none, so packets are lost before this host "
                 "(span port or tap oversubscribed?)")
        held = (f" ({self._held} more intervals above it since the last warning)"
                if self._held else "")
        self._warn(f"capture loss estimate {loss['percent']:.2f}% over the last {interval:.0f} s "
                   f"({loss['acks_unseen']} of {loss['acks']} ACKs for data never captured), "
                   f"above capture.loss_warn_percent {self.warn_percent:g}{where}{held}")
        self._last_warn = now
        self._held = 0

    def stop(self, final: bool = True) -> None:
        """Stop the thread; with `final`, write one last line for the partial interval."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if final:
                self.report()


def open_stats_log(path: str | None) -> TextIO | None:
    """The --stats-log destination: a file appended to, stdout for '-', None without one."""
    if path is None:
        return None
    if path == "-":
        import sys

        return sys.stdout
    try:
        return open(path, "a", encoding="utf-8")  # closed by the live command
    except OSError as exc:
        from sensor.errors import OutputError

        raise OutputError(f"--stats-log {path}: cannot open: {exc.strerror}") from None

