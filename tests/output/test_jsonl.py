"""JSON-lines forms of records: the flat ConnRecord shortcut equals the generic dataclass form."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.output.jsonl import conn_to_dict, to_json_line
from sensor.records import ConnRecord


@settings(max_examples=50, deadline=None)
@given(st.builds(ConnRecord))
def test_conn_shortcut_equals_the_generic_form(rec: ConnRecord) -> None:
    assert conn_to_dict(rec) == asdict(rec)
    assert list(conn_to_dict(rec)) == list(asdict(rec))  # same key order in the line


def test_json_line_is_one_compact_object() -> None:
    line = to_json_line({"a": "é", "b": [1, None]})
    assert line == '{"a":"é","b":[1,null]}\n'.encode()
    assert json.loads(line) == {"a": "é", "b": [1, None]}


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20))  # fmt: skip
def test_fast_lines_say_what_the_standard_library_says(obj: object) -> None:
    try:
        "".join(_strings(obj)).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: see the fallback test
        return
    line = to_json_line(obj)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line) == obj  # the same values; a float may be spelt 0.00005 for 5e-05
    if not _has_float(obj):
        assert line == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _has_float(obj: object) -> bool:
    if isinstance(obj, float):
        return True
    if isinstance(obj, list):
        return any(_has_float(v) for v in obj)
    if isinstance(obj, dict):
        return any(_has_float(v) for v in obj.values())
    return False


def _strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (k, *_strings(v))]
    return []


def test_values_orjson_refuses_are_still_written() -> None:
    line = to_json_line({"name": "a\udcffb", "n": 2**70})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"name": "a\udcffb", "n": 2**70}
