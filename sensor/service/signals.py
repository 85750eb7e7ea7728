"""Signals that end a run: the first SIGINT/SIGTERM asks for a clean stop, a second aborts."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Final

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a run."""
PR_SET_PDEATHSIG: Final = 1
"""prctl(2) option (linux/prctl.h): the signal a process gets when its parent dies."""
PR_SET_NAME: Final = 15
"""prctl(2) option: the thread's name (/proc/PID/comm, what ps and top show), 15 bytes."""


class Aborted(BaseException):
    """A second stop signal arrived while the run was flushing after the first.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Shutdown:
    """What the stop signals did to a run: `stop` is set on the first, then `signum` names it.

    Hooks run (in the signal handler) on the first signal, e.g. to forward it to workers. With
    `abort_on_second`, a second signal raises Aborted in the main thread; without, repeats are
    ignored (workers, which also get the terminal's SIGINT besides the parent's forward).
    """

    def __init__(self, abort_on_second: bool = True) -> None:
        self.stop = threading.Event()
        self.signum = 0
        self.flushed = 0
        """Connections still open when reading stopped, flushed because of the signal."""
        self.abort_on_second = abort_on_second
        self._hooks: list[Callable[[int], None]] = []
        self._previous: dict[int, object] = {}

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the signal (128 + its number), or 0 when none came."""
        return 128 + self.signum if self.signum else 0

    @property
    def name(self) -> str:
        """The signal's name, e.g. SIGTERM ("" when none came)."""
        return signal.Signals(self.signum).name if self.signum else ""

    def add_hook(self, hook: Callable[[int], None]) -> None:
        """Call hook(signum) on the first stop signal (at once if it already came)."""
        self._hooks.append(hook)
        if self.signum:
            hook(self.signum)

    def remove_hook(self, hook: Callable[[int], None]) -> None:
        """Stop calling `hook`."""
        with contextlib.suppress(ValueError):
            self._hooks.remove(hook)

    def install(self) -> None:
        """Handle STOP_SIGNALS in this process until `restore()` (a no-op outside the main
        thread, where Python cannot set signal handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers `install()` replaced."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            if self.abort_on_second:
                raise Aborted(signum)
            return
        self.signum = signum
        self.stop.set()
        for hook in list(self._hooks):
            hook(signum)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process (SIGKILL) when its parent dies (Linux prctl
    PR_SET_PDEATHSIG); exit at once if the parent is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def name_process(name: str) -> None:
    """Name this process (/proc/PID/comm, shown by ps and top; at most 15 bytes kept)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
