"""Sessions, connections and alerts as Parquet datasets partitioned by day, for analysts.

Layout: DIR/{sessions,conns,alerts}/day=YYYY-MM-DD/part-RUN-NNNNN.parquet (hive style; `day`
is the UTC date of the record's `ts` and lives in the path only). Scalars keep their types;
lists of words are lists of strings; the deeper parts (transactions, auth, reply codes,
anomalies, alert evidence) are JSON strings, which pandas, DuckDB and Spark all read
(docs/scaling.md, "Parquet for analysts").
"""

from __future__ import annotations

import os
import time
import types
import typing
from dataclasses import fields
from typing import Any, Final

from sensor.errors import OutputError
from sensor.output.jsonl import to_json_line
from sensor.records import Alert, ConnRecord, SmtpSession

BATCH_ROWS: Final = 50_000
"""Rows of one table and day held before they are written as one Parquet file."""
TABLES: Final = ("sessions", "conns", "alerts")
_DAY_S: Final = 86400


def _arrow_type(hint: Any) -> tuple[Any, bool]:
    """(pyarrow type, JSON-encoded) of a record field's type hint."""
    import pyarrow as pa

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) and len(args) == 1:
        hint = args[0]
    scalars = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    if hint in scalars:
        return scalars[hint], False
    if typing.get_origin(hint) in (tuple, list) and typing.get_args(hint)[0] is str:
        return pa.list_(pa.string()), False
    return pa.string(), True


def _schema(cls: type, first: tuple[str, ...] = ()) -> tuple[Any, frozenset[str]]:
    """The Parquet schema of a record class's JSON dict, and the fields stored as JSON text."""
    import pyarrow as pa

    hints = typing.get_type_hints(cls)
    columns = [pa.field(name, pa.string()) for name in first]
    as_json: set[str] = set()
    for f in fields(cls):
        kind, encoded = _arrow_type(hints[f.name])
        columns.append(pa.field(f.name, kind))
        if encoded:
            as_json.add(f.name)
    return pa.schema(columns), frozenset(as_json)


def schemas() -> dict[str, tuple[Any, frozenset[str]]]:
    """Each table's Parquet schema and the columns it holds as JSON text."""
    return {
        "sessions": _schema(SmtpSession, ("schema",)),
        "conns": _schema(ConnRecord),
        "alerts": _schema(Alert),
    }


class ParquetSink:
    """Buffers JSON-log dicts per table and day, and writes them as Parquet files."""

    def __init__(self, directory: str, batch_rows: int = BATCH_ROWS) -> None:
        self.directory = directory
        self.batch_rows = batch_rows
        self.counts = dict.fromkeys(TABLES, 0)
        self._schemas = schemas()
        self._rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._files = 0
        self._run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"
        self._days: dict[int, str] = {}
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"--parquet {directory}: cannot create: {exc.strerror}") from None

    def session(self, d: dict[str, Any]) -> None:
        """Add one session (its JSON-log dict)."""
        self._add("sessions", d)

    def conn(self, d: dict[str, Any]) -> None:
        """Add one connection record (its JSON-log dict)."""
        self._add("conns", d)

    def alert(self, d: dict[str, Any]) -> None:
        """Add one alert (its JSON-log dict)."""
        self._add("alerts", d)

    def close(self) -> None:
        """Write every buffered row."""
        for key in list(self._rows):
            self._write(*key)

    def _day(self, ts: Any) -> str:
        n = int(ts // _DAY_S) if isinstance(ts, int | float) else 0
        day = self._days.get(n)
        if day is None:
            day = self._days[n] = time.strftime("%Y-%m-%d", time.gmtime(n * _DAY_S))
        return day

    def _add(self, table: str, d: dict[str, Any]) -> None:
        key = (table, self._day(d.get("ts", 0)))
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = []
        rows.append(d)
        self.counts[table] += 1
        if len(rows) >= self.batch_rows:
            self._write(*key)

    def _write(self, table: str, day: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._rows.pop((table, day), [])
        if not rows:
            return
        schema, as_json = self._schemas[table]
        names = schema.names
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for row in rows:
            for name in names:
                value = row.get(name)
                if name in as_json and value is not None:
                    value = to_json_line(value)[:-1].decode("utf-8", "replace")
                columns[name].append(value)
        try:
            data = pa.Table.from_pydict(columns, schema=schema)
        except (pa.ArrowException, UnicodeError):  # a lone surrogate, an int beyond 64 bits
            data = pa.Table.from_pydict(
                {n: [_clean(v) for v in vs] for n, vs in columns.items()}, schema=schema
            )
        folder = os.path.join(self.directory, table, f"day={day}")
        path = os.path.join(folder, f"part-{self._run}-{self._files:05d}.parquet")
        self._files += 1
        try:
            os.makedirs(folder, exist_ok=True)
            pq.write_table(data, path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _clean(value: Any) -> Any:
    """A value Arrow accepts: text with its unencodable characters escaped; an integer beyond
    64 bits as None."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < 1 << 63:
        return None
    return value
