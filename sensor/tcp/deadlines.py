"""The connection table's timers: a binary heap of connections ordered by (deadline, scheduling
order), in which each connection knows its place.

A new deadline moves the connection within the heap and a removed connection leaves it, so the
heap holds exactly the connections of the table. A heap of (deadline, order, connection) tuples
keeps one entry per scheduling instead, to be skipped when popped and swept out once they pile
up: each sweep visited and freed tens of thousands of entries in one go (20 to 40 ms at 300,000
packets a second, about every 0.8 s).
"""

from __future__ import annotations

from sensor.tcp.conn import Connection


def _before(a: Connection, b: Connection) -> bool:
    """Whether `a` comes out first: the earlier deadline, then the earlier scheduling."""
    da, db = a.heap_deadline, b.heap_deadline
    return da < db or (da == db and a.heap_tick < b.heap_tick)


class Deadlines:
    """Connections by deadline: schedule, first, pop, discard."""

    __slots__ = ("_heap", "_tick")

    def __init__(self) -> None:
        self._heap: list[Connection] = []
        self._tick = 0  # scheduling order: equal deadlines come out first scheduled, first

    def __len__(self) -> int:
        return len(self._heap)

    def first(self) -> Connection | None:
        """The connection whose deadline comes first (None when empty); it stays."""
        heap = self._heap
        return heap[0] if heap else None

    def schedule(self, c: Connection, deadline: float) -> None:
        """Give `c` this deadline, as scheduled now; a deadline equal to the one it has keeps
        its place among equal deadlines (its first scheduling at that time)."""
        i = c.heap_index
        if i >= 0 and deadline == c.heap_deadline:
            return
        c.heap_deadline = deadline
        c.heap_tick = self._tick
        self._tick += 1
        if i < 0:
            self.put_back(c)
        elif not self._up(i):
            self._down(i)

    def put_back(self, c: Connection) -> None:
        """Insert `c`, out of the heap, with the deadline and order it had."""
        heap = self._heap
        c.heap_index = len(heap)
        heap.append(c)
        self._up(len(heap) - 1)

    def pop(self) -> Connection:
        """Take out the first connection (the heap must not be empty)."""
        c = self._heap[0]
        self._take(0)
        return c

    def discard(self, c: Connection) -> None:
        """Take `c` out, if it is in."""
        if c.heap_index >= 0:
            self._take(c.heap_index)

    def clear(self) -> None:
        for c in self._heap:
            c.heap_index = -1
        self._heap = []

    def _take(self, i: int) -> None:
        heap = self._heap
        gone = heap[i]
        gone.heap_index = -1
        last = heap.pop()
        if i < len(heap):
            heap[i] = last
            last.heap_index = i
            if not self._up(i):
                self._down(i)

    def _up(self, i: int) -> bool:
        """Move the entry at `i` towards the root while it comes first; whether it moved."""
        heap = self._heap
        c = heap[i]
        start = i
        while i > 0:
            parent = (i - 1) >> 1
            p = heap[parent]
            if not _before(c, p):
                break
            heap[i] = p
            p.heap_index = i
            i = parent
        if i == start:
            return False
        heap[i] = c
        c.heap_index = i
        return True

    def _down(self, i: int) -> None:
        """Move the entry at `i` towards the leaves while a child comes before it."""
        heap = self._heap
        n = len(heap)
        c = heap[i]
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            right = child + 1
            if right < n and _before(heap[right], heap[child]):
                child = right
            k = heap[child]
            if not _before(k, c):
                break
            heap[i] = k
            k.heap_index = i
            i = child
        heap[i] = c
        c.heap_index = i
