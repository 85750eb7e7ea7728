"""Reads session and connection logs (JSON lines, optionally gzip) back into records, in the
order the detector saw them when `sensor analyze` wrote them."""

from __future__ import annotations

import gzip
import heapq
import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

import orjson

from sensor.errors import RecordError
from sensor.output.fields import Fields, shown
from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.schema import SCHEMA_VERSION, session_from_dict

LoggedRecord = ConnRecord | SmtpSession

MAX_LINE_BYTES: Final = 64 << 20
"""Longest log line read (the parser's own bounds keep a real session record far below it); a
longer line is skipped and counted as bad, so that a corrupt file cannot fill memory."""
MAX_FILE_ERRORS: Final = 20
"""Files whose bad lines are reported one line each; the rest are summed up in one last line."""
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
    sessions_paired: int = 0  # sessions placed after their connection record (same uid)


class BadLines:
    """Collects one log's bad lines: the first is kept with its line number, the rest counted."""

    __slots__ = ("first", "n")

    def __init__(self) -> None:
        self.first = ""
        self.n = 0

    def add(self, lineno: int, problem: str) -> None:
        """One more bad line."""
        if not self.n:
            self.first = f"line {lineno}: {problem}"
        self.n += 1


def read_stream(raw: BinaryIO, stats: ReadStats, bad: BadLines, max_line: int = MAX_LINE_BYTES
                ) -> tuple[list[LoggedRecord], str | None]:
    """Every valid record of one log (read through gzip when it starts with the gzip magic
    number), in its order, and the problem that stopped the reading early (None when none).

    Bad lines go to `bad`; a final line cut short and a cut gzip stream count as truncated.
    """
    out: list[LoggedRecord] = []
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
            out.append(rec)
    except EOFError:
        stats.truncated_lines += 1
        bad.add(lineno + 1, "gzip stream cut short (the last records are lost)")
    except (OSError, zlib.error) as exc:
        return out, f"unreadable after line {lineno}: {exc}"
    return out, None


def _read_file(path: str, stats: ReadStats, bad: BadLines, max_line: int
               ) -> tuple[list[LoggedRecord], str | None]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        return [], f"cannot open: {exc.strerror or exc}"
    with raw:
        return read_stream(raw, stats, bad, max_line)


def iter_logged_records(
    paths: Iterable[str],
    on_error: Callable[[str, str], None] | None = None,
    stats: ReadStats | None = None,
    *,
    max_line: int = MAX_LINE_BYTES,
) -> Iterator[LoggedRecord]:
    """Connection and session records from any mix of logs written by `analyze --conns/--sessions`
    (JSON lines, optionally gzip-compressed), in the order the live detector saw them.

    Each log is in that order already: the order in which connections closed, with each session
    written right after its connection record. A session is therefore yielded right after the
    connection record of the same uid when one was read (in any of the files), in the position
    of that record; a session without one keeps its own place. Logs are then merged by close
    time (ts + duration_s), each kept in its own order, ties in the order of `paths`: for the
    two logs of one run this is exactly the order of that run.

    Bad lines are counted (in `stats`) and skipped; each file with some gets one call of
    `on_error(path, "line N: problem; M bad lines in all")`, at most MAX_FILE_ERRORS files, then
    one call summing up the others; a file that cannot be read gets one call as well.
    """
    st = stats if stats is not None else ReadStats()
    files: list[list[LoggedRecord]] = []
    reported = 0
    silenced: list[str] = []
    for path in paths:
        st.files += 1
        errors = BadLines()
        recs, fatal = _read_file(path, st, errors, max_line)
        st.bad_lines += errors.n
        files.append(recs)
        problems = []
        if errors.n:
            st.files_with_bad_lines += 1
            more = f"; {errors.n} bad lines in all" if errors.n > 1 else ""
            problems.append(f"{errors.first}{more}")
        if fatal is not None:
            st.files_failed += 1
            problems.append(fatal)
        if problems and on_error is not None:
            if reported < MAX_FILE_ERRORS:
                on_error(path, "; ".join(problems))
                reported += 1
            else:
                silenced.append(path)
    if silenced and on_error is not None:
        on_error(silenced[0], f"and {len(silenced) - 1} more files with bad lines or errors "
                              "(not listed)")  # fmt: skip
    yield from in_detector_order(files, st)


def in_detector_order(files: list[list[LoggedRecord]], st: ReadStats) -> Iterator[LoggedRecord]:
    """The records of several logs (each in its own order) in the detector's order: sessions
    paired with their connection records, logs merged by close time (see iter_logged_records).
    Empties `files`."""
    waiting: dict[str, deque[SmtpSession]] = {}
    for recs in files:
        for rec in recs:
            if isinstance(rec, SmtpSession):
                st.sessions += 1
                q = waiting.get(rec.uid)
                if q is None:
                    waiting[rec.uid] = deque((rec,))
                else:
                    q.append(rec)
            else:
                st.conns += 1
    partner: dict[int, SmtpSession] = {}  # id() of a connection record -> its session
    for recs in files:
        for rec in recs:
            if isinstance(rec, ConnRecord):
                q = waiting.get(rec.uid)
                if q:
                    partner[id(rec)] = q.popleft()
    paired = {id(s) for s in partner.values()}
    st.sessions_paired = len(paired)
    streams: list[list[tuple[LoggedRecord, ...]]] = []
    for recs in files:
        groups: list[tuple[LoggedRecord, ...]] = []
        for rec in recs:
            if isinstance(rec, ConnRecord):
                s = partner.get(id(rec))
                groups.append((rec,) if s is None else (rec, s))
            elif id(rec) not in paired:
                groups.append((rec,))
        streams.append(groups)
    files.clear()
    for group in heapq.merge(*streams, key=_close):
        yield from group


def _close(group: tuple[LoggedRecord, ...]) -> float:
    rec = group[0]
    return rec.ts + rec.duration_s
