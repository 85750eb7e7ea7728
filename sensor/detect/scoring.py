"""The model half of detection at run time: batches of host windows scored, verdicts as alerts.

Hosts whose features changed are snapshot together every [model] score_interval_s of packet
time and scored as one batch. A scorer may answer later than asked (the model loads and scores
in a child process during `analyze`, so that the packet loop never waits for scikit-learn):
rule alerts raised meanwhile queue behind the batch, and each batch's verdicts are applied in
order before the alerts after it are released. The output is therefore the same whatever the
scorer's speed, as if every batch had been scored the moment it was taken.

A batch is taken at once but copied out of the host table a few hosts at a time, over the
records that follow (SNAP_STEP hosts with each host change), and its verdicts are applied as
the child answers them, so that a live capture never stalls on tens of thousands of hosts at
the end of an interval. A host is copied before anything
changes it (`settle`, which the detector calls with the addresses of each record first), so
every row is still the host as it was when the batch was taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from sensor.config import Config
from sensor.detect.alerts import Suppressor, iso_time
from sensor.detect.card import MODEL_FEATURES, ROLES
from sensor.detect.rules import AlertKind, Finding, score
from sensor.errors import ModelError
from sensor.features.hosts import HostState, HostTable
from sensor.records import Alert

if TYPE_CHECKING:
    from sensor.detect.model import HostModel, RoleStats
    from sensor.detect.tables import ScoreTables

_NF: Final = len(MODEL_FEATURES)
BATCH_ROWS: Final = 2048  # rows sent to the scorer at once: a big batch goes in parts
SNAP_STEP: Final = 16  # hosts of taken batches copied with each host change (see the module doc)
POLL_EVERY: Final = 64  # host changes between two looks for the child's answers
_HEADER: Final = struct.Struct("<cQ")  # message kind, payload length
MODEL_PROCESS_NAME: Final = "port25-model"  # the child's name in ps and top
CHILD_EXIT_S: Final = 2.0  # longest wait for the model's process to exit at the end
CHILD_NICE: Final = 10
"""Niceness the model's process adds to its own. Where the cores are all busy (a live sensor at
its limit), the scheduler then gives the packet loop the CPU first: a batch of 50,000 hosts is
scored in bursts of 0.1 to 0.7 s of CPU, time the packet loop would otherwise lose, with packets
piling up in the kernel ring meanwhile. The child needs about a fourteenth of the parent's CPU
(the bundled model: 0.24 against 3.2 us a packet); at nice 10 it still gets about a tenth of a
core it shares with the parent (CFS weights 110 against 1024), so it keeps up."""
_REQUEST: Final = struct.Struct("<QQB")  # rows, bytes of the float buffer, rows wanted back
_ANSWER: Final = struct.Struct("<QB")  # rows answered, rows included (scores, roles, [rows],
# explanations follow)


class Scored:
    """What the model's process answers for a batch: each row's score and role, and the rows
    themselves (float64, MODEL_FEATURES each), read only for the rows explained."""

    __slots__ = ("roles", "rows", "scores", "tops")

    def __init__(self, scores: list[Any], roles: list[int], rows: Any,
                 tops: list[list[dict[str, object]]] | None = None) -> None:
        self.scores = scores
        self.roles = roles
        self.rows = rows
        self.tops = tops
        """The explanation of each row over the threshold, in row order (None: not made)."""


class Scorer:
    """Scores batches of rows in submission order: submit now, take the results later."""

    threshold: float = float("inf")
    synchronous = False
    explains = False
    """True: the scorer explains the rows over the threshold itself (Scored.tops)."""
    """True: `score` answers at once, so batches are scored several at a time (ModelStage);
    False: `submit` now, `result` later, batch by batch."""

    def score(self, X: Any) -> Any:
        """Scores of rows at once (synchronous scorers)."""
        raise NotImplementedError

    def submit(self, floats: bytes, ints: bytes, n: int, rows: bool = True) -> None:
        """Send the raw window state of `n` hosts (HostTable.raw) to be made into rows and
        scored (asynchronous scorers); `rows`: the rows are wanted back too."""
        raise NotImplementedError

    def result(self, block: bool) -> Scored | None:
        """The answer for the oldest batch submitted, or None when not ready and not `block`
        (asynchronous scorers)."""
        raise NotImplementedError

    def ready(self) -> None:
        """Wait until the model is loaded; raise its ModelError if it could not be."""

    def stats(self) -> RoleStats | None:
        """The model's training statistics once known (for explanations)."""
        return None

    def hosts(self, hosts: list[str]) -> None:
        """The hosts of the rows just submitted (training keeps them for its folds)."""

    def close(self) -> None:
        """Release the scorer (a child process exits)."""


class LocalScorer(Scorer):
    """A model in this process, scoring when asked: a HostModel (scikit-learn) or its
    ScoreTables (numpy alone, sensor.detect.tables)."""

    synchronous = True

    def __init__(self, model: HostModel | ScoreTables) -> None:
        self.model = model
        self.threshold = model.threshold

    def score(self, X: Any) -> Any:
        return self.model.scores(X)

    def stats(self) -> RoleStats | None:
        return self.model.stats


class CollectingScorer(Scorer):
    """No model: keeps every row it is given (training data) and scores nothing."""

    synchronous = True

    def __init__(self) -> None:
        self.rows: list[Any] = []  # (rows, MODEL_FEATURES) arrays
        self.row_hosts: list[str] = []
        self.count = 0

    def hosts(self, hosts: list[str]) -> None:
        self.row_hosts.extend(hosts)

    def score(self, X: Any) -> Any:
        import numpy as np

        self.rows.append(X)
        self.count += len(X)
        return np.zeros(len(X))


class ChildScorer(Scorer):
    """The model loaded and scoring in a forked child process, which also makes the rows.

    The card is checked here first (whole archive, our format and feature schema), so a wrong
    file stops the run before it starts. The child then does everything that needs numpy: it
    reads the scoring tables (or, for a detector without them, loads the model through skops
    with the trusted types, which takes scikit-learn's import time), verifies the check rows,
    turns each batch's raw host state into rows (sensor.features.batch) and scores them, on the
    other core while this process reads packets. This process imports numpy only to explain a
    row. A failure in the child surfaces as a ModelError at the next batch, or at the end."""

    def __init__(self, path: str, card: dict[str, Any],
                 explain: tuple[dict[str, float], int] | None = None) -> None:
        """`explain`: the windows (name -> seconds) and the number of features an explanation
        names ([model] top_features): the child then explains every row over the threshold
        itself, so that this process has no numpy to import for them."""
        self.path = path
        self.threshold = float(card["threshold"])
        self.explains = explain is not None
        self._stats: RoleStats | None = None
        self._stats_body = b""
        self._loaded = threading.Event()  # set once the statistics (or an error) came
        self._error: str | None = None
        self._results: queue.Queue[bytes | None] = queue.Queue()
        self._requests: queue.Queue[bytes | None] = queue.Queue()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            from sensor.service.signals import die_with_parent, name_process

            die_with_parent(parent)  # even a SIGKILLed sensor leaves no model process behind
            name_process(MODEL_PROCESS_NAME)
            with contextlib.suppress(OSError):
                os.nice(CHILD_NICE)
            os.close(to_child_w)
            os.close(from_child_r)
            _child_main(path, card, to_child_r, from_child_w, explain)
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid = pid
        self._out = os.fdopen(to_child_w, "wb", buffering=0)
        self._in = os.fdopen(from_child_r, "rb", buffering=0)
        self._writer = threading.Thread(target=self._write_loop, name="model-writer", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="model-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    def _write_loop(self) -> None:
        while True:
            msg = self._requests.get()
            if msg is None:
                break
            try:
                self._out.write(msg)
            except OSError:
                break
        with contextlib.suppress(OSError):
            self._out.close()

    def _read_loop(self) -> None:
        while True:
            head = _read_exact(self._in, _HEADER.size)
            body = None
            if head is not None:
                kind, length = _HEADER.unpack(head)
                body = _read_exact(self._in, length)
            if head is None or body is None:
                self._fail(f"{self.path}: the model process ended unexpectedly")
                return
            if kind == b"S":
                self._stats_body = body
                self._loaded.set()
            elif kind == b"E":
                self._fail(body.decode("utf-8", "replace"))
                return
            else:
                self._results.put(body)

    def _fail(self, why: str) -> None:
        if self._error is None:
            self._error = why
        self._loaded.set()
        self._results.put(None)

    def submit(self, floats: bytes, ints: bytes, n: int, rows: bool = True) -> None:
        length = _REQUEST.size + len(floats) + len(ints)
        self._requests.put(b"".join((_HEADER.pack(b"X", length),
                                     _REQUEST.pack(n, len(floats), rows), floats, ints)))

    def result(self, block: bool) -> Scored | None:
        try:
            body = self._results.get(block)
        except queue.Empty:
            return None
        if body is None:
            self._results.put(None)  # every later call fails the same way
            raise ModelError(self._error or f"{self.path}: the model process failed")
        n, with_rows = _ANSWER.unpack_from(body)
        view = memoryview(body)[_ANSWER.size:]
        end = 9 * n + (8 * n * _NF if with_rows else 0)
        scores: list[Any] = view[:8 * n].cast("d").tolist()
        tops = json.loads(bytes(view[end:])) if len(view) > end else None
        return Scored(scores, list(view[8 * n:9 * n]), view[9 * n:end].cast("d"), tops)

    def ready(self) -> None:
        self._loaded.wait()
        if self._error is not None:
            raise ModelError(self._error)

    def stats(self) -> RoleStats | None:
        if self._stats is None and self._stats_body:
            self._stats = _stats_from(self._stats_body)
        return self._stats

    def close(self) -> None:
        """Close the child's input, and reap it once it has exited (it does at once on end of
        input; one that does not within CHILD_EXIT_S is left to die with this process)."""
        self._requests.put(None)
        self._writer.join(timeout=5)
        with contextlib.suppress(OSError):
            self._in.close()
        deadline = time.monotonic() + CHILD_EXIT_S
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.005)


def _read_exact(fh: Any, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = fh.read(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _stats_bytes(stats: RoleStats) -> bytes:
    import numpy as np

    parts = [np.ascontiguousarray(a, dtype=np.float64).tobytes()
             for a in (stats.centre, stats.scale, stats.p999, stats.rows)]
    return b"".join(parts)


def _stats_from(body: bytes) -> RoleStats:
    import numpy as np

    from sensor.detect.model import RoleStats

    shape = (len(ROLES) + 1, _NF)
    size = shape[0] * shape[1]
    flat = np.frombuffer(body, dtype=np.float64)
    centre, scale, p999 = (flat[i * size:(i + 1) * size].reshape(shape) for i in range(3))
    return RoleStats(centre, scale, p999, flat[3 * size:])


def _load_for_scoring(path: str, card: dict[str, Any]) -> HostModel | ScoreTables:
    """The model's scoring tables, or the whole model (skops) when it has none."""
    from sensor.detect import tables

    found = tables.read(path, card)
    if found is not None:
        return found
    from sensor.detect.model import load

    return load(path)


def _child_main(path: str, card: dict[str, Any], inp: int, out: int,
                explain: tuple[dict[str, float], int] | None) -> None:  # pragma: no cover
    """The child's whole life: load, send the statistics, make and score rows until told to
    stop. Each answer: the number of rows, their scores (float64), roles (a byte each), the
    rows, then with `explain` the explanations of the rows over the threshold (JSON)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and closes the pipe
    # One BLAS thread: the rows are small, and OpenBLAS's pool (one thread per core) spins
    # between calls, taking CPU from the packet loop (1.5% of a run with the bundled model);
    # read when numpy is first imported, which happens here (the parent does not import it).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    code = 0
    try:
        with os.fdopen(inp, "rb", buffering=0) as rd, os.fdopen(out, "wb", buffering=0) as wr:
            try:
                model = _load_for_scoring(path, card)
            except ModelError as exc:
                body = str(exc).encode()
                wr.write(_HEADER.pack(b"E", len(body)) + body)
                os._exit(0)
            import numpy as np

            threshold = float(card["threshold"])
            body = _stats_bytes(model.stats)
            wr.write(_HEADER.pack(b"S", len(body)) + body)
            while True:
                head = _read_exact(rd, _HEADER.size)
                if head is None:
                    break
                _, length = _HEADER.unpack(head)
                data = _read_exact(rd, length)
                if data is None:
                    break
                n, n_floats, want_rows = _REQUEST.unpack_from(data)
                at = _REQUEST.size
                X, roles = make_rows(data[at:at + n_floats], data[at + n_floats:], n)
                scores = np.ascontiguousarray(model.scores(X), dtype=np.float64)
                tops = b""
                if explain is not None:
                    from sensor.detect.model import explain_row

                    windows, top = explain
                    tops = json.dumps([[d.to_dict() for d in explain_row(
                        model.stats, X[i], windows, top)] for i in np.flatnonzero(
                        scores > threshold).tolist()]).encode()
                res = b"".join((_ANSWER.pack(n, want_rows), scores.tobytes(),
                                roles.astype(np.uint8).tobytes(),
                                X.tobytes() if want_rows else b"", tops))
                wr.write(_HEADER.pack(b"R", len(res)) + res)
    except BaseException:
        code = 1
    os._exit(code)


def make_rows(floats: bytes, ints: bytes, n: int) -> tuple[Any, Any]:
    """The model's rows of raw host state (the features, then the one-hot role), and the
    rows' roles (index of ROLES)."""
    import numpy as np

    from sensor.features.batch import vectors

    X = vectors(floats, ints, n, extra=len(ROLES))
    roles = rows_roles(X)
    X[np.arange(n), _N_SCHEMA + roles] = 1.0
    return X, roles


# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class HostScore:
    """A host's highest model score in the run, and what stood out then."""

    score: float
    ts: float
    role: int
    top: list[dict[str, object]]


@dataclass(slots=True)
class _Flag:
    """The model's latest verdict above threshold on a host."""

    ts: float
    score: float
    families: frozenset[str]  # of the features that stand out ("" for plain activity)
    top: list[dict[str, object]]


@dataclass(slots=True)
class _Seen:
    """What an alert needs of a host at the moment its row was taken (rows are built from the
    host's state directly, without a HostFeatures snapshot: most are never alerted on)."""

    host: str
    ts: float
    long_start: float
    sessions: tuple[str, ...]
    role: int


@dataclass(slots=True)
class _Batch:
    """Rows sent to the scorer, and what alerts need of each host, column by column (most rows
    are never alerted on: a _Seen is made only for those that are)."""

    hosts: list[str]
    ts: list[float]
    starts: list[float]
    sessions: list[tuple[str, ...]]
    taken: float  # packet time
    floats: bytes  # the hosts' raw window state (HostTable.raw), until rows are made
    ints: bytes
    roles: list[int] = field(default_factory=list)
    rows: Any = None  # (len(hosts), MODEL_FEATURES) float64, once made
    scores: Any = None  # once scored by a synchronous scorer
    tops: list[list[dict[str, object]]] | None = None  # the child's explanations, if made

    def seen(self, i: int) -> _Seen:
        return _Seen(self.hosts[i], self.ts[i], self.starts[i], self.sessions[i], self.roles[i])


class _Taking:
    """A batch taken and not yet wholly copied out of the host table: its hosts' states, copied
    in order (`done` so far) into the batch and two buffers, and those copied out of order
    because a record was about to change them (index -> what `ModelStage.settle` copied)."""

    __slots__ = ("batch", "done", "early", "floats", "ints", "states")

    def __init__(self, batch: _Batch, states: list[HostState]) -> None:
        self.batch = batch
        self.states = states
        self.done = 0
        self.floats = bytearray()
        self.ints = bytearray()
        self.early: dict[int, tuple[float, float, tuple[str, ...], bytes, bytes]] = {}


class ModelStage:
    """Dirty hosts -> batches -> scores -> anomalous_host alerts, "both" marks, host scores."""

    def __init__(self, config: Config, scorer: Scorer, emit: Callable[[Alert], None],
                 suppressor: Suppressor) -> None:
        self.config = config
        self.scorer = scorer
        self.threshold = scorer.threshold
        self._emit = emit
        self._suppress = suppressor
        self._interval = float(config.model.score_interval_s)
        self._delay = float(config.model.score_delay_s)
        self._sync = scorer.synchronous
        self._unscored: list[_Batch] = []  # taken, waiting to be scored together
        self._unscored_rows = 0
        self._unanswered = 0  # rows sent to an asynchronous scorer, not yet answered
        self._max_unanswered = config.model.max_pending_rows
        self.waits = 0  # times the packet loop waited for answers (_max_unanswered passed)
        self._next = 0.0
        self._dirty: dict[str, HostState] = {}
        self._pending: deque[_Batch | Alert] = deque()
        self._taking: deque[_Taking] = deque()  # taken, being copied, oldest first
        self._uncopied: dict[str, tuple[_Taking, int]] = {}  # host -> where it waits in one
        self.copy_step = SNAP_STEP
        """Hosts of taken batches copied with each host change; 0: only when a record is about
        to change one and when the next batch is taken; negative: all at once, when taken."""
        self.settled = 0  # hosts copied ahead of their turn, because a record was to change them
        self._polls = 0  # host changes since the child's answers were last looked for
        self._max = config.bounds.max_hosts
        self.best: OrderedDict[str, HostScore] = OrderedDict()
        self.rule_kinds: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._flags: OrderedDict[str, _Flag] = OrderedDict()
        self._confirmed: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.early_batches = 0  # batches taken early: max_hosts hosts changed within one interval
        self.explain_all = False  # explain every host's best score (for --host-scores)
        self.scored = 0
        self.batches = 0
        self.alerts = 0
        w = config.windows
        self._windows = {"short": float(w.short_s), "medium": float(w.medium_s),
                         "long": float(w.long_s)}
        from sensor.features import schema

        self._family: dict[str, str] = dict(getattr(schema, "FEATURE_FAMILY", {}))
        self._families: dict[str, tuple[str, ...]] = dict(getattr(schema, "FAMILIES", {}))

    # -- input side --------------------------------------------------------------------------

    def touch(self, st: HostState, now: float) -> None:
        """A host's features changed at packet time `now`.

        Once [bounds] max_hosts hosts have changed since the last batch (a flood from spoofed
        sources), a batch is taken at once: each changed host's state stays alive until it is
        taken, also when the host table has evicted it, so their memory would otherwise grow
        past the table's cap with every new source."""
        if self._taking:
            self._copy(self.copy_step)
        elif self._pending and not self._sync:
            # verdicts applied as the child answers (a 2048-row part at a time), not all at the
            # next batch: the same output, as the alerts after a batch wait for it either way
            self._polls += 1
            if self._polls >= POLL_EVERY:
                self._polls = 0
                self.drain(block=False)
        dirty = self._dirty
        dirty[st.ip] = st
        if now >= self._next:
            if self._next == 0.0:
                self._next = now + self._interval
            else:
                self.flush(now)
        elif now < self._next - 2 * self._interval:  # packet time went back (another capture)
            self.flush(self._next)
            self._next = now + self._interval
        elif len(dirty) >= self._max:
            self.early_batches += 1
            self.flush(now)

    @property
    def waiting(self) -> int:
        """Hosts changed since the last batch was taken."""
        return len(self._dirty)

    def settle(self, ip: str) -> None:
        """A record is about to change host `ip`: copy it first if a taken batch still holds
        it uncopied (the detector calls this for each address of a record before the table)."""
        at = self._uncopied.pop(ip, None)
        if at is not None:
            taking, i = at
            st = taking.states[i]
            floats, ints = bytearray(), bytearray()
            HostTable.raw(st, floats, ints)
            taking.early[i] = (st.now, st.start(2, st.now), st.sessions, bytes(floats),
                               bytes(ints))  # fmt: skip
            self.settled += 1

    def _copy(self, n: int) -> None:
        """Copy up to `n` more hosts of the taken batches, oldest first (n < 0: all), and
        submit each batch once it is whole."""
        taking = self._taking
        raw = HostTable.raw
        uncopied = self._uncopied
        while taking and n != 0:
            t = taking[0]
            states, early, b = t.states, t.early, t.batch
            end = len(states) if n < 0 else min(len(states), t.done + n)
            if n > 0:
                n -= end - t.done
            for i in range(t.done, end):
                st = states[i]
                b.hosts.append(st.ip)
                got = early.pop(i, None)
                if got is None:
                    uncopied.pop(st.ip, None)  # not there when copied at once
                    b.ts.append(st.now)
                    b.starts.append(st.start(2, st.now))
                    b.sessions.append(st.sessions)
                    raw(st, t.floats, t.ints)
                else:
                    b.ts.append(got[0])
                    b.starts.append(got[1])
                    b.sessions.append(got[2])
                    t.floats += got[3]
                    t.ints += got[4]
            t.done = end
            if end < len(states):
                return
            taking.popleft()
            self._send(t.batch, bytes(t.floats), bytes(t.ints))

    def flush(self, now: float) -> None:
        """Take a batch of every host that changed since the last one."""
        self._copy(-1)  # the batches before it go first, whole
        if self._dirty:
            states = list(self._dirty.values())
            self._dirty = {}
            for at in range(0, len(states), BATCH_ROWS):  # a big batch goes in parts
                self._submit(states[at:at + BATCH_ROWS], now)
        while self._next <= now:
            self._next += self._interval
        unscored = self._unscored
        if unscored and (self._unscored_rows >= BATCH_ROWS
                         or now - unscored[0].taken >= self._delay):
            self._score_unscored()
        self.drain(block=False)

    def _submit(self, states: list[HostState], now: float) -> None:
        """Take hosts as they are now: what an alert needs of each and their raw window state
        (from which their rows are made, sensor.features.batch), copied at once for a
        synchronous scorer (it scores every batch taken together), else over the next records
        (_copy)."""
        batch = _Batch([], [], [], [], now, b"", b"")  # filled as its hosts are copied
        self._pending.append(batch)
        self.batches += 1
        t = _Taking(batch, states)
        self._taking.append(t)
        if self._sync or self.copy_step < 0:
            self._copy(-1)
            return
        uncopied = self._uncopied
        for i, st in enumerate(states):
            uncopied[st.ip] = (t, i)

    def _send(self, batch: _Batch, floats: bytes, ints: bytes) -> None:
        """A batch whole: to be scored with the others (synchronous scorer), or to the child."""
        batch.floats, batch.ints = floats, ints
        if self._sync:
            self._unscored.append(batch)
            self._unscored_rows += len(batch.hosts)
        else:  # the child makes the rows: the state travels as it is
            # the rows come back only to be explained here: every host's best (--host-scores)
            want = self.explain_all or not self.scorer.explains
            self.scorer.submit(batch.floats, batch.ints, len(batch.hosts), want)
            batch.floats = batch.ints = b""
            self._unanswered += len(batch.hosts)
            if self._unanswered > self._max_unanswered:
                self._catch_up()

    def _catch_up(self) -> None:
        """Wait for the oldest answers until at most [model] max_pending_rows rows are
        unanswered: a scorer that cannot keep up slows the packet loop (kernel drops, counted)
        rather than holding the rule alerts behind its batches, and their memory, ever longer.
        The output is the same: each batch's verdicts still come before the alerts after it."""
        self.waits += 1
        self.drain(True, self._max_unanswered)

    @staticmethod
    def _split(batch: _Batch, X: Any, roles: Any, scores: Any) -> None:
        batch.rows = X
        batch.roles = roles.tolist()
        batch.scores = scores
        batch.floats = batch.ints = b""

    def _score_unscored(self) -> None:
        """Score every batch taken and not scored yet, in one call: a scoring call costs about
        as much for 50 rows as for 500, and most batches are small (the hosts that changed in
        score_interval_s). Each batch's verdicts are still applied in turn, with the rule
        alerts queued behind it, so the output is that of scoring each batch when taken."""
        todo, self._unscored, self._unscored_rows = self._unscored, [], 0
        group: list[_Batch] = []
        rows = 0
        for b in todo:  # in calls of at most BATCH_ROWS rows (each batch is at most that)
            if rows + len(b.hosts) > BATCH_ROWS:
                self._score_group(group)
                group, rows = [], 0
            group.append(b)
            rows += len(b.hosts)
        if group:
            self._score_group(group)

    def _score_group(self, group: list[_Batch]) -> None:
        X, roles = make_rows(b"".join(b.floats for b in group), b"".join(b.ints for b in group),
                             sum(len(b.hosts) for b in group))
        scores = self.scorer.score(X)
        self.scorer.hosts([h for b in group for h in b.hosts])
        at = 0
        for b in group:
            end = at + len(b.hosts)
            self._split(b, X[at:end], roles[at:end], scores[at:end])
            at = end

    def out(self, alert: Alert) -> None:
        """A rule alert: released now, or after the batches taken before it are applied."""
        if self._pending:
            self._pending.append(alert)
        else:
            self._release(alert)

    def finish(self) -> None:
        """End of input: score what changed last and apply every verdict (a model that could
        not be loaded fails here at the latest, even when no host was scored)."""
        self.scorer.ready()
        self.flush(self._next)
        self._copy(-1)
        if self._unscored:
            self._score_unscored()
        self.drain(block=True)

    # -- output side -------------------------------------------------------------------------

    def drain(self, block: bool, unanswered: int = -1) -> None:
        """Apply ready batches in order, releasing the rule alerts queued behind each; with
        `unanswered` >= 0, only until at most that many rows wait for the scorer's answers."""
        pending = self._pending
        while pending and self._unanswered > unanswered:
            head = pending[0]
            if isinstance(head, _Batch):
                if self._sync:
                    if head.scores is None:
                        if not block:
                            return
                        self._score_unscored()
                    scores = head.scores.tolist()
                else:
                    got = self.scorer.result(block)
                    if got is None:
                        return
                    head.rows, head.roles, scores = got.rows, got.roles, got.scores
                    head.tops = got.tops
                    self._unanswered -= len(head.hosts)
                pending.popleft()
                self._apply(head, scores)
            else:
                pending.popleft()
                self._release(head)

    def _release(self, alert: Alert) -> None:
        kinds = self.rule_kinds.get(alert.host)
        if kinds is None:
            kinds = self.rule_kinds[alert.host] = {}
            if len(self.rule_kinds) > self._max:
                self.rule_kinds.popitem(last=False)
        kinds.setdefault(alert.kind, alert.ts)
        flag = self._flags.get(alert.host)
        if flag is not None and self._matches(flag, alert.kind, alert.ts):
            self._confirm_at((alert.host, alert.kind), alert.ts)
            alert = _both(alert, flag, self.threshold)
        self._emit(alert)

    def _confirm_at(self, key: tuple[str, str], ts: float) -> None:
        """A rule alert and the model's flag agreed on (host, kind); the oldest such pairs are
        forgotten past max_hosts (a months-long run meets more hosts than it keeps)."""
        self._confirmed[key] = ts
        self._confirmed.move_to_end(key)
        if len(self._confirmed) > self._max:
            self._confirmed.popitem(last=False)

    def _matches(self, flag: _Flag, kind: str, ts: float) -> bool:
        if ts - flag.ts >= self.config.suppression.interval_s:
            return False
        named = [fam for fam in flag.families if fam]
        return not named or any(kind in self._families.get(fam, ()) for fam in named)

    def _apply(self, batch: _Batch, scores: list[float]) -> None:
        threshold = self.threshold
        # the statistics (numpy arrays) only for a batch with something to explain
        tops = batch.tops  # explanations of the rows over the threshold, when the child made them
        need = self.explain_all or (tops is None and bool(scores) and max(scores) > threshold)
        stats = self.scorer.stats() if need else None
        top_n = self.config.model.top_features
        explain = stats is not None and self.explain_all
        rows = batch.rows
        best_of = self.best
        self.scored += len(batch.hosts)
        k = 0  # the next of the child's explanations
        for i, (host, s) in enumerate(zip(batch.hosts, scores, strict=True)):
            best = best_of.get(host)
            flagged = s > threshold
            if best is not None and s <= best.score and not flagged:
                best_of.move_to_end(host)
                continue
            top: list[dict[str, object]] = []
            if flagged and tops is not None:
                top = tops[k]
                k += 1
            elif stats is not None and (flagged or explain):
                top = [d.to_dict() for d in _explain(stats, _row(rows, i), self._windows, top_n)]
            if best is None or s > best.score:
                if best is not None:
                    best_of.move_to_end(host)
                best_of[host] = HostScore(s, batch.ts[i], batch.roles[i], top)
                if best is None and len(best_of) > self._max:
                    best_of.popitem(last=False)
            if flagged:
                self._flagged(batch.seen(i), s, top)

    def _families_of(self, top: list[dict[str, object]]) -> frozenset[str]:
        """The families of the features that stand out: a rule alert of any of them is the same
        finding seen twice."""
        out = set()
        for d in top:
            name = str(d["feature"])
            head, _, rest = name.partition("_")
            out.add(self._family.get(rest if head in self._windows else name, ""))
        return frozenset(out)

    def _flagged(self, f: _Seen, s: float, top: list[dict[str, object]]) -> None:
        flag = _Flag(f.ts, s, self._families_of(top), top)
        self._flags[f.host] = flag
        self._flags.move_to_end(f.host)
        if len(self._flags) > self._max:
            self._flags.popitem(last=False)
        interval = self.config.suppression.interval_s
        for kind, ts in (self.rule_kinds.get(f.host) or {}).items():
            if f.ts - ts < interval and self._matches(flag, kind, f.ts):
                if (f.host, kind) not in self._confirmed:
                    self._confirm_at((f.host, kind), f.ts)
                    self._confirm(f, kind, flag)
                return
        finding = self._finding(f, s, top)
        update = self._suppress.decide(f.host, finding, f.ts)
        if update is None:
            return
        evidence: dict[str, object] = {"features": {}, "sessions": list(f.sessions),
                                       "model": self._evidence(s, top)}
        summary = finding.summary
        if update:
            evidence["update"] = update
            summary = f"{summary} (update: {update})"
        alert = Alert(ts=f.ts, time=iso_time(f.ts), sensor=self.config.site.sensor, host=f.host,
                      kind=finding.kind.value, severity=finding.severity, sid=finding.sid,
                      rule=finding.rule, score=finding.score, source="model",
                      window_s=finding.window_s, summary=summary, evidence=evidence,
                      first_seen=min(finding.first_seen, f.ts), last_seen=f.ts)
        self.alerts += 1
        self._emit(alert)

    def _evidence(self, s: float, top: list[dict[str, object]]) -> dict[str, object]:
        return {"score": round(s, 6), "threshold": round(self.threshold, 6), "top_features": top}

    def _finding(self, f: _Seen, s: float, top: list[dict[str, object]]) -> Finding:
        cfg = self.config.model
        words = "; ".join(str(d["text"]) for d in top[:3]) or "an unusual mix of features"
        role = ROLES[f.role]
        summary = (f"{f.host} ({_ROLE_WORDS[role]}) behaves unlike anything in training "
                   f"(model score {s:.3f} over threshold {self.threshold:.3f}): {words}")
        severity = cfg.severity + (1 if s > self.threshold * 1.15 else 0)
        return Finding(AlertKind.ANOMALOUS_HOST, "model_score", min(severity, 10), cfg.sid,
                       score(s, self.threshold), float(self.config.windows.long_s), summary,
                       {}, s, f.long_start)

    def _confirm(self, f: _Seen, kind: str, flag: _Flag) -> None:
        """The model flags a host a rule already alerted on for the same family: an update of
        that alert with source "both"."""
        words = "; ".join(str(d["text"]) for d in flag.top[:3])
        alert = Alert(ts=f.ts, time=iso_time(f.ts), sensor=self.config.site.sensor, host=f.host,
                      kind=kind, severity=self.config.model.severity, sid=self.config.model.sid,
                      rule="model_confirms", score=score(flag.score, self.threshold),
                      source="both", window_s=float(self.config.windows.long_s),
                      summary=f"{f.host}: the trained model also scores it anomalous "
                              f"({flag.score:.3f} over {self.threshold:.3f})"
                              + (f": {words}" if words else ""),
                      evidence={"features": {}, "sessions": list(f.sessions),
                                "update": "model confirms",
                                "model": self._evidence(flag.score, flag.top)},
                      first_seen=f.long_start, last_seen=f.ts)
        self.alerts += 1
        self._emit(alert)

    def host_scores(self) -> list[dict[str, object]]:
        """One JSON-ready line per host scored, most anomalous first."""
        out = []
        for host, hs in self.best.items():
            kinds = sorted((self.rule_kinds.get(host) or {}).keys())
            out.append({"host": host, "score": round(hs.score, 6),
                        "threshold": round(self.threshold, 6),
                        "flagged": hs.score > self.threshold, "ts": hs.ts,
                        "time": iso_time(hs.ts), "role": ROLES[hs.role], "rule_kinds": kinds,
                        "top_features": hs.top})
        out.sort(key=lambda d: (-float(str(d["score"])), str(d["host"])))
        return out


_HOME: Final = MODEL_FEATURES.index("in_home_net")
_MTA: Final = MODEL_FEATURES.index("mail_server")
_SRV: Final = MODEL_FEATURES.index("long_srv_sessions")
_N_SCHEMA: Final = len(MODEL_FEATURES) - len(ROLES)


def rows_roles(X: Any) -> Any:
    """Each row's role (index of ROLES) from its features: an authorised MTA, our server (a
    home_net host that received sessions from clients), an inside or an outside client."""
    import numpy as np

    return np.where(X[:, _MTA] != 0, 2,
                    np.where(X[:, _HOME] != 0, np.where(X[:, _SRV] > 0, 3, 1), 0))


_ROLE_WORDS: Final = {"outside": "an outside client", "inside": "an inside client",
                      "mta": "an authorised MTA", "server": "our server"}


def _both(alert: Alert, flag: _Flag, threshold: float) -> Alert:
    evidence = dict(alert.evidence)
    evidence["model"] = {"score": round(flag.score, 6), "threshold": round(threshold, 6),
                         "top_features": flag.top}
    return replace(alert, source="both", evidence=evidence)


def _row(rows: Any, i: int) -> Any:
    """Row i of a batch: a numpy array's, or of the child's answer (a float64 memoryview)."""
    if isinstance(rows, memoryview):
        return rows[i * _NF:(i + 1) * _NF].tolist()
    return rows[i]


def _explain(stats: RoleStats, x: Any, windows: dict[str, float], top: int) -> Any:
    from sensor.detect.model import explain_row

    return explain_row(stats, x, windows, top)
