"""The heap trimmer gives freed heap pages back to the kernel, and counts them; one malloc arena
serves every thread when asked."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

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


_RESERVE = """
import os, resource, sys
from sensor.service import memory
from sensor.service.memory import reserve
got = reserve(int(sys.argv[1]) << 20)
assert got.arena_bytes == 0 or reserve(64 << 20).arena_bytes == 0  # once per process
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
kept = [(i, str(i), [i]) for i in range(1_000_000)]  # some 150 MB of small objects
blobs = [bytes(2000) for _ in range(20_000)]  # 40 MB of C heap
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
del kept
stats = got.stats()
pid = os.fork()  # a child forked afterwards allocates and frees from the same pool
if pid == 0:
    more = [str(i) * 3 for i in range(300_000)]
    del more
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
print(got.arena_bytes, got.malloc_bytes, faults, stats["reserve_arenas_taken"],
      stats["reserve_arenas_beyond"], got.stats()["reserve_arenas_free"])
"""


def _reserve_run(mb: int) -> list[int]:
    out = subprocess.run([sys.executable, "-c", _RESERVE, str(mb)], capture_output=True,
                         text=True, check=True, timeout=120).stdout  # fmt: skip
    return [int(x) for x in out.split()]


def test_a_reservation_takes_the_page_faults_before_the_tables_grow() -> None:
    arena, malloc, faults, taken, beyond, free = _reserve_run(384)
    assert arena == 256 << 20 and malloc == 128 << 20
    assert taken > 100 and beyond == 0
    assert free > (arena >> 20) - 20  # the arenas freed went back to the pool (del kept)
    none = _reserve_run(0)
    assert none[:2] == [0, 0] and none[3:] == [0, 0, 0]
    # every 4 KiB page of the ~190 MB allocated is a fault without it; almost none with it
    assert none[2] > 35_000 and faults < none[2] // 10, (faults, none[2])


def test_the_trimmer_keeps_the_reserved_heap() -> None:
    code = """
import sys
from sensor.service.memory import HeapTrimmer, reserve
from sensor.service.stats import rss_bytes
got = reserve(int(sys.argv[1]) << 20)
t = HeapTrimmer(60, got.malloc_bytes)
t.trim()
print(got.malloc_bytes, rss_bytes())
"""
    def run(mb: int) -> list[int]:
        out = subprocess.run([sys.executable, "-c", code, str(mb)], capture_output=True,
                             text=True, check=True, timeout=60).stdout  # fmt: skip
        return [int(x) for x in out.split()]

    kept_bytes, rss = run(300)
    _, rss_none = run(0)
    assert kept_bytes == 100 << 20
    assert rss - rss_none > 280 << 20  # arenas and heap both still resident after the trim


def test_nothing_is_reserved_without_the_compiled_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from sensor.service import memory

    monkeypatch.setattr(memory, "_c_reserve", None)
    got = memory.reserve(64 << 20)
    assert (got.arena_bytes, got.malloc_bytes) == (0, 0)
    assert got.stats() == {"reserved_bytes": 0, "reserve_arenas_taken": 0,
                           "reserve_arenas_beyond": 0, "reserve_arenas_free": 0}  # fmt: skip
