"""SIGHUP for a long run: reopen the output files (logrotate) and reload rules and suppression."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import fields, replace
from types import FrameType
from typing import TYPE_CHECKING, Final

from sensor.errors import SensorError

if TYPE_CHECKING:
    from sensor.config import Config
    from sensor.detect.detector import Detector

RELOADED: Final = ("rules", "suppression")
"""Config sections a SIGHUP applies to a running sensor; the others need a restart."""
_NOT_COMPARED: Final = frozenset({"source", "assumed", *RELOADED})


class Hangup:
    """Handles SIGHUP in two steps: the signal handler only sets `pending`; `service()`, called
    from the packet loop between two batches (never during a write), does the work.

    It reopens every registered file, then reads `config_path` again: a file that no longer
    validates is refused with one warning and the running configuration stays; a valid one
    gives the detector its new rules and suppression while every host's state is kept.
    """

    def __init__(self, config_path: str | None, config: Config,
                 warn: Callable[[str], None]) -> None:  # fmt: skip
        self.config_path = config_path
        self.config = config
        self.warn = warn
        self.pending = False
        self.reopened = 0
        self.reloads = 0
        self.refused = 0
        self._reopen: list[Callable[[], None]] = []
        self._on_reload: list[Callable[[Config], None]] = []
        self._previous: object = None
        self._installed = False

    def install(self) -> None:
        """Handle SIGHUP in this process until `restore()` (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(signal.SIGHUP, self._handle)
        self._installed = True

    def restore(self) -> None:
        """Put back the SIGHUP handler `install()` replaced."""
        if self._installed:
            signal.signal(signal.SIGHUP, self._previous)  # type: ignore[arg-type]
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True

    def add_reopen(self, reopen: Callable[[], None]) -> None:
        """Call `reopen()` on every SIGHUP (e.g. JsonlSink.reopen)."""
        self._reopen.append(reopen)

    def add_detector(self, detector: Detector) -> None:
        """Give `detector` the reloaded rules and suppression on every SIGHUP."""
        self._on_reload.append(detector.reconfigure)

    def service(self) -> bool:
        """Do what a SIGHUP since the last call asked for; True when one was handled."""
        if not self.pending:
            return False
        self.pending = False
        for reopen in self._reopen:
            try:
                reopen()
                self.reopened += 1
            except SensorError as exc:
                self.warn(f"SIGHUP: {exc}; still writing to the old file")
        self.reload()
        return True

    def reload(self) -> None:
        """Read the configuration file again and apply what can change while running."""
        if self.config_path is None:
            return
        from sensor.config import load_config

        try:
            fresh = load_config(self.config_path)
        except SensorError as exc:
            self.refused += 1
            self.warn(f"SIGHUP: configuration refused, the running one stays: {exc}")
            return
        changed = [f.name for f in fields(fresh) if f.name not in _NOT_COMPARED
                   and getattr(fresh, f.name) != getattr(self.config, f.name)]  # fmt: skip
        if changed:
            self.warn(f"SIGHUP: {', '.join(changed)} changed: applied at the next restart, "
                      "only rules and suppression are reloaded")
        self.config = replace(self.config, rules=fresh.rules, suppression=fresh.suppression)
        for apply in self._on_reload:
            apply(self.config)
        self.reloads += 1
