"""The heap trimmer gives freed heap pages back to the kernel, and counts them; one malloc arena
serves every thread when asked."""

from __future__ import annotations

import subprocess
import sys
import time

from sensor.service.memory import HeapTrimmer
from sensor.service.stats import rss_bytes


def _holes(n: int = 20_000, size: int = 10_000) -> list[bytes]:
    """About 200 MB of heap chunks with every tenth one kept: the freed runs sit between live
    chunks, so free() alone cannot return them (only the top of a heap shrinks by itself)."""
    chunks = [bytes(size) for _ in range(n)]
    kept = chunks[::10]
    del chunks
    return kept


def test_trim_returns_the_freed_middle_of_the_heap() -> None:
    trimmer = HeapTrimmer(60)
    assert trimmer.available  # glibc, as on Debian
    kept = _holes()
    before = rss_bytes()
    released = trimmer.trim()
    assert released > 100 << 20, (before, released)
    assert rss_bytes() < before - (100 << 20)
    assert trimmer.stats() == {"heap_trims": 1, "heap_released_bytes": released}
    assert len(kept) == 2000


def test_thread_trims_every_interval_and_stops() -> None:
    trimmer = HeapTrimmer(0.05)
    trimmer.start()
    try:
        deadline = time.monotonic() + 10
        while trimmer.trims < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        trimmer.stop()
    assert trimmer.trims >= 3
    count = trimmer.trims
    time.sleep(0.2)
    assert trimmer.trims == count  # stopped


def test_zero_interval_never_trims() -> None:
    trimmer = HeapTrimmer(0)
    assert not trimmer.available
    trimmer.start()
    assert trimmer.trim() == 0
    trimmer.stop()
    assert trimmer.stats() == {"heap_trims": 0, "heap_released_bytes": 0}


_ARENAS = """
import ctypes, ctypes.util, os, sys, tempfile, threading
from sensor.service.memory import one_malloc_arena
if sys.argv[1] == "one":
    assert one_malloc_arena()
def work():
    kept = [bytes(300) for _ in range(100_000)]  # small chunks: from the thread's arena
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = os.path.join(tempfile.mkdtemp(), "info.xml")
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(path).read().count("<heap nr="), len(kept))
if os.fork() == 0:  # as a LocalCluster's worker: forked, then a thread runs the task
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    os._exit(0)
os.wait()
"""


def test_one_malloc_arena_serves_threads_of_forked_children_from_the_main_arena() -> None:
    def heaps(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _ARENAS, mode], capture_output=True,
                             text=True, check=True, timeout=60).stdout  # fmt: skip
        return int(out.split()[0])

    assert heaps("default") == 2  # the thread got an arena of its own
    assert heaps("one") == 1
