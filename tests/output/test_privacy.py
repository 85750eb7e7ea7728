"""The [privacy] transform: pseudonyms, dropped fields, text scrubbing, the key file, no leaks."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensor.config import parse_config
from sensor.detect.alerts import alert_to_dict
from sensor.errors import ConfigError
from sensor.output.jsonl import conn_to_dict
from sensor.output.privacy import (
    FIELDS,
    GROUPS,
    REDACTED,
    Privacy,
    expand,
)
from sensor.records import (
    Alert,
    Attachment,
    AuthAttempt,
    ConnRecord,
    MailTransaction,
    Recipient,
    SmtpSession,
)
from sensor.smtp.schema import session_to_dict

from .record_strategies import conns, sessions

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
PSEUDONYM = re.compile(r"h:[0-9a-f]{16}")
ALL = expand(["all"])


def _session() -> dict[str, Any]:
    """A session carrying a value in every field of the vocabulary."""
    rcpts = (
        Recipient("Bob.Jones@Example.COM", {"ORCPT": "rfc822;Bob.Jones@Example.COM"}, 250,
                  "2.1.5", "2.1.5 <Bob.Jones@Example.COM>... Recipient ok"),
        Recipient("carol@example.org", {}, 550, "5.1.1",
                  "5.1.1 <carol@example.org>: Recipient address rejected: User unknown"),
    )  # fmt: skip
    txn = MailTransaction(
        ts=1.0, trans_depth=1, mail_from="alice.smith@sender.example",
        mail_params={"AUTH": "<alice.smith@sender.example>", "SIZE": "1200"}, mail_code=250,
        rcpt_to=rcpts, rcpts_dropped=0, data_mode="data", size=1200,
        headers={"date": "Mon, 30 Nov 2026 08:00:33 +0000",
                 "from": '"Alice Smith" <alice.smith@sender.example>',
                 "to": "Bob Jones <Bob.Jones@Example.COM>, carol@example.org",
                 "cc": "Dave <dave.cc@example.net>", "reply_to": "<replies@sender.example>",
                 "subject": "Quarterly salaries of the sales team",
                 "msg_id": "<20261130.4711@sender.example>",
                 "in_reply_to": "<20261129.0815@sender.example>",
                 "x_originating_ip": "[203.0.113.77]",
                 "user_agent": "Thunderbird 128.5 on alice-laptop",
                 "first_received": "from alice-laptop (198.51.100.23) by mx.sender.example",
                 "second_received": None},
        received_count=1, received_ips=("198.51.100.23",), mime_parts=2,
        attachments=(Attachment("salaries-2026.xlsx", "application/vnd.ms-excel", "attachment",
                                 800, "ab" * 32, False),),
        last_reply="250 2.0.0 Ok: queued as 4Xyz for <Bob.Jones@Example.COM>", last_code=250,
        accepted=True, complete=True, truncated=False, tls=False)  # fmt: skip
    s = SmtpSession(
        uid="CAChpT9APyMyf4CEx", ts=1.0, client_ip="198.51.100.23", client_port=50000,
        server_ip="2001:db8::25", server_port=25, duration_s=1.0,
        banner="mx.sender.example ESMTP ready for 198.51.100.23", banner_code=220,
        helo="alice-laptop.home", helo_verb="EHLO", helo_kind="fqdn",
        extensions=("PIPELINING",), tls_offered=True, tls_attempted=False,
        tls_established=False, tls_bytes=0, tls_reply=None,
        auth=(AuthAttempt(1.0, "PLAIN", "success", 235, "alice.login"),
              AuthAttempt(1.0, "LOGIN", "failure", 535, "alice.smith@Sender.Example")),
        reply_codes={250: 3}, anomalies={}, commands=("EHLO", "MAIL", "RCPT", "DATA"),
        bytes_from_client=1300, bytes_from_server=200, transactions=(txn,))  # fmt: skip
    return session_to_dict(s)


ORIGINALS = ["Bob.Jones", "carol@example.org", "alice.smith", "Alice Smith", "Dave",
             "dave.cc", "replies@", "Quarterly salaries", "20261130.4711", "20261129.0815",
             "203.0.113.77", "Thunderbird", "alice-laptop", "198.51.100.23", "2001:db8::25",
             "salaries-2026", "CAChpT9APyMyf4CEx", "alice.login", "ab" * 32,
             "application/vnd.ms-excel"]  # fmt: skip


def _strings(v: Any) -> list[str]:
    """Every string in a JSON-like value, keys included."""
    if isinstance(v, str):
        return [v]
    if isinstance(v, (list, tuple)):
        return [s for x in v for s in _strings(x)]
    if isinstance(v, dict):
        return [s for k, x in v.items() for s in (*_strings(k), *_strings(x))]
    return []


def _leaks(out: Any, originals: list[str]) -> list[str]:
    text = "\n".join(_strings(out))
    return [o for o in originals if o in text]


def test_pseudonymising_everything_leaves_no_value_and_keeps_joins() -> None:
    d = _session()
    out = Privacy(pseudonymise=ALL, key=KEY).session(d)
    assert _leaks(out, ORIGINALS) == []
    txn, ip = out["transactions"][0], out["client_ip"]
    assert PSEUDONYM.fullmatch(ip) and PSEUDONYM.fullmatch(out["uid"])
    assert txn["received_ips"] == [ip]  # the same value, the same pseudonym, in any field
    sender = txn["mail_from"]
    assert txn["headers"]["from"] == sender  # display name gone, the mailbox's pseudonym kept
    assert txn["headers"]["to"] == ", ".join(r["addr"] for r in txn["rcpt_to"])
    assert PSEUDONYM.fullmatch(txn["headers"]["subject"])
    assert txn["headers"]["second_received"] is None  # absent stays absent
    assert out["auth"][1]["user"] == sender  # the domain's case does not matter
    assert out["helo_kind"] == "fqdn" and out["commands"] == ["EHLO", "MAIL", "RCPT", "DATA"]
    assert txn["size"] == 1200 and txn["rcpt_to"][0]["code"] == 250
    assert d == _session()  # the input is not changed: detection keeps the raw record


def test_a_field_alone_changes_only_it_and_its_quotes_in_text() -> None:
    out = Privacy(pseudonymise={"rcpt_to"}, key=KEY).session(_session())
    txn = out["transactions"][0]
    bob = txn["rcpt_to"][0]["addr"]
    assert PSEUDONYM.fullmatch(bob)
    assert txn["rcpt_to"][0]["text"] == f"2.1.5 <{bob}>... Recipient ok"  # quoted: same pseudonym
    assert txn["rcpt_to"][0]["params"] == {"ORCPT": f"rfc822;{bob}"}
    assert txn["last_reply"] == f"250 2.0.0 Ok: queued as 4Xyz for <{bob}>"
    # every mailbox in text goes too, whoever's it is, once an address field is configured
    assert "alice.smith" not in str(out["transactions"][0]["mail_params"])
    # fields not named are as they were, but for the named values quoted in them
    assert out["client_ip"] == "198.51.100.23" and txn["headers"]["subject"].startswith("Quart")
    assert txn["mail_from"] == "alice.smith@sender.example"
    assert txn["headers"]["to"] == f"Bob Jones <{bob}>, {txn['rcpt_to'][1]['addr']}"


def test_same_key_same_pseudonyms_across_instances_other_key_others() -> None:
    a = Privacy(pseudonymise=ALL, key=KEY).session(_session())
    b = Privacy(pseudonymise=ALL, key=KEY).session(_session())
    c = Privacy(pseudonymise=ALL, key=OTHER_KEY).session(_session())
    assert a == b
    assert a["client_ip"] != c["client_ip"] and a["uid"] != c["uid"]
    assert a["transactions"][0]["mail_from"] != c["transactions"][0]["mail_from"]


def test_keep_domain_keeps_the_lower_cased_domain_of_every_mailbox() -> None:
    p = Privacy(pseudonymise=expand(["addresses"]), key=KEY, keep_domain=True)
    txn = p.session(_session())["transactions"][0]
    bob = txn["rcpt_to"][0]["addr"]
    assert re.fullmatch(r"h:[0-9a-f]{16}@example\.com", bob)
    assert re.fullmatch(r"h:[0-9a-f]{16}@sender\.example", txn["mail_from"])
    assert txn["headers"]["cc"].endswith("@example.net")
    assert txn["rcpt_to"][0]["text"] == f"2.1.5 <{bob}>... Recipient ok"
    # the same address with the domain in another case: the same pseudonym; the local part's
    # case matters (RFC 5321 2.4) unless fold_local_case
    assert p.text("BOB.JONES@example.com") != bob and p.text("Bob.Jones@EXAMPLE.com") == bob
    folded = Privacy(pseudonymise={"rcpt_to"}, key=KEY, keep_domain=True, fold_local_case=True)
    assert folded.text("BOB.JONES@example.com") == folded.text("bob.jones@Example.Com")
    # without keep_domain the hex is the same: only the domain is added
    plain = Privacy(pseudonymise={"rcpt_to"}, key=KEY)
    assert plain.text("x Bob.Jones@example.com x") == f"x {bob.partition('@')[0]} x"


def test_dropped_fields_are_removed_and_their_quotes_redacted_without_a_key() -> None:
    out = Privacy(drop=ALL).session(_session())
    assert _leaks(out, ORIGINALS) == []
    txn = out["transactions"][0]
    assert "client_ip" not in out and "uid" not in out and "helo" not in out
    assert "mail_from" not in txn and "addr" not in txn["rcpt_to"][0]
    assert set(txn["headers"]) == {"date"}
    assert txn["attachments"] == [{"disposition": "attachment", "size": 800, "truncated": False}]
    assert "user" not in out["auth"][0] and out["auth"][0]["mechanism"] == "PLAIN"
    partial = Privacy(drop={"rcpt_to"}).session(_session())["transactions"][0]
    assert partial["rcpt_to"][1]["text"] == (f"5.1.1 <{REDACTED}>: Recipient address rejected: "
                                             "User unknown")


def test_an_endpoint_ip_takes_the_alert_host_and_the_uid_with_it() -> None:
    """The uid is an unkeyed hash of the 4-tuple: kept, it would give the IP back."""
    p = Privacy(pseudonymise={"client_ip"}, key=KEY)
    assert p.pseudonymise == {"client_ip", "host", "uid"}
    assert Privacy(drop={"server_ip"}).drop == {"server_ip", "host", "uid"}
    named = Privacy(drop={"uid"}, pseudonymise={"client_ip"}, key=KEY)
    assert named.drop == {"uid"} and named.pseudonymise == {"client_ip", "host"}
    session = p.session(_session())
    conn = {"uid": "CAChpT9APyMyf4CEx", "client_ip": "198.51.100.23", "server_ip": "192.0.2.1",
            "state": "SF"}
    assert p.conn(conn) == {"uid": session["uid"], "client_ip": session["client_ip"],
                            "server_ip": "192.0.2.1", "state": "SF"}


def _alert(host: str = "198.51.100.23") -> Alert:
    return Alert(ts=1.0, time="2026-11-30T08:00:00.000Z", sensor="tap", host=host,
                 kind="spambot", severity=8, sid=250001, rule="direct_to_mx_burst", score=0.9,
                 source="rule", window_s=600,
                 summary=f"{host} sent 12 MAIL FROM to 9 external MX hosts in 10 min",
                 evidence={"features": {"msgs": 12}, "sessions": ["CAChpT9APyMyf4CEx"],
                           "update": f"seen again from {host}"},
                 first_seen=1.0, last_seen=1.0)  # fmt: skip


def test_alerts_host_summary_and_evidence() -> None:
    p = Privacy(pseudonymise=expand(["ips"]), key=KEY)
    a = p.alert(_alert())
    session = p.session(_session())
    assert a.host == session["client_ip"]
    assert a.summary == f"{a.host} sent 12 MAIL FROM to 9 external MX hosts in 10 min"
    assert a.evidence == {"features": {"msgs": 12}, "sessions": [session["uid"]],
                          "update": f"seen again from {a.host}"}
    assert a.kind == "spambot" and a.severity == 8
    v6 = p.alert(_alert("2001:DB8:0::25"))  # IPv6 in canonical form: the session's server_ip
    assert v6.host == session["server_ip"] and "2001" not in v6.summary
    dropped = Privacy(drop={"host"}).alert(_alert())
    assert dropped.host == "" and "198.51.100.23" not in str(alert_to_dict(dropped))
    assert dropped.summary.startswith(REDACTED)
    score = {"host": "198.51.100.23", "score": 0.9, "top_features": [{"text": "12 messages"}]}
    assert p.host_score(score) == {**score, "host": a.host}


def test_ips_in_text_in_any_form() -> None:
    p = Privacy(pseudonymise={"host"}, key=KEY)
    v4 = p.text("198.51.100.23")
    assert PSEUDONYM.fullmatch(v4)
    assert p.text("[198.51.100.23]") == f"[{v4}]"
    assert p.text("from 198.51.100.23.") == f"from {v4}."
    v6 = p.text("2001:db8::25")
    assert p.text("EHLO [IPv6:2001:DB8:0:0::25]") == f"EHLO [IPv6:{v6}]"
    assert p.text("at 12:30:45 build 1.2.3.999") == "at 12:30:45 build 1.2.3.999"  # not IPs
    assert "198.51" not in p.text("::ffff:198.51.100.23")
    assert p.text("lost 2001:db8::25: reset") == f"lost {v6}: reset"  # a colon after it
    assert p.text("2001:db8::25x") == f"{v6}x"


def test_disabled_returns_its_input_untouched() -> None:
    p = Privacy()
    d, a = _session(), _alert()
    assert not p.enabled
    assert p.session(d) is d and p.conn(d) is d and p.host_score(d) is d and p.alert(a) is a
    assert p.text("x@example.com 10.0.0.1") == "x@example.com 10.0.0.1"


def test_config_section_reads_the_key_once_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k").write_bytes(KEY + b"\n")  # a final newline is not the key's
    cfg_path = tmp_path / "site.toml"
    cfg_path.write_text('[privacy]\npseudonymise = ["addresses", "subject"]\ndrop = ["ips"]\n'
                        'key_file = "keys/k"\nkeep_domain = true\npseudonym_hex = 20\n')
    cfg = parse_config(cfg_path.read_text(), str(cfg_path)).privacy
    assert cfg.key == KEY and cfg.key_file == str(tmp_path / "keys" / "k")
    assert "key=" not in repr(cfg)  # a config printed in a traceback does not show the key
    p = Privacy.from_config(cfg)
    assert p.pseudonymise == set(GROUPS["addresses"]) | {"subject"}
    assert p.drop == set(GROUPS["ips"])
    assert re.fullmatch(r"h:[0-9a-f]{20}@example\.com", p.text("bob@Example.com"))


@pytest.mark.parametrize(("content", "message"), [
    (None, 'site.toml: privacy.key_file: cannot read key file "{path}": No such file'),
    (b"short\n", 'site.toml: privacy.key_file: expected a key of at least 16 bytes in "{path}", '
                 "got 5"),
])  # fmt: skip
def test_key_file_errors_are_one_line_naming_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    key = tmp_path / "k"
    if content is not None:
        key.write_bytes(content)
    text = f'[privacy]\npseudonymise = ["subject"]\nkey_file = "{key}"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.toml")
    assert str(err.value).startswith(message.format(path=key))
    assert "\n" not in str(err.value)


def test_every_field_names_paths_of_known_records_and_groups_name_fields() -> None:
    for name, places in FIELDS.items():
        assert places, name
        for record, path, _kind in places:
            assert record in ("session", "conn", "alert", "host_score") and path, name
    for group, names in GROUPS.items():
        assert set(names) <= set(FIELDS), group
    doc = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text()
    for name in [*FIELDS, *GROUPS]:
        assert f"`{name}`" in doc, f"{name} is not in docs/privacy.md"


# --- hypothesis: never raises, never leaks ---------------------------------------------------

def _field_values(d: Any, fields: set[str], record: str) -> list[str]:
    """The strings at the paths of `fields` in a record's dict."""
    out: list[str] = []

    def at(v: Any, path: tuple[str, ...]) -> None:
        if not path:
            out.extend(_strings(v))
        elif path[0] == "*":
            if isinstance(v, list):
                for x in v:
                    at(x, path[1:])
        elif isinstance(v, dict) and path[0] in v:
            at(v[path[0]], path[1:])

    for name in fields:
        for rec, path, _kind in FIELDS[name]:
            if rec == record:
                at(d, path)
    return out


def _keys(v: Any) -> list[str]:
    if isinstance(v, list):
        return [k for x in v for k in _keys(x)]
    if isinstance(v, dict):
        return [k for key, x in v.items() for k in (key, *_keys(x))]
    return []


SCHEMA_KEYS = "\n".join([*_keys(_session()), *(f.name for f in fields(ConnRecord))])


def _checkable(value: str) -> bool:
    """Values whose absence from the output means something: long enough to be searched for
    in text (privacy.MIN_QUOTED), and not a fragment of what the transform writes itself or of
    the record's own field names ("ecei" is in "received_ips")."""
    return (len(value) >= 4 and not set(value) <= set("h:0123456789abcdef[]redact@.")
            and value not in SCHEMA_KEYS)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sessions, st.booleans(), st.data())
def test_sessions_never_raise_and_never_leak(
    session: SmtpSession, drop: bool, data: st.DataObject
) -> None:
    d = session_to_dict(session)
    originals = [v for v in _field_values(d, ALL, "session") if _checkable(v)]
    if originals:  # quote some of them in text fields, as servers and attackers do
        quote = st.tuples(st.text(max_size=4), st.sampled_from(originals), st.text(max_size=4))
        d["extensions"] = ["".join(q) for q in data.draw(st.lists(quote, max_size=3))]
        d["commands"] = [*d["commands"], "".join(data.draw(quote))]
    p = Privacy(drop=ALL) if drop else Privacy(pseudonymise=ALL, key=KEY)
    out = p.session(d)
    assert _leaks(out, originals) == []


@settings(max_examples=200)
@given(conns)
def test_conns_never_raise_and_never_leak(conn: Any) -> None:
    d = conn_to_dict(conn)
    out = Privacy(pseudonymise=ALL, key=KEY).conn(d)
    originals = [v for v in _field_values(d, ALL, "conn") if _checkable(v)]
    assert _leaks(out, originals) == []
    assert set(out) == set(d)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["uid", "client_ip", "auth", "transactions", "host",
                                        "evidence", "x"]), JSON, max_size=5), JSON)
def test_any_value_type_anywhere_never_raises(d: dict[str, Any], evidence: Any) -> None:
    for p in (Privacy(pseudonymise=ALL, key=KEY, keep_domain=True), Privacy(drop=ALL)):
        for method in (p.session, p.conn, p.host_score):
            method(d)
        p.alert(_alert().__class__(**{**alert_to_dict(_alert()),
                                      "evidence": {"x": evidence, "sessions": evidence}}))
        p.text(str(evidence))


@settings(max_examples=300)
@given(st.ip_addresses(), st.just("") | st.tuples(st.sampled_from(" ,;)]>/'\""),
                                                 st.text(max_size=8)).map("".join),
       st.booleans())
def test_alert_hosts_never_leak_in_any_form(ip: Any, noise: str, drop: bool) -> None:
    """An address written as a token of text (what follows it is not part of it)."""
    p = Privacy(drop={"host"}) if drop else Privacy(pseudonymise={"host"}, key=KEY)
    host = str(ip)
    shown = host.upper() if ip.version == 6 else host  # another spelling of the same address
    a = _alert(host)
    a = a.__class__(**{**alert_to_dict(a), "summary": f"{shown}{noise} sent 3 messages",
                       "evidence": {"update": f"{noise}[{shown}]"}})
    out = alert_to_dict(p.alert(a))
    text = "\n".join(_strings(out))
    assert host not in text and shown not in text
