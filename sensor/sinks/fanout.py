"""Every syslog destination of a run: each alert (and session) formatted once per format, then
queued to each sink; their counters for the summary and --stats."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sensor.config import SyslogConfig
from sensor.records import Alert
from sensor.sinks.formats import FormatOptions, format_alert, format_session
from sensor.sinks.syslog import SinkSpec, SyslogSink


class SyslogFanout:
    """The run's syslog sinks. Formatting happens here, in the caller's thread (a pure function
    of the record); sending happens in each sink's own thread, so a slow or absent collector
    never holds up analysis."""

    def __init__(self, specs: Iterable[SinkSpec], cfg: SyslogConfig,
                 on_warning: Callable[[str], None] | None = None) -> None:
        hostname = cfg.hostname or socket.gethostname()
        procid = str(os.getpid())
        self.sessions = cfg.sessions
        self._sinks: list[tuple[SyslogSink, FormatOptions]] = []
        self.names: list[str] = []
        for spec in specs:
            opts = FormatOptions(format=spec.format, facility=cfg.facility, hostname=hostname,
                                 app_name=cfg.app_name, procid=procid, sd_id=cfg.sd_id)
            self._sinks.append((SyslogSink(spec, on_warning), opts))
            name = f"{spec.name} ({spec.format})"
            while name in self.names:  # the same destination twice
                name += "'"
            self.names.append(name)
        self._formats = {opts for _, opts in self._sinks}

    def __bool__(self) -> bool:
        return bool(self._sinks)

    def start(self) -> None:
        """Start every sink's thread (a collector that cannot be reached only warns)."""
        for sink, _ in self._sinks:
            sink.start()

    def alert(self, a: Alert) -> None:
        """Queue one alert to every destination."""
        if len(self._formats) == 1:
            msg = format_alert(a, next(iter(self._formats)))
            for sink, _ in self._sinks:
                sink.send(msg)
            return
        done: dict[FormatOptions, bytes] = {}
        for sink, opts in self._sinks:
            if opts not in done:
                done[opts] = format_alert(a, opts)
            sink.send(done[opts])

    def session(self, d: dict[str, Any]) -> None:
        """Queue one SMTP session (its JSON dict) to every destination."""
        done: dict[FormatOptions, bytes] = {}
        for sink, opts in self._sinks:
            if opts not in done:
                done[opts] = format_session(d, opts)
            sink.send(done[opts])

    def close(self) -> None:
        """Flush every sink at once, each for at most its flush_timeout_s."""
        closing = [threading.Thread(target=sink.close, name=f"close {sink.name}")
                   for sink, _ in self._sinks]
        for t in closing:
            t.start()
        for t in closing:
            t.join()

    def stats(self) -> dict[str, dict[str, int]]:
        """Each destination's counters, by its name (URL without options, and format)."""
        return {name: sink.stats.as_dict()
                for name, (sink, _) in zip(self.names, self._sinks, strict=True)}

    def dropped(self) -> int:
        """Messages lost or possibly lost on every destination together."""
        return sum(s.stats.dropped_queue_full + s.stats.dropped_undeliverable
                   for s, _ in self._sinks)
