"""Reads session and connection logs (JSON lines, optionally gzip) back into records, in the
order the detector saw them when `sensor analyze` wrote them."""

from __future__ import annotations

import gzip
import heapq
import json
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import BinaryIO, Final

import orjson

from sensor.errors import RecordError
from sensor.output.fields import Fields, shown
from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.schema import SCHEMA_VERSION, session_from_dict
from sensor.tcp.reassembler import TcpLimits

LoggedRecord = ConnRecord | SmtpSession

MAX_LINE_BYTES: Final = 64 << 20
"""Longest log line read (the parser's own bounds keep a real session record far below it); a
longer line is skipped and counted as bad, so that a corrupt file cannot fill memory."""
MAX_FILE_ERRORS: Final = 20
"""Files whose bad lines are reported one line each; the rest are summed up in one last line."""
MAX_PENDING_SESSIONS: Final = 1_000_000
"""Sessions held back at most while they wait for their connection record (in one run's logs
they wait for the records of at most an idle timeout); beyond, the oldest go on alone."""
RECENT_CONNS: Final = 65_536
"""Connection records remembered that came without their session, for a log in which a session
follows its connection record (the logs of `analyze` never need it)."""
_GZIP_MAGIC: Final = b"\x1f\x8b"


def conn_from_dict(d: object) -> ConnRecord:
    """The ConnRecord a `conn_to_dict` object (one line of a --conns log) stands for.

    Every field is type-checked: anything else raises RecordError (a ValueError) naming the field
    and what was expected; unknown fields are ignored.
    """
    f = Fields(d)
    return ConnRecord(
        uid=f.text("uid"),
        ts=f.number("ts"),
        client_ip=f.text("client_ip"),
        client_port=f.integer("client_port"),
        server_ip=f.text("server_ip"),
        server_port=f.integer("server_port"),
        duration_s=f.number("duration_s"),
        state=f.text("state"),
        history=f.text("history"),
        bytes_to_server=f.integer("bytes_to_server"),
        bytes_to_client=f.integer("bytes_to_client"),
        pkts_to_server=f.integer("pkts_to_server"),
        pkts_to_client=f.integer("pkts_to_client"),
        wire_bytes_to_server=f.integer("wire_bytes_to_server"),
        wire_bytes_to_client=f.integer("wire_bytes_to_client"),
        retrans_segments=f.integer("retrans_segments"),
        ooo_segments=f.integer("ooo_segments"),
        gaps=f.integer("gaps"),
        gap_bytes=f.integer("gap_bytes"),
        conflicting_overlaps=f.integer("conflicting_overlaps"),
        rtt_s=f.opt_number("rtt_s"),
        syn_ttl=f.opt_integer("syn_ttl"),
        syn_window=f.opt_integer("syn_window"),
        syn_mss=f.opt_integer("syn_mss"),
        syn_wscale=f.opt_integer("syn_wscale"),
        end_reason=f.text("end_reason"),
    )


def record_from_dict(d: object) -> LoggedRecord:
    """A session (tagged with its schema) or a connection record (told by its fields)."""
    if not isinstance(d, dict):
        raise RecordError(f"expected a JSON object, got {shown(d)}")
    if "schema" in d:
        return session_from_dict(d)
    if "history" in d and "end_reason" in d:
        return conn_from_dict(d)
    raise RecordError(f"neither a session record (schema {SCHEMA_VERSION!r}) nor a connection "
                      "record (fields history, end_reason, ...)")  # fmt: skip


def record_from_line(line: bytes) -> LoggedRecord:
    """One log line (with or without its newline) as a record, or RecordError saying why not."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        # What orjson refuses but our writer may write (to_json_line's fallback): escaped lone
        # surrogates, integers beyond 64 bits. The standard library reads those, and says why not.
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise RecordError(f"not UTF-8 text (byte {exc.start})") from None
        except RecursionError:
            raise RecordError("not a JSON line (nested too deeply)") from None
        except ValueError as exc:
            raise RecordError(f"not a JSON line ({exc})") from None
    return record_from_dict(obj)


@dataclass(slots=True)
class ReadStats:
    """What reading the logs found."""

    files: int = 0
    files_failed: int = 0  # could not be opened, or a gzip stream was corrupt
    lines: int = 0
    conns: int = 0
    sessions: int = 0
    bad_lines: int = 0  # not a record (truncated final lines included)
    truncated_lines: int = 0  # a final line cut short (a log still being written, a cut file)
    files_with_bad_lines: int = 0
    sessions_paired: int = 0  # sessions placed right after their connection record (same uid)
    sessions_unpaired: int = 0  # with connection logs read, sessions whose record never came
    pending_peak: int = 0  # most sessions held at once waiting for their connection record
    pending_overflow: int = 0  # sessions let go early because MAX_PENDING_SESSIONS were held


class BadLines:
    """One log's bad lines (the first kept with its line number, the rest counted) and the
    problem that stopped its reading early, if any."""

    __slots__ = ("fatal", "first", "n")

    def __init__(self) -> None:
        self.first = ""
        self.n = 0
        self.fatal: str | None = None

    def add(self, lineno: int, problem: str) -> None:
        """One more bad line."""
        if not self.n:
            self.first = f"line {lineno}: {problem}"
        self.n += 1


def read_stream(raw: BinaryIO, stats: ReadStats, bad: BadLines, max_line: int = MAX_LINE_BYTES
                ) -> Iterator[LoggedRecord]:
    """The valid records of one log (read through gzip when it starts with the gzip magic
    number), in its order.

    Bad lines go to `bad`, and so does a problem that stops the reading (`bad.fatal`); a final
    line cut short and a cut gzip stream count as truncated.
    """
    lineno = 0
    try:
        magic = raw.read(2)
        raw.seek(0)
        fh: BinaryIO | gzip.GzipFile = raw
        if magic == _GZIP_MAGIC:
            fh = gzip.GzipFile(fileobj=raw, mode="rb")
        while True:
            line = fh.readline(max_line + 1)
            if not line:
                break
            lineno += 1
            if len(line) > max_line and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the line
                    line = fh.readline(max_line + 1)
                bad.add(lineno, f"line longer than {max_line} bytes")
                continue
            if not line.strip():
                continue  # a blank line is no record (and hurts none)
            stats.lines += 1
            try:
                rec = record_from_line(line)
            except RecordError as exc:
                if not line.endswith(b"\n"):
                    stats.truncated_lines += 1
                    bad.add(lineno, f"truncated final line ({exc})")
                else:
                    bad.add(lineno, str(exc))
                continue
            yield rec
    except EOFError:
        stats.truncated_lines += 1
        bad.add(lineno + 1, "gzip stream cut short (the last records are lost)")
    except (OSError, zlib.error) as exc:
        bad.fatal = f"unreadable after line {lineno}: {exc}"


class _Reporter:
    """Turns each file's bad lines into at most one on_error call, MAX_FILE_ERRORS files in all."""

    __slots__ = ("on_error", "reported", "silenced", "stats")

    def __init__(self, on_error: Callable[[str, str], None] | None, stats: ReadStats) -> None:
        self.on_error = on_error
        self.stats = stats
        self.reported = 0
        self.silenced: list[str] = []

    def file_done(self, path: str, bad: BadLines) -> None:
        st = self.stats
        st.bad_lines += bad.n
        problems = []
        if bad.n:
            st.files_with_bad_lines += 1
            more = f"; {bad.n} bad lines in all" if bad.n > 1 else ""
            problems.append(f"{bad.first}{more}")
        if bad.fatal is not None:
            st.files_failed += 1
            problems.append(bad.fatal)
        if not problems or self.on_error is None:
            return
        if self.reported < MAX_FILE_ERRORS:
            self.on_error(path, "; ".join(problems))
            self.reported += 1
        else:
            self.silenced.append(path)

    def close(self) -> None:
        if self.silenced and self.on_error is not None:
            self.on_error(self.silenced[0], f"and {len(self.silenced) - 1} more files with bad "
                                            "lines or errors (not listed)")  # fmt: skip


def _file_records(path: str, stats: ReadStats, report: _Reporter, max_line: int
                  ) -> Iterator[LoggedRecord]:
    """One log's records, read as they are asked for; its problems reported at its end."""
    stats.files += 1
    bad = BadLines()
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        bad.fatal = f"cannot open: {exc.strerror or exc}"
        report.file_done(path, bad)
        return
    with raw:
        yield from read_stream(raw, stats, bad, max_line)
    report.file_done(path, bad)


def iter_logged_records(
    paths: Iterable[str],
    on_error: Callable[[str, str], None] | None = None,
    stats: ReadStats | None = None,
    *,
    max_line: int = MAX_LINE_BYTES,
    limits: TcpLimits | None = None,
) -> Iterator[LoggedRecord]:
    """Connection and session records from any mix of logs written by `analyze --conns/--sessions`
    (JSON lines, optionally gzip-compressed), in the order the live detector saw them; see
    `merge_logs`. The logs are read as the records are asked for, in bounded memory.

    `limits` are the reassembly limits of the runs that wrote the logs (default: the default
    ones); they bound how long after its close a connection's record may have been written.
    Bad lines are counted (in `stats`) and skipped; each file with some, or that could not be
    read, gets one call of `on_error(path, "line N: problem; M bad lines in all")`, when its
    reading ends, at most MAX_FILE_ERRORS files, then one call summing up the others.
    """
    st = stats if stats is not None else ReadStats()
    report = _Reporter(on_error, st)
    logs: list[_Log] = []
    for i, path in enumerate(paths):
        first = _first_record(path, max_line)
        key = float("-inf") if first is None else first.ts + first.duration_s
        logs.append((key, isinstance(first, ConnRecord), partial(
            _keyed, _file_records(path, st, report, max_line), i)))
    yield from _pair(logs, st, limits, MAX_PENDING_SESSIONS)
    report.close()


def _first_record(path: str, max_line: int) -> LoggedRecord | None:
    """The first record of a log (None when it has none or cannot be read), to know when the
    merge must open it: only then, so that a long series of logs is never open all at once."""
    try:
        with open(path, "rb") as raw:
            return next(read_stream(raw, ReadStats(), BadLines(), max_line), None)
    except OSError:
        return None


def merge_logs(streams: Iterable[Iterable[LoggedRecord]], stats: ReadStats | None = None,
               limits: TcpLimits | None = None, max_pending: int = MAX_PENDING_SESSIONS
               ) -> Iterator[LoggedRecord]:
    """The records of several logs, each in its own order, in the order the detector saw them.

    A log written by `sensor analyze` is in that order already: connections in the order their
    records were emitted, each session right after its connection record. Logs are merged by
    close time (ts + duration_s; its running maximum within each log, so that each keeps its own
    order), and a session is held back until the connection record of the same uid comes, to
    follow it. Over the two logs of one run that is exactly the order of that run. A session
    whose connection record has not come when the merge is past its close time by more than a
    record can be late (idle timeout + linger + expiry interval of `limits`) goes on alone, as
    do all sessions when no connection log is read. Memory: the sessions held back, at most
    `max_pending` (the oldest go on alone beyond, counted in `pending_overflow`).
    """
    st = stats if stats is not None else ReadStats()
    logs: list[_Log] = []
    for i, stream in enumerate(streams):
        keyed = _keyed(stream, i)
        first = next(keyed, None)
        if first is not None:
            logs.append((first[0], first[1] == _CONN, partial(chain, (first,), keyed)))
    return _pair(logs, st, limits, max_pending)


_Keyed = tuple[float, int, int, int, LoggedRecord]
_Log = tuple[float, bool, Callable[[], Iterator[_Keyed]]]  # first key, starts with a conn, open
_SESSION: Final = 0  # a session and a connection record with the same key: the session first,
_CONN: Final = 1  # so that it is held when its connection record comes


def _pair(logs: list[_Log], st: ReadStats, limits: TcpLimits | None, max_pending: int
          ) -> Iterator[LoggedRecord]:
    """merge_logs over logs opened as the merge reaches them."""
    lim = limits if limits is not None else TcpLimits()
    slack = lim.idle_timeout_s + lim.closed_linger_s + lim.expire_interval_s + 1.0
    have_conns = any(starts_with_conn for _, starts_with_conn, _ in logs)
    pending: dict[str, deque[_Held]] = {}  # uid -> sessions waiting for their conn record
    order: deque[_Held] = deque()  # the same, oldest first (paired ones pruned as they come)
    recent: OrderedDict[str, None] = OrderedDict()  # conns that came without their session
    held = 0
    for key, rank, _, _, rec in _merge(logs):
        if rank == _CONN:
            assert isinstance(rec, ConnRecord)
            st.conns += 1
            have_conns = True
            yield rec
            q = pending.get(rec.uid)
            if q:
                h = q.popleft()
                if not q:
                    del pending[rec.uid]
                h.waiting = False
                held -= 1
                st.sessions_paired += 1
                yield h.session
            else:
                recent[rec.uid] = None
                if len(recent) > RECENT_CONNS:
                    recent.popitem(last=False)
        else:
            assert isinstance(rec, SmtpSession)
            st.sessions += 1
            if not have_conns:
                yield rec
            elif rec.uid in recent:  # its connection record came first (not in analyze's logs)
                del recent[rec.uid]
                st.sessions_paired += 1
                yield rec
            else:
                h = _Held(key, rec)
                q = pending.get(rec.uid)
                if q is None:
                    pending[rec.uid] = deque((h,))
                else:
                    q.append(h)
                order.append(h)
                held += 1
                if held > st.pending_peak:
                    st.pending_peak = held
        # let go of the sessions whose connection record can no longer come (or too many)
        while order:
            h = order[0]
            if not h.waiting:
                order.popleft()
                continue
            if h.close + slack >= key and held <= max_pending:
                break
            if held > max_pending:
                st.pending_overflow += 1
            order.popleft()
            _unpend(pending, h)
            held -= 1
            st.sessions_unpaired += 1
            yield h.session
    for h in order:
        if h.waiting:
            st.sessions_unpaired += 1
            yield h.session


class _Held:
    """A session waiting for its connection record."""

    __slots__ = ("close", "session", "waiting")

    def __init__(self, close: float, session: SmtpSession) -> None:
        self.close = close  # the merge key it came with: the close time it can be compared by
        self.session = session
        self.waiting = True


def _unpend(pending: dict[str, deque[_Held]], h: _Held) -> None:
    q = pending[h.session.uid]
    if q[0] is h:  # always, as the sessions of a uid are paired and let go oldest first
        q.popleft()
    else:
        q.remove(h)
    if not q:
        del pending[h.session.uid]


def _merge(logs: list[_Log]) -> Iterator[_Keyed]:
    """heapq.merge of the logs' keyed records, each log opened when the merge reaches its first
    key (logs of successive runs are then read one after the other)."""
    waiting = deque(sorted(logs, key=lambda log: log[0]))  # stable: ties in the given order
    heap: list[tuple[_Keyed, Iterator[_Keyed]]] = []  # (stream, position) decide every tie
    while heap or waiting:
        while waiting and (not heap or waiting[0][0] <= heap[0][0][0]):
            it = waiting.popleft()[2]()
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (first, it))
        if not heap:
            continue
        item, it = heap[0]
        yield item
        nxt = next(it, None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt, it))


def _keyed(stream: Iterable[LoggedRecord], index: int) -> Iterator[_Keyed]:
    """(running maximum of the close time, kind, stream, position, record) of each record."""
    top = float("-inf")
    for n, rec in enumerate(stream):
        close = rec.ts + rec.duration_s
        if close > top:
            top = close
        yield (top, _CONN if isinstance(rec, ConnRecord) else _SESSION, index, n, rec)
