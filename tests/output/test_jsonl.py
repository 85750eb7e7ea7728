"""JSON-lines forms of records: the flat ConnRecord shortcut equals the generic walk."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.output.jsonl import conn_to_dict, record_to_dict, to_json_line
from sensor.records import ConnRecord


@settings(max_examples=50, deadline=None)
@given(st.builds(ConnRecord))
def test_conn_shortcut_equals_the_generic_walk(rec: ConnRecord) -> None:
    assert conn_to_dict(rec) == record_to_dict(rec)
    assert list(conn_to_dict(rec)) == list(record_to_dict(rec))  # same key order in the line


def test_json_line_is_one_compact_object() -> None:
    line = to_json_line({"a": "é", "b": [1, None]})
    assert line == '{"a":"é","b":[1,null]}\n'.encode()
    assert json.loads(line) == {"a": "é", "b": [1, None]}
