"""Window features of stolen-credential submission, counted only across the home_net boundary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from featfactory import conn, rcpt, session, site_config, tx

from sensor.features import HostTable
from sensor.records import Attachment, AuthAttempt, SmtpSession, WindowFeatures

PC, PROVIDER, OUR_RELAY, OUTSIDER = "10.20.4.7", "198.18.9.9", "10.20.0.27", "198.19.1.1"
MARKS = ("auth_clear_tls_offered", "auth_user_foreign", "helo_literal_other", "sloppy_paths",
         "reply_attach_msgs")
DOC = Attachment("invoice-4411.docm", "application/vnd.ms-word.document.macroEnabled.12",
                 "attachment", 51200, "0" * 64, False)


def _bot_session(server: str = PROVIDER, **kw: Any) -> SmtpSession:
    """The pattern in one session: every mark present."""
    msg = replace(tx(1.5, [rcpt("bob@far.example")], mail_from="oscar@lumzen.example"),
                  headers={"subject": "RE: payment confirmation"}, attachments=(DOC,))
    base: dict[str, Any] = dict(
        server_port=587, banner="smtp.morzen.example ESMTP Postfix", tls_offered=True,
        helo="[198.19.73.131]", helo_kind="ip_literal",
        auth=(AuthAttempt(1.1, "LOGIN", "success", 235, "oscar@lumzen.example"),),
        anomalies={"auth_without_tls": 1, "sloppy_path": 1})
    base.update(kw)
    return session(PC, server, 1.0, (msg,), **base)


def _marks(s: SmtpSession) -> dict[str, float]:
    t = HostTable(site_config())
    t.on_session(s)
    f = t.features(s.client_ip)
    assert f is not None
    w: WindowFeatures = f.short
    return {name: getattr(w, name) for name in MARKS}


def test_every_mark_of_the_pattern_counts_once_per_session() -> None:
    assert _marks(_bot_session()) == dict.fromkeys(MARKS, 1.0)


def test_nothing_counts_inside_home_net() -> None:
    """The same dialogue with our own relay is not across the boundary."""
    assert _marks(_bot_session(OUR_RELAY)) == dict.fromkeys(MARKS, 0.0)


def test_an_outside_client_on_our_server_is_across_the_boundary() -> None:
    s = replace(_bot_session(OUR_RELAY), client_ip=OUTSIDER)
    assert _marks(s) == dict.fromkeys(MARKS, 1.0)


@pytest.mark.parametrize(("kw", "mark"), [
    ({"auth": (AuthAttempt(1.1, "LOGIN", "success", 235, "oscar@lumzen.example",
                           after_starttls=True),), "tls_established": True},
     "auth_clear_tls_offered"),
    ({"tls_offered": False}, "auth_clear_tls_offered"),
    ({"auth": (AuthAttempt(1.1, "LOGIN", "success", 235, "oscar@morzen.example"),)},
     "auth_user_foreign"),  # the provider's own domain
    ({"auth": (AuthAttempt(1.1, "LOGIN", "success", 235, "oscar@mail.morzen.example"),)},
     "auth_user_foreign"),  # a subdomain of it
    ({"auth": (AuthAttempt(1.1, "LOGIN", "success", 235, "alice@campus.example"),)},
     "auth_user_foreign"),  # one of ours
    ({"auth": (AuthAttempt(1.1, "LOGIN", "success", 235, "oscar"),)}, "auth_user_foreign"),
    ({"helo": f"[{PC}]"}, "helo_literal_other"),  # its own address
    ({"helo": "DESKTOP-7F3K2", "helo_kind": "bare_word"}, "helo_literal_other"),
    ({"anomalies": {"auth_without_tls": 1}}, "sloppy_paths"),
])
def test_each_mark_needs_its_own_evidence(kw: dict[str, Any], mark: str) -> None:
    got = _marks(_bot_session(**kw))
    assert got[mark] == 0.0
    assert all(v == 1.0 for k, v in got.items() if k != mark)


@pytest.mark.parametrize(("subject", "attachments", "count"), [
    ("Re: invoice", (DOC,), 1.0),
    ("  re:order", (DOC,), 1.0),
    ("Fwd: invoice", (DOC,), 0.0),
    ("Re: invoice", (), 0.0),
    (None, (DOC,), 0.0),
])
def test_reply_with_attachment(subject: str | None, attachments: tuple[Attachment, ...],
                               count: float) -> None:
    s = _bot_session()
    msg = replace(s.transactions[0], headers={"subject": subject}, attachments=attachments)
    assert _marks(replace(s, transactions=(msg, msg)))["reply_attach_msgs"] == 2 * count


def test_a_server_without_a_name_in_its_greeting_leaves_only_our_domains_out() -> None:
    assert _marks(_bot_session(banner=None))["auth_user_foreign"] == 1.0
    assert _marks(_bot_session(banner="[198.18.9.9] ready"))["auth_user_foreign"] == 1.0


def test_submission_to_a_provider_is_not_direct_delivery_to_an_mx() -> None:
    """Connections and MAIL FROM on an outside port 587 stay out of the ext_* counts that the
    spambot rule reads (a mail client whose provider is firewalled is no refused spambot)."""
    t = HostTable(site_config())
    for i in range(8):
        t.on_conn(conn(PC, PROVIDER, float(i), state="S0", server_port=587))
        t.on_conn(conn(PC, f"198.18.0.{i + 1}", float(i), state="REJ"))
    t.on_session(replace(_bot_session(), ts=9.0))
    t.on_session(replace(_bot_session(), ts=10.0, server_port=25))
    f = t.features(PC)
    assert f is not None
    w = f.short
    assert (w.conns, w.failed_conns, w.dst_ips) == (16, 16, 9)
    assert (w.ext_conns, w.ext_failed_conns, w.ext_dst_ips) == (8, 8, 8)
    assert (w.mail_from, w.ext_mail_from) == (2, 1)
