"""What the dialogue parser's issue-13 signals add to a host: mid-stream sessions, STARTTLS
injection, AUTH seen in plaintext after STARTTLS."""

from __future__ import annotations

from featfactory import auth, session, site_config

from sensor.features import HostTable
from sensor.records import AuthAttempt

OUTSIDER, OUR_MX = "198.19.1.1", "10.20.0.25"


def test_a_session_picked_up_mid_stream_is_no_missing_banner() -> None:
    t = HostTable(site_config())
    t.on_session(session(OUTSIDER, OUR_MX, 1.0, banner=None, banner_code=0, midstream=True))
    t.on_session(session(OUTSIDER, OUR_MX, 2.0, banner=None, banner_code=0,
                         anomalies={"no_banner": 1}))  # fmt: skip
    f = t.features(OUTSIDER)
    assert f is not None and (f.short.sessions, f.short.no_banner_sessions) == (2, 1)


def test_a_session_that_lost_bytes_is_no_missing_banner() -> None:
    """The parser reports no no_banner when a gap either way (or the SYN-ACK's loss) may have
    taken the greeting: the feature counts what the parser reports, not a banner code of 0."""
    t = HostTable(site_config())
    t.on_session(session(OUTSIDER, OUR_MX, 1.0, banner=None, banner_code=0,
                         anomalies={"gap_client": 2}))  # fmt: skip
    t.on_session(session(OUTSIDER, OUR_MX, 2.0, banner=None, banner_code=0))
    f = t.features(OUTSIDER)
    assert f is not None and (f.short.sessions, f.short.no_banner_sessions) == (2, 0)


def test_starttls_injection_is_a_non_smtp_session() -> None:
    t = HostTable(site_config())
    t.on_session(session(OUTSIDER, OUR_MX, 1.0, anomalies={"starttls_injection": 1}))
    f = t.features(OUTSIDER)
    assert f is not None and f.short.non_smtp == 1


def test_auth_seen_after_starttls_is_not_in_clear() -> None:
    t = HostTable(site_config())
    decrypted = AuthAttempt(1.1, "LOGIN", "success", 235, "alice", after_starttls=True)
    t.on_session(session(OUTSIDER, OUR_MX, 1.0, auth=(decrypted,), tls_established=True))
    t.on_session(session(OUTSIDER, OUR_MX, 2.0, auth=(auth(2.1, "success"),)))
    f = t.features(OUTSIDER)
    assert f is not None
    assert (f.short.auth_successes, f.short.auth_clear_ext_success) == (2, 1)
