"""The stream entry of one record: who sent it, its place in that sensor's order, its JSON."""

from __future__ import annotations

from typing import Final

import orjson

from sensor.stream.transport import Fields, Row

VERSION: Final = b"1"
CONN: Final = b"conn"
SESSION: Final = b"session"
TICK: Final = b"tick"  # no record: the sensor's clock moved (a live sensor with nothing to say)
END: Final = b"end"  # no record: the sensor's run ended; nothing more comes from this source
KINDS: Final = (CONN, SESSION, TICK, END)
ROW_NAMES: Final = (b"seq", b"type", b"t", b"client", b"server", b"rec")
"""The fields of an entry that change from one entry of a publisher run to the next."""


def common_fields(sensor: bytes, src: bytes) -> Fields:
    """The fields every entry of one publisher run starts with: the entry version, the sensor's
    name and `src`, the name of that run."""
    return {b"v": VERSION, b"sensor": sensor, b"src": src}


def entry_row(seq: int, kind: bytes, t: float, client: bytes, server: bytes, rec: bytes) -> Row:
    """The values of ROW_NAMES for one entry. `seq` counts the run's entries from 1 (the
    detector's duplicate and replay check), `t` is the merge key (never decreasing within a
    source; written as the records' JSON writes numbers, the shortest form that reads back
    the same, four times faster than repr), `client`/`server` the hosts (sharding without
    decoding `rec`, the record's JSON)."""
    return (b"%d" % seq, kind, orjson.dumps(t), client, server, rec)


def make_fields(sensor: bytes, src: bytes, seq: int, kind: bytes, t: float, client: bytes,
                server: bytes, rec: bytes) -> Fields:
    """An entry's fields: `common_fields`, then ROW_NAMES with `entry_row`'s values."""
    fields = common_fields(sensor, src)
    fields.update(zip(ROW_NAMES, entry_row(seq, kind, t, client, server, rec), strict=True))
    return fields


class EntryError(ValueError):
    """An entry that is not one of ours (named field and why)."""


class Parsed:
    """The header of an entry, read without decoding its record."""

    __slots__ = ("client", "id", "kind", "rec", "sensor", "seq", "server", "src", "t")

    def __init__(self, eid: str, fields: Fields) -> None:
        self.id = eid
        try:
            if fields.get(b"v") != VERSION:
                raise EntryError(f"v: expected {VERSION!r}, got {fields.get(b'v')!r}")
            self.src = fields[b"src"].decode("utf-8", "replace")
            self.sensor = fields.get(b"sensor", b"").decode("utf-8", "replace")
            self.seq = int(fields[b"seq"])
            self.kind = fields[b"type"]
            if self.kind not in KINDS:
                raise EntryError(f"type: expected one of conn, session, tick, end, got "
                                 f"{self.kind!r}")
            self.t = float(fields[b"t"])
            if self.t != self.t:
                raise EntryError("t: expected a number, got NaN")
            self.client = fields.get(b"client", b"").decode("ascii", "replace")
            self.server = fields.get(b"server", b"").decode("ascii", "replace")
            self.rec = fields.get(b"rec", b"")
        except KeyError as exc:
            raise EntryError(f"{exc.args[0].decode()}: missing") from None
        except ValueError as exc:
            if isinstance(exc, EntryError):
                raise
            raise EntryError(f"not a number ({exc})") from None
