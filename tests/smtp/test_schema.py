"""session_to_dict is JSON-ready and versioned; no secret reaches it; Zeek rows derive from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from output.record_strategies import sessions

from sensor.errors import RecordError
from sensor.output.jsonl import to_json_line
from sensor.output.readers import record_from_line
from sensor.records import SmtpSession
from sensor.smtp import SCHEMA_VERSION, session_from_dict, session_to_dict
from sensor.smtp.zeek import zeek_rows

from .dialogues import AUTH_PLAIN, BASIC, BDAT, PASSWORD, PIPELINED, STARTTLS, b64, run


@pytest.mark.parametrize("events", [BASIC, PIPELINED, BDAT, AUTH_PLAIN, STARTTLS])
def test_json_round_trip(events: list[tuple[bool, bytes]]) -> None:
    d = session_to_dict(run(events))
    assert d["schema"] == SCHEMA_VERSION == "smtp_session/1"
    assert json.loads(json.dumps(d)) == d


def test_passwords_never_appear() -> None:
    text = json.dumps(session_to_dict(run(AUTH_PLAIN)))
    secrets = [PASSWORD, b64(PASSWORD), b64(b"admin\0alice@example.org\0" + PASSWORD),
               b64(b"\0mallory@example.org\0wrong-" + PASSWORD), b"ya29.vF9dft4qmT",
               b"b913a602c7eda7a495b4e6e7334d3890"]  # fmt: skip
    for secret in secrets:
        assert secret.decode() not in text
        assert secret.decode("latin-1") not in repr(run(AUTH_PLAIN))


def test_schema_doc_lists_every_field() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "smtp_session_schema.md").read_text()
    d = session_to_dict(run(BASIC))
    keys = set(d) | set(d["transactions"][0]) | set(d["transactions"][0]["attachments"][0])
    keys |= set(d["transactions"][0]["rcpt_to"][0]) | set(d["transactions"][0]["headers"])
    keys |= set(session_to_dict(run(AUTH_PLAIN))["auth"][0])
    missing = [k for k in keys if f"`{k}`" not in doc]
    assert missing == []


def test_zeek_rows_basic_and_starttls() -> None:
    [row] = zeek_rows(run(BASIC))
    assert row["mailfrom"] == "alice@example.org"
    assert row["rcptto"] == {"bob@example.net", "nobody@example.net"}
    assert row["to"] == {"Bob <bob@example.net>", "carol@example.net"}
    assert row["path"] == ["198.51.100.25", "192.0.2.10", "203.0.113.7", "10.1.2.3"]
    assert row["filenames"] == ["report.pdf"] and row["tls"] is False
    [tls_row] = zeek_rows(run(STARTTLS))
    assert tls_row["tls"] is True and tls_row["last_reply"] == "220 2.0.0 Ready to start TLS"
    assert tls_row["helo"] == "client.example.org" and tls_row["trans_depth"] == 1


# --------------------------------------------------------------------------------------------
# reading the record back (session_from_dict)


@pytest.mark.parametrize("events", [BASIC, PIPELINED, BDAT, AUTH_PLAIN, STARTTLS])
def test_dialogue_sessions_read_back_exactly(events: list[tuple[bool, bytes]]) -> None:
    s = run(events)
    assert session_from_dict(session_to_dict(s)) == s
    assert session_from_dict(json.loads(to_json_line(session_to_dict(s)))) == s


@settings(max_examples=300, deadline=None)
@given(sessions)
def test_any_session_survives_its_json_line(s: SmtpSession) -> None:
    assert session_from_dict(session_to_dict(s)) == s
    assert record_from_line(to_json_line(session_to_dict(s))) == s


def _broken(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    d = session_to_dict(run(AUTH_PLAIN))
    d["transactions"] = session_to_dict(run(BASIC))["transactions"]
    node: Any = d
    for key in path[:-1]:
        node = node[key]
    if value is _DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


_DROP = object()


@pytest.mark.parametrize(("path", "value", "message"), [
    (("schema",), "smtp_session/2", "schema: expected 'smtp_session/1', got 'smtp_session/2'"),
    (("schema",), _DROP, "schema: expected 'smtp_session/1', got nothing"),
    (("uid",), 7, "uid: expected a string, got 7"),
    (("ts",), "100.0", "ts: expected a number, got '100.0'"),
    (("ts",), True, "ts: expected a number, got true"),
    (("ts",), float("nan"), "ts: expected a finite number, got nan"),
    (("duration_s",), 10**400, "duration_s: expected a finite number, got an integer of 1329 bits"),
    (("client_port",), "9" * 99, "client_port: expected an integer, got '" + "9" * 36 + "..."),
    (("client_port",), 25.0, "client_port: expected an integer, got 25.0"),
    (("client_port",), _DROP, "client_port: missing"),
    (("banner",), ["x"], "banner: expected a string or null, got a list"),
    (("tls_offered",), 1, "tls_offered: expected true or false, got 1"),
    (("extensions",), "PIPELINING", "extensions: expected a list of strings, got 'PIPELINING'"),
    (("extensions", 0), None, "extensions[0]: expected a string, got null"),
    (("reply_codes",), {"250x": 1}, "reply_codes: expected 64-bit integer keys, got '250x'"),
    (("reply_codes",), {" 250": 1}, "reply_codes: expected 64-bit integer keys, got ' 250'"),
    (("reply_codes",), {"250": "1"}, "reply_codes.250: expected a 64-bit integer, got '1'"),
    (("reply_codes",), {"2" * 30: 1}, "reply_codes: expected 64-bit integer keys, got '"
     + "2" * 30 + "'"),
    (("bytes_from_client",), 2**64, "bytes_from_client: expected a 64-bit integer, got "
     "18446744073709551616"),
    (("anomalies",), {"gap": -(2**63) - 1}, "anomalies.gap: expected a 64-bit integer, got "
     "-9223372036854775809"),
    (("anomalies",), [], "anomalies: expected an object of integers, got a list"),
    (("auth", 0, "user"), 5, "auth[0].user: expected a string or null, got 5"),
    (("auth", 1), "PLAIN", "auth[1]: expected an object, got 'PLAIN'"),
    (("transactions",), {}, "transactions: expected a list of objects, got an object"),
    (("transactions", 0, "rcpt_to", 0, "code"), None,
     "transactions[0].rcpt_to[0].code: expected an integer, got null"),
    (("transactions", 0, "headers", "subject"), 1,
     "transactions[0].headers.subject: expected a string or null, got 1"),
    (("transactions", 0, "mail_params"), {"SIZE": 10},
     "transactions[0].mail_params.SIZE: expected a string, got 10"),
])  # fmt: skip
def test_a_bad_field_is_named_with_what_was_expected(
    path: tuple[str | int, ...], value: object, message: str
) -> None:
    with pytest.raises(RecordError) as err:
        session_from_dict(_broken(path, value))
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_fields_added_later_are_optional_and_unknown_fields_ignored() -> None:
    s = run(STARTTLS)
    d = session_to_dict(s)
    del d["midstream"]
    d["a_field_of_a_later_writer"] = {"x": 1}
    assert session_from_dict(d) == s
    assert session_from_dict(json.loads(json.dumps(d))) == s


def test_not_an_object_at_all() -> None:
    with pytest.raises(RecordError, match=r"^record: expected an object, got a list$"):
        session_from_dict([])
