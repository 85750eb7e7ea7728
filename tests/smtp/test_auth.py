"""AUTH mechanisms: user extraction and outcomes; secrets are never kept."""

from __future__ import annotations

import base64

import pytest

from sensor.smtp.auth import AuthExchange, AuthOutcome, looks_like_response, user_from_response


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


@pytest.mark.parametrize(
    ("mech", "response", "user"),
    [
        ("PLAIN", b64(b"\0alice\0pw"), "alice"),
        ("PLAIN", b64(b"admin\0alice\0pw"), "alice"),
        ("PLAIN", b64(b"alice\0\0pw"), "alice"),
        ("PLAIN", b64(b"no separators"), None),
        ("LOGIN", b64(b"bob@example.org"), "bob@example.org"),
        ("CRAM-MD5", b64(b"carol 0123456789abcdef0123456789abcdef"), "carol"),
        ("XOAUTH2", b64(b"user=dave@example.org\x01auth=Bearer t0k\x01\x01"), "dave@example.org"),
        ("OAUTHBEARER", b64(b"n,a=erin@example.org,\x01auth=Bearer t\x01\x01"), "erin@example.org"),
        ("SCRAM-SHA-256", b64(b"n,,n=frank,r=rOprNGfwEbeRWgbNEkqO"), "frank"),
        ("PLAIN", b"!!!notbase64", None),
        ("GSSAPI", b64(b"opaque"), None),
    ],
)
def test_user_from_first_response(mech: str, response: bytes, user: str | None) -> None:
    assert user_from_response(mech, 0, response) == user


def test_login_password_response_is_not_a_user() -> None:
    ex = AuthExchange.start(1.0, "LOGIN", None)
    ex.response(b64(b"bob"))
    ex.response(b64(b"hunter2"))
    assert ex.user == "bob"
    assert not ex.wants_response
    ex.reply(235)
    rec = ex.record()
    assert (rec.outcome, rec.code, rec.user) == ("success", 235, "bob")
    assert "hunter2" not in repr(rec)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [(235, AuthOutcome.SUCCESS), (535, AuthOutcome.FAILURE), (454, AuthOutcome.TEMP_FAILURE)],
)
def test_outcomes(code: int, outcome: AuthOutcome) -> None:
    ex = AuthExchange.start(1.0, "PLAIN", b64(b"\0u\0p"))
    assert not ex.wants_response
    ex.reply(code)
    assert ex.outcome is outcome


def test_continuation_then_abort() -> None:
    ex = AuthExchange.start(1.0, "CRAM-MD5", None)
    ex.reply(334)
    assert not ex.done and ex.wants_response
    ex.response(b"*")
    ex.reply(501)
    assert ex.record().outcome == "aborted"


def test_unknown_mechanism_is_open_ended_and_unanswered_is_unknown() -> None:
    ex = AuthExchange.start(1.0, "NTLM", None)
    assert ex.expected is None and ex.wants_response
    ex.response(b64(b"NTLMSSP\0"))
    assert ex.wants_response
    assert ex.record().outcome == "unknown"


def test_response_shape() -> None:
    assert looks_like_response(b"dXNlcg==")
    assert looks_like_response(b"*")
    assert looks_like_response(b"")
    assert not looks_like_response(b"MAIL FROM:<a@b>")
