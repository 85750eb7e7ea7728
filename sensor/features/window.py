"""Sliding windows of packet time kept incrementally: a bounded event deque, sums per window."""

from __future__ import annotations

import math
from collections import deque

from sensor.features.schema import ADDITIVE, DISTINCT, SUM_INDEX, SUMS
from sensor.records import WindowFeatures

Adds = tuple[tuple[int, float], ...]  # (index into SUMS, amount)
Keys = tuple[tuple[int, str], ...]  # (index into DISTINCT, value)
Event = tuple[float, Adds, Keys]

EVENT_RESOLUTION_S = 1.0  # events of one host closer than this are merged into one window event
_NS = len(SUMS)
_ND = len(DISTINCT)
_NA = len(ADDITIVE)
_S = SUM_INDEX
_RCPTS, _IA_N, _IA_SUM, _IA_SUMSQ = _S["rcpts"], _S["ia_n"], _S["ia_sum"], _S["ia_sumsq"]
_FAILED, _CONNS, _R4, _R5 = _S["failed_conns"], _S["conns"], _S["rcpt_4xx"], _S["rcpt_5xx"]
_UNKNOWN, _TLS, _SESSIONS = _S["rcpt_unknown"], _S["tls_sessions"], _S["sessions"]
_FOREIGN, _MSG_BYTES, _MSGS = _S["rcpt_foreign"], _S["msg_bytes"], _S["msgs"]
_HELO_BAD, _HELO_SESSIONS = _S["helo_bad"], _S["helo_sessions"]


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


class HostWindows:
    """One host's events and, per window length, the sums and distinct counts inside it."""

    __slots__ = ("_base", "_dist", "_events", "_gone", "_heads", "_lengths", "_max_events",
                 "_total", "dropped")

    def __init__(self, lengths: tuple[float, ...], max_events: int) -> None:
        self._lengths = lengths  # ascending; the last one is the longest
        self._max_events = max_events
        self._events: deque[Event] = deque()
        self._base = 0  # sequence number of _events[0]
        self._heads = [0] * len(lengths)  # sequence number of each window's oldest event
        # window sum = everything added (_total) - what expired from that window (_gone[w])
        self._total = [0.0] * _NS
        self._gone: list[list[float]] = [[0.0] * _NS for _ in lengths]
        self._dist: list[list[dict[str, int]]] = [[{} for _ in range(_ND)] for _ in lengths]
        self.dropped = 0  # events forced out by max_events

    def _remove(self, w: int, ev: Event) -> None:
        gone = self._gone[w]
        for idx, amount in ev[1]:
            gone[idx] += amount
        dist = self._dist[w]
        for fam, key in ev[2]:
            d = dist[fam]
            n = d[key] - 1
            if n:
                d[key] = n
            else:
                del d[key]

    def advance(self, now: float) -> None:
        """Expire the events that fell out of each window at packet time `now`."""
        events, base = self._events, self._base
        end = base + len(events)
        for w, length in enumerate(self._lengths):
            cutoff = now - length
            head = self._heads[w]
            while head < end and events[head - base][0] <= cutoff:
                self._remove(w, events[head - base])
                head += 1
            if head == end:  # empty: clear rounding residue of float sums
                self._gone[w] = self._total.copy()
            self._heads[w] = head
        while self._base < self._heads[-1]:
            events.popleft()
            self._base += 1

    def add(self, ev: Event) -> None:
        """Add one event (its time is at or after every earlier event's) to every window."""
        total = self._total
        for idx, amount in ev[1]:
            total[idx] += amount
        for dist in self._dist:
            for fam, key in ev[2]:
                d = dist[fam]
                d[key] = d.get(key, 0) + 1
        events = self._events
        if events and ev[0] - events[-1][0] < EVENT_RESOLUTION_S:
            last = events[-1]  # every window holds the newest event, so merging keeps sums exact
            events[-1] = (last[0], last[1] + ev[1], last[2] + ev[2])
            return
        events.append(ev)
        if len(events) > self._max_events:
            oldest = self._events[0]
            for w in range(len(self._lengths)):
                if self._heads[w] == self._base:
                    self._remove(w, oldest)
                    self._heads[w] += 1
            self._events.popleft()
            self._base += 1
            self.dropped += 1

    def total(self, w: int, name: str) -> float:
        """One running sum of window `w`."""
        i = _S[name]
        return self._total[i] - self._gone[w][i]

    def start(self, w: int, now: float) -> float:
        """Packet time of the oldest event in window `w` (`now` when it is empty)."""
        pos = self._heads[w] - self._base
        return self._events[pos][0] if pos < len(self._events) else now

    @property
    def empty(self) -> bool:
        """No event is left in any window."""
        return not self._events

    def snapshot(self, w: int) -> WindowFeatures:
        """The features of window `w` now."""
        s = [t - g for t, g in zip(self._total, self._gone[w], strict=True)]
        rcpts, n_ia, ia_sum = s[_RCPTS], s[_IA_N], s[_IA_SUM]
        cv = 0.0
        if n_ia >= 2 and ia_sum > 0:
            mean = ia_sum / n_ia
            cv = round(math.sqrt(max(0.0, s[_IA_SUMSQ] / n_ia - mean * mean)) / mean, 6)
        values = s[:_NA]  # ADDITIVE precede the HIDDEN sums
        values.extend([len(d) for d in self._dist[w]])
        values.extend((
            _ratio(s[_FAILED], s[_CONNS]),
            _ratio(s[_R4] + s[_R5], rcpts),
            _ratio(s[_UNKNOWN], rcpts),
            _ratio(s[_TLS], s[_SESSIONS]),
            _ratio(s[_FOREIGN], rcpts),
            _ratio(s[_MSG_BYTES], s[_MSGS]),
            cv,
            _ratio(s[_HELO_BAD], s[_HELO_SESSIONS]),
        ))
        return WindowFeatures(*values)
