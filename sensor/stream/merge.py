"""Puts the entries of many sources (sensors) back into one packet-time order, by watermark."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Final

from sensor.stream.entries import END, Parsed

INF: Final = float("inf")


class Source:
    """What the merge knows of one publisher run."""

    __slots__ = ("buffered", "ended", "last_seq", "last_wall", "wm")

    def __init__(self, last_seq: int) -> None:
        self.last_seq = last_seq  # highest sequence number received (or applied before)
        self.wm = -INF  # highest merge key received: nothing later from it comes before
        self.ended = False
        self.last_wall = 0.0
        self.buffered = 0


class Merge:
    """Entries go in as they arrive (each source in its own order); they come out in the order
    of (merge key, source, sequence number) once every live source has sent a key beyond
    theirs. That order does not depend on how the sources' entries interleaved in the stream,
    so a replay gives the same order. A source silent for `timeout_s` (wall clock) stops
    holding the others back; what it sends later is applied late, counted."""

    def __init__(self, floor: dict[str, int] | None = None, timeout_s: float = INF) -> None:
        self.sources: dict[str, Source] = {}
        self._floor = floor if floor is not None else {}
        self._heap: list[tuple[float, str, int, Parsed]] = []
        self.timeout_s = timeout_s
        self.duplicates = 0
        self.late = 0
        self.seen = 0  # sources met (forgotten ones included)
        self.last_key = -INF

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, p: Parsed, now: float) -> bool:
        """Take one entry; False (and counted) when its source's sequence number was seen."""
        src = self.sources.get(p.src)
        if src is None:
            src = self.sources[p.src] = Source(self._floor.get(p.src, 0))
            self.seen += 1
        if p.seq <= src.last_seq:
            self.duplicates += 1
            return False
        src.last_seq = p.seq
        src.last_wall = now
        if p.t > src.wm:
            src.wm = p.t
        if p.kind == END:
            src.ended = True
        if p.t < self.last_key:
            self.late += 1
        src.buffered += 1
        heapq.heappush(self._heap, (p.t, p.src, p.seq, p))
        return True

    def expect(self, names: list[str]) -> None:
        """Sources that hold the merge back until they are seen or ended (a replay's)."""
        for name in names:
            if name not in self.sources:
                self.sources[name] = Source(0)

    def end(self, name: str) -> None:
        """No more entries will come from this source."""
        src = self.sources.get(name)
        if src is None:
            src = self.sources[name] = Source(self._floor.get(name, 0))
        src.ended = True

    def forget(self, name: str) -> None:
        """Drop an ended source with nothing buffered (its entries are gone from the stream)."""
        src = self.sources.get(name)
        if src is not None and src.ended and not src.buffered:
            del self.sources[name]
            self._floor.pop(name, None)

    def watermark(self, now: float) -> float:
        """Entries with a key below this can go: every live source is past it."""
        w = INF
        for src in self.sources.values():
            if not src.ended and now - src.last_wall <= self.timeout_s and src.wm < w:
                w = src.wm
        return w

    def pop(self, limit: float) -> Iterator[Parsed]:
        """The entries with a key below `limit`, in merge order."""
        heap = self._heap
        while heap and heap[0][0] < limit:
            t, name, _, p = heapq.heappop(heap)
            self.sources[name].buffered -= 1
            if t > self.last_key:
                self.last_key = t
            yield p
