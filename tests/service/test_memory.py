"""The heap trimmer gives freed heap pages back to the kernel, and counts them."""

from __future__ import annotations

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
