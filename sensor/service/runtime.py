"""What `sensor live` does as a service around its packet loop: privileges, SIGHUP, sd_notify."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from sensor.service.hangup import Hangup
from sensor.service.notify import Notifier
from sensor.service.privileges import drop_privileges

if TYPE_CHECKING:
    from sensor.config import Config
    from sensor.detect.detector import Detector
    from sensor.output.jsonl import JsonlSink


STATUS_INTERVAL_S: Final = 10.0
"""Seconds between two STATUS= lines with the counters (`systemctl status` shows the last)."""
PRELOAD: Final = (
    "pickle", "queue", "decimal", "fractions", "zipfile", "encodings.cp437", "encodings.idna",
    "ssl",
    "numpy", "rich.console", "rich.table", "rich.text", "sensor.output.summary",
    "sensor.detect.model", "sensor.detect.scoring", "sensor.detect.tables",
    "sensor.features.batch", "sensor.smtp.schema", "sensor.detect.alerts",
    "sensor.service.stats", "sensor.service.metrics", "prometheus_client",
    "prometheus_client.exposition", "http.server", "socketserver",
    "encodings.ascii", "encodings.latin_1", "multiprocessing.popen_fork",
    "multiprocessing.connection", "multiprocessing.reduction", "sensor.parallel",
    "sensor.service.livefanout", "sensor.output.jsonl", "sensor.output.privacy",
)  # fmt: skip
"""Modules a live run imports after its start (the model, the closing summary), imported before
privileges are dropped: the user the sensor becomes may not be able to read the Python
installation (one under /root), and a package upgraded under a running service would
otherwise surface as an ImportError in the final flush."""


def preload() -> None:
    """Import PRELOAD (an absent optional module is skipped)."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


class LiveService:
    """The service side of one live run.

    Order of use: `install()` (SIGHUP handler), `drop()` once every capture handle is open,
    `attach()` the outputs and detector, `ready()` when capturing, `tick()` from the packet loop
    (between batches, also when idle), `stopping()` on the way out, `close()`.
    """

    def __init__(self, config_path: str | None, config: Config, user: str | None,
                 warn: Callable[[str], None]) -> None:  # fmt: skip
        self.user = user
        self.warn = warn
        self.notifier = Notifier()
        self.hangup = Hangup(config_path, config, warn)
        self.dropped = ""
        """What drop() did, one line ("" before)."""
        self.describe: Callable[[], str] | None = None
        """A one-line status (counters) sent as STATUS= every STATUS_INTERVAL_S while running."""
        self._next_status = 0.0

    def install(self) -> None:
        """Handle SIGHUP from now on (the default action would end the process)."""
        self.hangup.install()

    def drop(self) -> str:
        """Give up the user and every capability (sensor.service.privileges.drop_privileges),
        after importing what the run imports later (PRELOAD)."""
        preload()
        self.dropped = drop_privileges(self.user)
        return self.dropped

    def attach(self, sinks: Iterable[JsonlSink | None], detector: Detector | None) -> None:
        """Reopen these files and reconfigure this detector on SIGHUP."""
        for sink in sinks:
            if sink is not None:
                self.hangup.add_reopen(sink.reopen)
        if detector is not None:
            self.hangup.add_detector(detector)

    def ready(self, status: str) -> None:
        """Capturing: tell the service manager (READY=1)."""
        self.notifier.ready(status)

    def tick(self) -> None:
        """Called from the packet loop: handle a pending SIGHUP, keep the watchdog fed."""
        if self.hangup.pending:
            self.notifier.reloading()
            self.hangup.service()
            self.notifier.ready(f"reloaded ({self.hangup.reloads} reloads, "
                                f"{self.hangup.refused} refused)")
        self.notifier.tick()
        if self.describe is not None and self.notifier.enabled:
            now = time.monotonic()
            if now >= self._next_status:
                self._next_status = now + STATUS_INTERVAL_S
                self.notifier.status(self.describe())

    def stopping(self, why: str) -> None:
        """Shutting down: STOPPING=1 with the reason."""
        self.notifier.stopping(why)

    def close(self) -> None:
        """Restore the SIGHUP handler and release the notify socket."""
        self.hangup.restore()
        self.notifier.close()


_OUTPUT_KEYS = ("sessions", "conns", "alerts", "host_scores", "stats")
"""[live] output keys; the command-line option of each is `--KEY` (its parameter KEY_path)."""


def live_settings(config: Config, interfaces: tuple[str, ...], user: str | None,
                  opts: dict[str, object]) -> tuple[tuple[str, ...], str]:  # fmt: skip
    """The interfaces and user of a live run, the [live] section filling what the command line
    left out; the output paths it names are put into `opts` the same way."""
    live = config.live
    for key in _OUTPUT_KEYS:
        path = getattr(live, key)
        if opts.get(f"{key}_path") is None and path:
            opts[f"{key}_path"] = path
    ifaces = interfaces or live.interfaces
    return ifaces, live.user if user is None else user
