"""Each rule on hand-made features: fires at its threshold, not below, and only on its hosts."""

from __future__ import annotations

from typing import Any

import pytest
from detfactory import config, host

from sensor.detect.rules import (
    RULES,
    TRIGGERS,
    AlertKind,
    auth_bruteforce,
    compromised_account,
    dictionary_harvest,
    open_relay,
    plaintext_auth,
    protocol_abuse,
    relay_abuse,
    score,
    spam_source,
    spambot,
    span,
    starttls_downgrade,
)
from sensor.features.schema import SUM_INDEX

CFG = config()
W = CFG.windows


def r(name: str):  # type: ignore[no-untyped-def]
    return CFG.rules[name]


def test_every_rule_has_a_config_section_and_triggers_on_known_counts() -> None:
    assert set(RULES) == set(CFG.rules) == set(TRIGGERS)
    for names in TRIGGERS.values():
        assert all(n == "auth_state" or n in SUM_INDEX for n in names)
    assert len({c.sid for c in CFG.rules.values()}) == len(CFG.rules)


def test_spambot_burst_like_et_2000328() -> None:
    f = host(short={"ext_conns": 5, "ext_mail_from": 5, "ext_dst_ips": 5, "rcpts": 10,
                    "reject_ratio": 0.4})
    hit = spambot(f, r("spambot"), W)
    assert hit is not None and hit.rule == "direct_to_mx_burst" and hit.kind is AlertKind.SPAMBOT
    assert hit.severity == 8 and hit.sid == 250001 and hit.window_s == 60
    assert hit.summary.startswith("10.20.4.10 sent 5 MAIL FROM to 5 external MX hosts in 1 min")
    assert hit.features["ext_mail_from"] == 5 and hit.score == 0.5
    assert spambot(host(short={"ext_conns": 4, "ext_mail_from": 4}), r("spambot"), W) is None


def test_spambot_never_flags_authorised_mtas_or_outside_hosts() -> None:
    busy = {"ext_conns": 500, "ext_mail_from": 500, "ext_dst_ips": 300}
    assert spambot(host("10.20.0.10", mta=True, short=busy), r("spambot"), W) is None
    assert spambot(host("198.19.0.1", home=False, short=busy), r("spambot"), W) is None


@pytest.mark.parametrize(("window", "rule", "severity"), [
    ({"medium": {"ext_conns": 8, "ext_dst_ips": 8}}, "direct_to_many_mx", 8),
    ({"medium": {"ext_conns": 6, "ext_failed_conns": 2, "ext_dst_ips": 3}},
     "direct_to_mx_refused", 8),
    ({"long": {"ext_conns": 4, "ext_mail_from": 4, "ext_dst_ips": 4}},
     "direct_to_mx_low_and_slow", 6),
])
def test_spambot_other_signals(window: dict[str, dict[str, float]], rule: str,
                               severity: int) -> None:
    hit = spambot(host(**window), r("spambot"), W)  # type: ignore[arg-type]
    assert hit is not None and (hit.rule, hit.severity) == (rule, severity)


def test_spambot_refusal_needs_the_ratio() -> None:
    f = host(medium={"ext_conns": 6, "ext_failed_conns": 1, "ext_dst_ips": 3})
    assert spambot(f, r("spambot"), W) is None


def test_auth_bruteforce_by_count_and_by_user_spread() -> None:
    hit = auth_bruteforce(host("198.19.0.9", home=False, medium={"auth_failures": 10}),
                          r("auth_bruteforce"), W)
    assert hit is not None and hit.rule == "auth_failures" and "10 times" in hit.summary
    spray = host("198.19.0.9", home=False, medium={"auth_failures": 5, "auth_users": 4})
    hit = auth_bruteforce(spray, r("auth_bruteforce"), W)
    assert hit is not None and hit.rule == "auth_user_spray"
    assert auth_bruteforce(host(medium={"auth_failures": 9, "auth_users": 3}),
                           r("auth_bruteforce"), W) is None


def test_compromised_account_needs_failures_success_and_burst() -> None:
    own: dict[str, Any] = dict(auth_fails_before_success=3, auth_own_fails_before_success=3,
                               auth_success_ts=990.0, rcpts_after_auth_success=10,
                               msgs_after_auth_success=2)
    hit = compromised_account(host("198.19.0.9", home=False, **own), r("compromised_account"), W)
    assert hit is not None and hit.severity == 9 and hit.rule == "auth_fail_success_burst"
    assert "after 3 failed AUTH attempts and" in hit.summary and "10 recipients" in hit.summary
    for change in ({"auth_fails_before_success": 2}, {"rcpts_after_auth_success": 9},
                   {"auth_success_ts": 0.0}):
        kw = {**own, **change}
        assert compromised_account(host(home=False, **kw), r("compromised_account"), W) is None


def test_compromised_account_after_other_clients_failures_needs_a_burst() -> None:
    """Failures for the user by other clients: what was sent over the hour is not enough."""
    others: dict[str, Any] = dict(auth_fails_before_success=4, auth_own_fails_before_success=0,
                                  auth_success_ts=990.0, rcpts_after_auth_success=5,
                                  msgs_after_auth_success=5, burst_rcpts_after_auth_success=1)
    assert compromised_account(host(**others), r("compromised_account"), W) is None
    burst = {**others, "rcpts_after_auth_success": 20, "burst_rcpts_after_auth_success": 20}
    hit = compromised_account(host("198.19.0.8", home=False, **burst),
                              r("compromised_account"), W)
    assert hit is not None and hit.rule == "auth_others_fail_success_burst"
    assert "for that user by other clients" in hit.summary


def test_open_relay_is_our_server_and_relay_abuse_the_outside_client() -> None:
    srv = host("10.20.0.30", medium={"srv_relay_rcpts": 5, "srv_relay_clients": 1})
    hit = open_relay(srv, r("open_relay"), W)
    assert hit is not None and "our server 10.20.0.30 accepted 5 recipients" in hit.summary
    assert "1 outside client in" in hit.summary
    assert open_relay(host("198.19.0.1", home=False, medium={"srv_relay_rcpts": 50}),
                      r("open_relay"), W) is None
    cli = host("198.19.0.1", home=False, medium={"relay_rcpts": 5, "msgs": 1})
    hit = relay_abuse(cli, r("relay_abuse"), W)
    assert hit is not None and hit.kind is AlertKind.RELAY_ABUSE
    assert relay_abuse(host(medium={"relay_rcpts": 50}), r("relay_abuse"), W) is None


def test_dictionary_harvest_needs_count_and_share() -> None:
    f = host("198.19.0.1", home=False, medium={"rcpt_unknown": 20, "rcpts": 25,
                                               "unknown_ratio": 0.8})
    hit = dictionary_harvest(f, r("dictionary_harvest"), W)
    assert hit is not None and "(80%) were rejected as unknown users" in hit.summary
    low_share = host(home=False, medium={"rcpt_unknown": 20, "rcpts": 100, "unknown_ratio": 0.2})
    assert dictionary_harvest(low_share, r("dictionary_harvest"), W) is None


def test_spam_source_counts_traits() -> None:
    two = host("198.19.0.1", home=False, medium={"blocked": 1, "pregreet": 2, "sessions": 3})
    hit = spam_source(two, r("spam_source"), W)
    assert hit is not None and hit.summary.endswith("1 blocklist refusal, 2 pregreets")
    # a pregreet, a HELO claiming our domain or a blocklist refusal fires alone (strong_weight)
    for strong in ("pregreet", "helo_forged", "blocked"):
        one = host("198.19.0.1", home=False, medium={strong: 1, "sessions": 1})
        assert spam_source(one, r("spam_source"), W) is not None, strong
        weak = config("[rules.spam_source]\nstrong_weight = 1\n").rules["spam_source"]
        assert spam_source(one, weak, W) is None, strong
    # weak traits need each other: invalid HELO names alone, or rejections alone, do not fire
    bad_helo = {"helo_bad": 2, "helo_bad_share": 1.0}
    assert spam_source(host("198.19.0.1", home=False, medium=bad_helo), r("spam_source"),
                       W) is None
    rejects = {"rcpts": 2, "reject_ratio": 0.5}
    assert spam_source(host("198.19.0.1", home=False, medium=rejects), r("spam_source"),
                       W) is None
    both = host("198.19.0.1", home=False, medium={**bad_helo, **rejects})
    assert spam_source(both, r("spam_source"), W) is not None
    inside = host(medium={"blocked": 3, "pregreet": 3})
    assert spam_source(inside, r("spam_source"), W) is None


def test_hygiene_rules() -> None:
    hit = plaintext_auth(host("198.19.0.1", home=False, long={"auth_clear_ext_success": 1}),
                         r("plaintext_auth"), W)
    assert hit is not None and "authenticated 1 time without TLS" in hit.summary
    assert plaintext_auth(host(long={"auth_successes": 5}), r("plaintext_auth"), W) is None
    hit = starttls_downgrade(host(long={"stripped_starttls": 1, "sessions": 4}),
                             r("starttls_downgrade"), W)
    assert hit is not None and hit.sid == 250070
    hit = protocol_abuse(host(medium={"non_smtp": 1, "sessions": 1}), r("protocol_abuse"), W)
    assert hit is not None and hit.rule == "non_smtp"
    hit = protocol_abuse(host(medium={"abuse_anomalies": 10}), r("protocol_abuse"), W)
    assert hit is not None and hit.rule == "violations"
    assert protocol_abuse(host(medium={"abuse_anomalies": 9}), r("protocol_abuse"), W) is None


def test_thresholds_come_from_config() -> None:
    cfg = config("[rules.spambot]\nburst_mail_from = 20\nburst_window = \"medium\"\n")
    f = host(short={"ext_conns": 5, "ext_mail_from": 5})
    assert spambot(f, cfg.rules["spambot"], cfg.windows) is None
    f = host(medium={"ext_conns": 20, "ext_mail_from": 20})
    hit = spambot(f, cfg.rules["spambot"], cfg.windows)
    assert hit is not None and hit.window_s == 600


def test_score_and_span() -> None:
    assert score(10, 10) == 0.5 and score(20, 10) == 0.75 and score(1e9, 10) > 0.99
    assert (span(60), span(600), span(3600), span(90)) == ("1 min", "10 min", "1 h", "90 s")
