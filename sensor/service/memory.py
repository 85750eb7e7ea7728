"""The live run's memory: resident from the start (`reserve`), and the heap's free pages handed
back to the kernel during a long run (`HeapTrimmer`).

glibc's malloc keeps the pages it freed: after a burst (a flood's connections and hosts
expiring) the resident size stays at the burst's high-water mark. `malloc_trim(0)` returns every
free page of every arena (the middle of a heap too, since glibc 2.8) with madvise. Measured live
on a veth, a minute after a 200,000-flow SYN flood: 351 MB of anonymous memory with a trim a
second against 415 MB without. The call drops the GIL; malloc waits only on the arena lock it
holds meanwhile.

The reservation is the other side of that: the pages a busy link's tables grow into during the
first seconds, each a page fault (clearing a page: 2.8 us here, up to four times that while the
host is slow to give memory), made resident before the first packet instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sensor.service.stats import rss_bytes

_c_reserve: Callable[[int, int], tuple[int, int]] | None
_c_pool: Callable[[], tuple[int, int, int]] | None
try:  # the reservation (sensor/_heap.c), built beside the compiled modules
    from sensor import _heap

    _c_reserve, _c_pool = _heap.reserve, _heap.pool
except ImportError:  # pure-Python install: nothing is reserved
    _c_reserve = _c_pool = None

_STOP_WAIT_S: Final = 5.0
_M_ARENA_MAX: Final = -8  # mallopt parameter (glibc malloc.h)


def _libc_function(name: str) -> Any:
    """A function of the C library, or None where it has none (glibc's malloc_trim and mallopt
    are missing from musl and macOS)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    fn = _libc_function("malloc_trim")
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    trim: Callable[[int], int] = fn
    return trim


def one_malloc_arena() -> bool:
    """Make glibc's malloc serve every thread from its main arena, threads started later in this
    process and in processes forked from it included; False where the C library has no mallopt.

    A thread otherwise gets an arena of its own, whose heaps glibc shrinks back to the kernel
    more eagerly than the main one: a Dask worker's task thread, which allocates and frees a
    frame's bytes per packet, then costs 2% more CPU and 18% more page faults than the same
    work on the main thread (measured on the cluster benchmark's files). Threads that allocate
    little besides it contend for the one arena's lock seldom."""
    fn = _libc_function("mallopt")
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    return bool(fn(_M_ARENA_MAX, 1))


ARENA_SHARE: Final = 2 / 3
"""Of a reservation, the part for Python's object allocator (measured at 300,000 packets/s: its
arenas are about two thirds of what the packet loop's process grows by)."""


@dataclass(slots=True)
class Reservation:
    """What `reserve` made resident: bytes for the object allocator's arenas and for the C heap."""

    arena_bytes: int = 0
    malloc_bytes: int = 0

    def stats(self) -> dict[str, int]:
        """The pool's counters, for the stats lines: arenas taken from it, arenas it had none
        left for (from the kernel as before), and arenas free in it."""
        taken = beyond = free = 0
        if self.arena_bytes and _c_pool is not None:
            taken, beyond, free = _c_pool()
        return {"reserved_bytes": self.arena_bytes + self.malloc_bytes,
                "reserve_arenas_taken": taken, "reserve_arenas_beyond": beyond,
                "reserve_arenas_free": free}  # fmt: skip


def reserve(total_bytes: int) -> Reservation:
    """Make `total_bytes` resident now, for the tables to grow into without page faults
    (sensor/_heap.c): ARENA_SHARE of it as a pool of arenas for Python's object allocator, the
    rest as C heap that malloc keeps. Once per process, after the last fork that shares its
    pages (a child forked after it would make every page the parent writes a copy-on-write
    fault), before the packet loop. Nothing where the module is not built or not Linux/glibc."""
    if total_bytes <= 0 or _c_reserve is None:
        return Reservation()
    arenas = int(total_bytes * ARENA_SHARE)
    got_arena, got_malloc = _c_reserve(arenas, total_bytes - arenas)
    return Reservation(got_arena, got_malloc)


class HeapTrimmer:
    """Every `interval_s`, malloc_trim from a daemon thread; counts the trims and the
    resident bytes they gave back. The top `keep_bytes` of the heap stay (a reservation's)."""

    def __init__(self, interval_s: float, keep_bytes: int = 0) -> None:
        self.interval_s = interval_s
        self.keep_bytes = keep_bytes
        self.trims = 0
        self.released_bytes = 0
        self._fn = _malloc_trim() if interval_s > 0 else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """Whether trims run: a positive interval and a C library with malloc_trim."""
        return self._fn is not None

    def start(self) -> None:
        """Trim in a daemon thread until `stop()` (nothing when unavailable)."""
        if self._fn is None:
            return
        self._thread = threading.Thread(target=self._loop, name="heap-trim", daemon=True)
        self._thread.start()

    def trim(self) -> int:
        """One trim now; the resident bytes it gave back (0 when unavailable)."""
        if self._fn is None:
            return 0
        before = rss_bytes()
        self._fn(self.keep_bytes)
        released = max(0, before - rss_bytes())
        self.trims += 1
        self.released_bytes += released
        return released

    def stats(self) -> dict[str, int]:
        """The counters, for the stats lines and the metrics."""
        return {"heap_trims": self.trims, "heap_released_bytes": self.released_bytes}

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_STOP_WAIT_S)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.trim()
