"""Reads Zeek's tab-separated logs (the expected outputs beside the public captures)."""

from __future__ import annotations

from pathlib import Path


def read_zeek_log(path: Path) -> list[dict[str, str | list[str] | None]]:
    """Rows of a Zeek ASCII log: unset fields are None, set/vector fields are lists."""
    fields: list[str] = []
    types: list[str] = []
    set_sep, empty, unset = ",", "(empty)", "-"
    rows: list[dict[str, str | list[str] | None]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].partition("\t")
            if key == "fields":
                fields = value.split("\t")
            elif key == "types":
                types = value.split("\t")
            elif key == "set_separator":
                set_sep = value
            elif key == "empty_field":
                empty = value
            elif key == "unset_field":
                unset = value
            continue
        if not fields:
            continue
        row: dict[str, str | list[str] | None] = {}
        for name, typ, raw in zip(fields, types, line.split("\t"), strict=False):
            if raw == unset:
                row[name] = None
            elif typ.startswith(("set[", "vector[")):
                row[name] = [] if raw == empty else raw.split(set_sep)
            else:
                row[name] = raw
        rows.append(row)
    return rows
