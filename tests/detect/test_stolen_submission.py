"""stolen_credential_submission: an inside host spamming through an outside provider's port 587
with stolen credentials (Emotet-style), on hand-made features and through the real CLI on
`sensor simulate` captures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from detfactory import config, host

from sensor.detect.gates import GATES, compile_gate, count_index
from sensor.detect.rules import AlertKind, stolen_credential_submission
from sensor.simulate.engine import simulate
from sensor.simulate.scenario import load_scenario, parse_scenario

CFG = config()
W = CFG.windows
RULE = CFG.rules["stolen_credential_submission"]
PATTERN = {"auth_clear_tls_offered": 1, "auth_user_foreign": 1, "helo_literal_other": 1,
           "sloppy_paths": 1, "reply_attach_msgs": 1, "auth_successes": 1, "msgs": 1,
           "ext_dst_ips": 1}
ID = "stolen_credential_submission"


def test_one_session_with_the_pattern_is_a_spambot_alert() -> None:
    hit = stolen_credential_submission(host(long=PATTERN), RULE, W)
    assert hit is not None and hit.kind is AlertKind.SPAMBOT and hit.rule == ID
    assert (hit.severity, hit.sid, hit.window_s) == (8, 250002, 3600)
    assert hit.summary.startswith(
        "10.20.4.10 sent AUTH in clear to outside mail servers that offered STARTTLS in 1 "
        "session in 1 h, as an account of another domain than the server's, greeting with an "
        "address literal that is not its own, sloppy MAIL FROM/RCPT TO syntax, 1 \"Re:\" "
        "message with an attachment: a bot sending spam with stolen credentials")
    assert hit.features["auth_clear_tls_offered"] == 1 and hit.magnitude == 4


@pytest.mark.parametrize("mark", ["auth_user_foreign", "helo_literal_other", "sloppy_paths",
                                  "reply_attach_msgs"])
def test_three_marks_are_enough(mark: str) -> None:
    assert stolen_credential_submission(host(long={**PATTERN, mark: 0}), RULE, W) is not None


def test_a_mail_client_left_without_tls_is_not_a_bot() -> None:
    """Clear AUTH to a hosted domain and a reply with an attachment: two marks, no alert (the
    plaintext_auth rule reports the exposed password)."""
    client = {**PATTERN, "helo_literal_other": 0, "sloppy_paths": 0}
    assert stolen_credential_submission(host(long=client), RULE, W) is None
    assert stolen_credential_submission(
        host(long=client), config("[rules.stolen_credential_submission]\nmin_traits = 2\n"
                                  ).rules[ID], W) is not None


def test_needs_auth_in_clear_despite_starttls() -> None:
    upgraded = {**PATTERN, "auth_clear_tls_offered": 0}
    assert stolen_credential_submission(host(long=upgraded), RULE, W) is None


def test_never_an_authorised_mta_or_an_outside_host() -> None:
    assert stolen_credential_submission(host("10.20.0.10", mta=True, long=PATTERN), RULE,
                                        W) is None
    assert stolen_credential_submission(host("198.19.0.1", home=False, long=PATTERN), RULE,
                                        W) is None
    gate = compile_gate(GATES[ID], RULE)
    one = {count_index("auth_clear_tls_offered"): 1.0}

    def counts(w: int, i: int) -> float:
        return one.get(i, 0.0)
    assert gate.passes(counts, True, False)
    assert not gate.passes(counts, True, True) and not gate.passes(counts, False, False)
    assert not gate.passes(lambda w, i: 0.0, True, False)


# ------------------------------------------------------------------------------ real CLI


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI exactly as a user would."""
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def site_toml(pcap: Path) -> Path:
    """The site configuration a SOC would write for the simulated campus."""
    site = json.loads(pcap.with_suffix(".truth.json").read_text())["site"]
    path = pcap.with_suffix(".toml")
    path.write_text("[site]\n" + "".join(f"{k} = {json.dumps(site[k])}\n" for k in (
        "home_net", "mail_servers", "local_domains")))
    return path


def labels(pcap: Path) -> dict[str, dict[str, str]]:
    rows = pcap.with_suffix(".labels.csv").read_text().splitlines()
    head = rows[0].split(",")
    return {r.split(",")[0]: dict(zip(head, r.split(","), strict=True)) for r in rows[1:]}


def analyze(pcap: Path, *extra: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`sensor analyze --alerts --sessions` with the site's config; (alerts, sessions)."""
    alerts, sessions = pcap.with_suffix(".alerts.jsonl"), pcap.with_suffix(".sessions.jsonl")
    r = sensor("analyze", str(pcap), "--config", str(site_toml(pcap)), "--alerts", str(alerts),
               "--sessions", str(sessions), "--quiet", *extra)
    assert r.returncode == 0, r.stderr
    return ([json.loads(x) for x in alerts.read_text().splitlines()],
            [json.loads(x) for x in sessions.read_text().splitlines()])


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("submission")
    out = {}
    for seed in (1, 2):
        pcap = root / f"submission-spambot-{seed}.pcap"
        simulate([load_scenario("submission-spambot")], str(pcap), seed=seed)
        out[seed] = pcap
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_the_simulated_bot_raises_the_alert_and_the_mail_clients_do_not(
        captures: dict[int, Path], seed: int) -> None:
    pcap = captures[seed]
    alerts, _ = analyze(pcap)
    lab = labels(pcap)
    (bot,) = [ip for ip, row in lab.items() if row["label"] == "malicious"]
    assert lab[bot]["kind"] == "spambot"
    ours = [a for a in alerts if a["rule"] == ID]
    assert [a["host"] for a in ours] == [bot]
    (a,) = ours
    assert (a["kind"], a["severity"], a["sid"]) == ("spambot", 8, 250002)
    assert float(lab[bot]["attack_start"]) <= a["ts"] <= float(lab[bot]["attack_end"])
    clients = {ip for ip, row in lab.items() if row["kind"] == "mail_client"}
    assert len(clients) == 6 and not clients & {x["host"] for x in alerts}


def test_the_session_log_shows_the_pattern(captures: dict[int, Path]) -> None:
    pcap = captures[1]
    _, sessions = analyze(pcap)
    lab = labels(pcap)
    bot = [s for s in sessions if lab[s["client_ip"]]["label"] == "malicious"]
    clients = [s for s in sessions if lab[s["client_ip"]]["kind"] == "mail_client"]
    assert bot and clients
    for s in bot:
        assert s["server_port"] == 587 and s["tls_offered"] and not s["tls_established"]
        assert "AUTH" in " ".join(s["extensions"]) and "STARTTLS" in s["extensions"]
        assert s["helo_kind"] == "ip_literal" and s["helo"] != f"[{s['client_ip']}]"
        (att,) = s["auth"]
        assert att["mechanism"] == "LOGIN" and att["outcome"] == "success"
        user_domain = att["user"].rpartition("@")[2]
        server_domain = s["banner"].split()[0].partition(".")[2]
        assert user_domain and user_domain != server_domain
        assert user_domain not in ("campus.example", "mail.campus.example")
        assert s["anomalies"]["auth_without_tls"] == 1 and s["anomalies"]["sloppy_path"] >= 1
        for t in s["transactions"]:
            assert t["headers"]["subject"].lower().startswith("re:")
            assert t["attachments"] and t["mail_from"] == att["user"]
    for s in clients:  # real mail programs upgrade before AUTH: nothing of it is seen
        assert s["server_port"] == 587 and s["tls_established"] and not s["auth"]


def test_587_is_read_by_default_and_not_with_ports_25(captures: dict[int, Path]) -> None:
    alerts, sessions = analyze(captures[1], "--ports", "25")
    assert alerts == [] and sessions == []


def test_evaluate_finds_the_bot_with_no_false_positive(captures: dict[int, Path]) -> None:
    pcap = captures[2]
    r = sensor("evaluate", "--labels", str(pcap.with_suffix(".labels.csv")), "--config",
               str(site_toml(pcap)), "--no-model", "--json", "-", str(pcap))
    assert r.returncode == 0, r.stderr
    figures = json.loads(r.stdout)
    assert figures["kinds"]["spambot"]["recall"] == 1.0
    assert figures["false_positive_hosts"] == {}


def test_not_from_an_authorised_mta_nor_a_mail_client_without_tls(tmp_path: Path) -> None:
    """The same bot on an authorised MTA's address, and mail programs set up without TLS that
    log in to a hosted domain (clear AUTH, foreign account, replies with attachments): the
    plaintext_auth rule reports their passwords, this rule stays silent."""
    sc = parse_scenario("""
[scenario]
name = "lookalikes"
description = "an MTA and careless mail clients"
duration = "15m"
[[actor]]
kind = "submission_spambot"
name = "mta"
hosts = ["10.20.0.10/32"]
[[actor]]
kind = "mail_client"
name = "no-tls"
count = 4
tls = 0.0
auth_users = ["alice@smallbiz.example", "bob@smallbiz.example"]
flavour = "thread"
attach = 1.0
[actor.timing]
rate_per_hour = 30
""", "lookalikes.toml")
    pcap = tmp_path / "lookalikes.pcap"
    simulate([sc], str(pcap), seed=1)
    alerts, sessions = analyze(pcap)
    assert any(s["auth"] and not s["tls_established"] for s in sessions)
    assert not [a for a in alerts if a["rule"] == ID]
    assert {a["kind"] for a in alerts} == {"plaintext_auth"}
