"""session_to_dict is JSON-ready and versioned; no secret reaches it; Zeek rows derive from it."""

from __future__ import annotations

import json

import pytest

from sensor.smtp import SCHEMA_VERSION, session_to_dict
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
