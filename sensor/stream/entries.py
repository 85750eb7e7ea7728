"""The stream entry of one record: who sent it, its place in that sensor's order, its JSON."""

from __future__ import annotations

from typing import Final

from sensor.stream.transport import Fields

VERSION: Final = b"1"
CONN: Final = b"conn"
SESSION: Final = b"session"
TICK: Final = b"tick"  # no record: the sensor's clock moved (a live sensor with nothing to say)
END: Final = b"end"  # no record: the sensor's run ended; nothing more comes from this source
KINDS: Final = (CONN, SESSION, TICK, END)


def make_fields(sensor: bytes, src: bytes, seq: int, kind: bytes, t: float, client: bytes,
                server: bytes, rec: bytes) -> Fields:
    """An entry's fields. `src` names one publisher run, `seq` counts its entries from 1 (the
    detector's duplicate and replay check), `t` is the merge key (never decreasing within a
    source), `client`/`server` the hosts (sharding without decoding `rec`, the record's JSON)."""
    return {b"v": VERSION, b"sensor": sensor, b"src": src, b"seq": b"%d" % seq, b"type": kind,
            b"t": repr(t).encode(), b"client": client, b"server": server, b"rec": rec}


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
