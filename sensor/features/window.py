"""Sliding windows of packet time kept incrementally: one event list, sums per window."""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Callable
from typing import Final

from sensor.features.schema import ADDITIVE, DISTINCT, SUM_INDEX, SUMS
from sensor.records import WindowFeatures

Adds = tuple[tuple[int, float], ...]  # (index into SUMS, amount)
Keys = tuple[str, ...]  # distinct values, each tagged with its family (distinct_key)
# An event keeps its adds packed (PACKED_ADD per add): bytes are no container, so the cyclic garbage
# collector never walks them, where a tuple of pairs costs it one visit per pair and the tuple
# (a tenth of a live sensor's CPU went to collections walking window events). Merged long, the
# adds become a bytearray and the keys a list, so that merging stays linear.
_Event = tuple[float, bytes | bytearray, Keys | list[str]]
PACKED_ADD: Final = struct.Struct("=Bd")
"""How an event keeps each add: the index into SUMS, the amount (float64, as the sums)."""
_PAIR_SIZE: Final = PACKED_ADD.size
_pack_pair: Final = PACKED_ADD.pack
_iter_pairs: Final = PACKED_ADD.iter_unpack


def accumulate_py(total: array[float], adds: Adds) -> bytes:
    """Each add into its running sum (total[index] += amount), and the adds packed (PACKED_ADD
    each): what an event keeps. The reference of sensor/features/_sums.c's accumulate."""
    packed = b"".join([_pack_pair(idx, amount) for idx, amount in adds])
    for idx, amount in adds:
        total[idx] += amount
    return packed


_accumulate: Callable[[array[float], Adds], bytes]
try:  # the C loop (sensor/features/_sums.c), built beside the compiled modules
    from sensor.features import _sums

    _accumulate = _sums.accumulate
except ImportError:  # pure-Python install: the same sums and bytes, slower
    _accumulate = accumulate_py

NATIVE_SUMS: Final = _accumulate is not accumulate_py

# events of one host closer than this are merged into one window event
EVENT_RESOLUTION_S: Final = 1.0
# entries a merged event keeps in bytes and a tuple before a bytearray and a list
MERGE_TUPLE_MAX: Final = 32
# a merged event this large starts a new one: with max_events_per_host,
# this bounds a host's memory whatever its rate (a flood of sessions within 1 s included)
MERGE_MAX_ENTRIES: Final = 4096
# expired events left at the head of a host's event list before it is compacted
COMPACT_MIN: Final = 32
_NS: Final = len(SUMS)
assert _NS < 256, "a packed add holds the index of its running sum in one byte"
_ND: Final = len(DISTINCT)
_NA: Final = len(ADDITIVE)
_S: Final = SUM_INDEX
_RCPTS: Final = _S["rcpts"]
_IA_N: Final = _S["ia_n"]
_IA_SUM: Final = _S["ia_sum"]
_IA_SUMSQ: Final = _S["ia_sumsq"]
_FAILED: Final = _S["failed_conns"]
_REFUSED: Final = _S["refused_conns"]
_UNANSWERED: Final = _S["unanswered_conns"]
_RESET: Final = _S["reset_conns"]
_EXT_FAILED: Final = _S["ext_failed_conns"]
_LOSS_REFUSED: Final = _S["loss_refused_conns"]
_LOSS_UNANSWERED: Final = _S["loss_unanswered_conns"]
_LOSS_RESET: Final = _S["loss_reset_conns"]
_LOSS_EXT_FAILED: Final = _S["loss_ext_failed_conns"]
_CONNS: Final = _S["conns"]
_R4: Final = _S["rcpt_4xx"]
_R5: Final = _S["rcpt_5xx"]
_UNKNOWN: Final = _S["rcpt_unknown"]
_TLS: Final = _S["tls_sessions"]
_SESSIONS: Final = _S["sessions"]
_FOREIGN: Final = _S["rcpt_foreign"]
_MSG_BYTES: Final = _S["msg_bytes"]
_MSGS: Final = _S["msgs"]
_HELO_BAD: Final = _S["helo_bad"]
_HELO_SESSIONS: Final = _S["helo_sessions"]
_DATA_REJECTS: Final = _S["data_rejects"]
_MSG_RCPTS: Final = _S["msg_rcpts"]
_MSG_SUMSQ: Final = _S["msg_size_sumsq"]
_OFFHOURS: Final = _S["offhours_sessions"]

TAGS: Final[tuple[str, ...]] = tuple(chr(i) for i in range(_ND))
"""The one-character tag of each DISTINCT family; a distinct value is its tag + the value."""


_ZERO_SUMS: Final = array("d", bytes(8 * _NS))  # copied for each host's running sums
_ZERO_DISTINCT: Final = array("q", bytes(8 * _ND))  # copied for each host's distinct counts
_ZERO_HEADS: dict[int, tuple[int, ...]] = {}


def _zero_heads(n_windows: int) -> tuple[int, ...]:
    """The heads of a host without events, one tuple shared by every such host."""
    heads = _ZERO_HEADS.get(n_windows)
    if heads is None:
        heads = _ZERO_HEADS[n_windows] = (0,) * n_windows
    return heads


_ZEROS: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    """n zero bytes, one object per size."""
    z = _ZEROS.get(n)
    if z is None:
        z = _ZEROS[n] = bytes(n)
    return z


ONE: Final[tuple[tuple[int, float], ...]] = tuple((i, 1) for i in range(_NS))
"""Shared "add one" entries per running sum, so events allocate only what varies."""


def distinct_key(family: int, value: str) -> str:
    """A distinct value of one family (index into DISTINCT) as the string windows count."""
    return TAGS[family] + value


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def loss_view(s: list[float]) -> None:
    """The model's view of one window's running sums, in place: the failed connections that
    show capture loss (the loss_* HIDDEN sums, sensor.features.schema.LOSS_HIDDEN) left out of
    the failure counts. Without capture loss the sums are unchanged."""
    refused, unanswered, reset = s[_LOSS_REFUSED], s[_LOSS_UNANSWERED], s[_LOSS_RESET]
    ext = s[_LOSS_EXT_FAILED]
    if refused or unanswered or reset or ext:
        s[_REFUSED] -= refused
        s[_UNANSWERED] -= unanswered
        s[_RESET] -= reset
        s[_FAILED] -= refused + unanswered + reset
        s[_EXT_FAILED] -= ext


def _cv(n: float, total: float, sumsq: float) -> float:
    """Coefficient of variation (stdev / mean) from running sums; 0 below 2 values or mean 0."""
    if n < 2 or total <= 0:
        return 0.0
    mean = total / n
    return round(math.sqrt(max(0.0, sumsq / n - mean * mean)) / mean, 6)


class HostWindows:
    """One host's events and, per window length, the sums and distinct counts inside it.

    Distinct values are kept once per host, with the sequence number of the newest event that
    holds them: a value is inside a window exactly while that event is. Like the sums, a window's
    distinct count is what entered every window (_entered) less what left that one (_left): a value
    new to the host costs one increment, and _left exists only once some value left or came back
    while still inside a window. Heads are tuples of numbers and events tuples of a number, packed
    bytes and strings, which the cyclic garbage collector walks at most once (then stops tracking
    them): besides itself, a host leaves it one event list and two small arrays, so a table of
    many quiet hosts costs it little."""

    __slots__ = ("_base", "_entered", "_events", "_gone", "_heads", "_last", "_left", "_lengths",
                 "_max_events", "_total", "dropped")

    def __init__(self, lengths: tuple[float, ...], max_events: int) -> None:
        self._lengths = lengths  # ascending; the last one is the longest
        self._max_events = max_events
        # events from sequence number _base on; those before _heads[-1] expired (not compacted yet)
        self._events: list[_Event] = []
        self._base = 0
        # sequence number of each window's oldest event: a tuple, replaced when a head moves (the
        # GC stops tracking a tuple of ints, and new hosts share one)
        self._heads: tuple[int, ...] = _zero_heads(len(lengths))
        # window sum = everything added (_total) - what expired from window w (_gone[w*_NS + i])
        self._total = _ZERO_SUMS[:]
        self._gone: array[float] | None = None  # allocated at the first expiry
        self._last: dict[str, int] = {}  # distinct value -> newest event holding it
        self._entered = _ZERO_DISTINCT[:]  # per DISTINCT family, values counted in
        self._left: array[int] | None = None  # window w's at w*_ND; allocated when first needed
        self.dropped = 0  # events forced out by max_events

    def _remove(self, w: int, seq: int, ev: _Event) -> None:
        gone = self._gone
        if gone is None:
            gone = self._gone = array("d", bytes(8 * _NS * len(self._lengths)))
        off = w * _NS
        for idx, amount in _iter_pairs(ev[1]):
            gone[off + idx] += amount
        last, left, doff = self._last, self._left_counts(), w * _ND
        if w == len(self._lengths) - 1:  # it leaves every window: forget its newest values
            for key in ev[2]:
                if last[key] == seq:
                    del last[key]
                    left[doff + ord(key[0])] += 1
        else:
            for key in ev[2]:
                if last[key] == seq:
                    left[doff + ord(key[0])] += 1

    def _left_counts(self) -> array[int]:
        left = self._left
        if left is None:
            left = self._left = array("q", bytes(8 * _ND * len(self._lengths)))
        return left

    def advance(self, now: float) -> None:
        """Expire the events that fell out of each window at packet time `now`."""
        events, base, heads = self._events, self._base, self._heads
        end = base + len(events)
        if heads[-1] == end:  # no event in any window
            if end > base:
                self._compact()
            return
        moved: list[int] | None = None
        for w, length in enumerate(self._lengths):
            cutoff = now - length
            head = heads[w]
            if head < end and events[head - base][0] <= cutoff:
                while head < end and events[head - base][0] <= cutoff:
                    self._remove(w, head, events[head - base])
                    head += 1
                if moved is None:
                    moved = list(heads)
                moved[w] = head
                if head == end and self._gone is not None:  # emptied: clear rounding residue
                    self._gone[w * _NS:(w + 1) * _NS] = self._total
        if moved is not None:
            self._heads = tuple(moved)
        self._compact()

    def _compact(self) -> None:
        dead = self._heads[-1] - self._base
        if dead and (dead == len(self._events) or dead >= max(COMPACT_MIN, len(self._events) // 2)):
            del self._events[:dead]
            self._base += dead

    def add(self, ts: float, adds: Adds, keys: Keys) -> None:
        """Add one event (its time is at or after every earlier event's) to every window."""
        packed = _accumulate(self._total, adds)
        events, heads = self._events, self._heads
        end = self._base + len(events)
        # every window holds the newest event, so merging into it keeps sums exact
        merge = (
            end > heads[-1]
            and ts - events[-1][0] < EVENT_RESOLUTION_S
            and len(events[-1][1]) // _PAIR_SIZE + len(events[-1][2]) < MERGE_MAX_ENTRIES
        )
        seq = end - 1 if merge else end
        if keys:
            keys = self._count_new(seq, keys)
        if merge:
            merged = events[-1]
            into = merged[1]
            if isinstance(into, bytearray) and isinstance(merged[2], list):
                into += packed
                merged[2].extend(keys)
            elif len(into) // _PAIR_SIZE + len(merged[2]) < MERGE_TUPLE_MAX:  # few merges
                events[-1] = (merged[0], into + packed, (*merged[2], *keys))
            else:  # many merges: mutable from now on, so merging stays linear in the adds
                events[-1] = (merged[0], bytearray(into) + packed, [*merged[2], *keys])
            return
        events.append((ts, packed, keys))
        oldest = heads[-1]
        if end + 1 - oldest > self._max_events:
            ev = events[oldest - self._base]
            for w in range(len(heads)):
                if heads[w] == oldest:
                    self._remove(w, oldest, ev)
            self._heads = tuple(h + 1 if h == oldest else h for h in heads)
            self.dropped += 1
            self._compact()

    def _count_new(self, seq: int, keys: Keys) -> Keys:
        """Count the values entering windows with event `seq`; returns those new to the event."""
        last, heads, entered = self._last, self._heads, self._entered
        head0, oldest = heads[0], heads[-1]
        kept: list[str] | None = None  # built only when a value is already in the event
        for i, key in enumerate(keys):
            prev = last.get(key, -1)
            if prev == seq:
                if kept is None:
                    kept = list(keys[:i])
                continue
            if kept is not None:
                kept.append(key)
            last[key] = seq
            if prev < head0:  # outside the shortest window at least: it enters there
                fam = ord(key[0])
                entered[fam] += 1
                if prev >= oldest:  # still inside the longer windows: it does not enter those
                    left = self._left_counts()
                    for w, head in enumerate(heads):
                        if prev >= head:
                            left[w * _ND + fam] += 1
        return keys if kept is None else tuple(kept)

    def count(self, w: int, i: int) -> float:
        """Running sum `i` of window `w` (SUMS order), or distinct count `i - len(SUMS)`."""
        if i < _NS:
            gone = self._gone
            return self._total[i] - (gone[w * _NS + i] if gone is not None else 0.0)
        fam = i - _NS
        left = self._left
        return self._entered[fam] - (left[w * _ND + fam] if left is not None else 0)

    def reaches(self, needs: tuple[tuple[int, int, float, bool], ...], min_hits: float) -> bool:
        """Whether at least `min_hits` of `needs` hold: (window, count index as in `count`,
        threshold, strictly above); the arrays are read in place, as this runs once per record."""
        total, gone, entered, left = self._total, self._gone, self._entered, self._left
        hits = 0
        value: float
        for w, i, threshold, strict in needs:
            if i < _NS:
                value = total[i] - gone[w * _NS + i] if gone is not None else total[i]
            else:
                distinct = entered[i - _NS]
                if left is not None:
                    distinct -= left[w * _ND + i - _NS]
                value = float(distinct)
            if value > threshold if strict else value >= threshold:
                hits += 1
                if hits >= min_hits:
                    return True
        return hits >= min_hits

    def total(self, w: int, name: str) -> float:
        """One running sum of window `w`."""
        return self.count(w, _S[name])

    def start(self, w: int, now: float) -> float:
        """Packet time of the oldest event in window `w` (`now` when it is empty)."""
        pos = self._heads[w] - self._base
        return self._events[pos][0] if pos < len(self._events) else now

    @property
    def empty(self) -> bool:
        """No event is left in any window."""
        return self._heads[-1] == self._base + len(self._events)

    def snapshot(self, w: int) -> WindowFeatures:
        """The features of window `w` now."""
        return WindowFeatures(*self.values(w))

    def raw_into(self, floats: bytearray, ints: bytearray) -> None:
        """Append what `values` reads for every window to two buffers, for the model's batch
        path (sensor.features.batch computes the features of many hosts at once with numpy):
        the running sums then each window's expired sums as float64 to `floats`, the distinct
        values entered then each window's left as int64 to `ints` (zeros where none expired)."""
        floats += self._total
        gone = self._gone
        floats += _zeros(8 * _NS * len(self._lengths)) if gone is None else gone
        ints += self._entered
        left = self._left
        ints += _zeros(8 * _ND * len(self._lengths)) if left is None else left

    def values(self, w: int, model: bool = False) -> list[float]:
        """The features of window `w` now, as floats in WINDOW_FIELDS order: what `snapshot`
        holds (the rules' view), or with `model` the model's view (`loss_view`: failed
        connections that show capture loss left out)."""
        gone = self._gone
        if gone is None:
            s = list(self._total)
        else:
            s = [t - g for t, g in zip(self._total, gone[w * _NS:(w + 1) * _NS], strict=True)]
        if model:
            loss_view(s)
        rcpts, msgs = s[_RCPTS], s[_MSGS]
        values = s[:_NA]  # ADDITIVE precede the HIDDEN sums
        left = self._left
        if left is None:
            values.extend([float(e) for e in self._entered])
        else:
            values.extend([float(e - g) for e, g in zip(self._entered, left[w * _ND:(w + 1) * _ND],
                                                        strict=True)])
        values.extend((
            _ratio(s[_FAILED], s[_CONNS]),
            _ratio(s[_R4] + s[_R5], rcpts),
            _ratio(s[_UNKNOWN], rcpts),
            _ratio(s[_TLS], s[_SESSIONS]),
            _ratio(s[_FOREIGN], rcpts),
            _ratio(s[_MSG_BYTES], msgs),
            _cv(s[_IA_N], s[_IA_SUM], s[_IA_SUMSQ]),
            _ratio(s[_HELO_BAD], s[_HELO_SESSIONS]),
            # v2
            _ratio(s[_DATA_REJECTS], msgs),
            _ratio(s[_MSG_RCPTS], msgs),
            _cv(msgs, s[_MSG_BYTES], s[_MSG_SUMSQ]),
            _ratio(s[_OFFHOURS], s[_SESSIONS]),
        ))
        return values
