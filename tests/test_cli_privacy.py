"""`sensor analyze` with [privacy]: no redacted value in any output, stable pseudonyms, one or
two processes; run as a real subprocess on a simulated capture."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensor.output.privacy import FIELDS
from sensor.simulate import load_scenario, simulate

OUTPUTS = {"session": "--sessions", "conn": "--conns", "alert": "--alerts",
           "host_score": "--host-scores"}  # fmt: skip


def sensor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI exactly as a user would."""
    return subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@dataclass
class Run:
    """The outputs of one run: record lines per kind, and everything written as one text."""

    records: dict[str, list[dict[str, Any]]]
    files: dict[str, bytes]
    text: str


def analyze(pcap: Path, out: Path, config: str | None, *extra: str) -> Run:
    out.mkdir()
    args = ["analyze", str(pcap), "--stats", str(out / "stats.json"), *extra]
    if config is not None:
        (out / "site.toml").write_text(config)
        args += ["--config", str(out / "site.toml")]
    for kind, option in OUTPUTS.items():
        args += [option, str(out / f"{kind}.jsonl")]
    r = sensor(*args)
    assert r.returncode == 0, r.stderr
    files = {kind: (out / f"{kind}.jsonl").read_bytes() for kind in OUTPUTS}
    files["stats"] = (out / "stats.json").read_bytes()
    records = {kind: [json.loads(line) for line in files[kind].splitlines()] for kind in OUTPUTS}
    text = "\n".join([*(b.decode() for b in files.values()), r.stdout, r.stderr])
    return Run(records, files, text)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inside spambots, a compromised account, stolen-credential submission and ordinary mail:
    addresses, AUTH users, subjects, attachments, Received headers and alerts on all of it."""
    folder = tmp_path_factory.mktemp("privacy")
    pcap = folder / "sim.pcap"
    simulate([load_scenario(n) for n in ("demo", "compromised", "submission-spambot")],
             str(pcap), seed=3)
    (folder / "key").write_bytes(b"0123456789abcdef0123456789abcdef\n")
    (folder / "other.key").write_bytes(b"another key, as long as needed\n")
    return pcap


@pytest.fixture(scope="module")
def raw(capture: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return analyze(capture, tmp_path_factory.mktemp("raw") / "out", None)


def _at(v: Any, path: tuple[str, ...]) -> Iterator[Any]:
    if not path:
        yield v
    elif path[0] == "*":
        for x in v if isinstance(v, list) else ():
            yield from _at(x, path[1:])
    elif isinstance(v, dict) and path[0] in v:
        yield from _at(v[path[0]], path[1:])


def _strings(v: Any) -> Iterator[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)


def originals(run: Run, names: tuple[str, ...] = tuple(FIELDS)) -> dict[str, set[str]]:
    """Per field name, the values the raw run wrote in it."""
    out: dict[str, set[str]] = {}
    for name in names:
        found = out.setdefault(name, set())
        for record, path, _kind in FIELDS[name]:
            for rec in run.records[record]:
                for v in _at(rec, path):
                    found.update(_strings(v))
    return out


def _template_words(run: Run) -> set[str]:
    """Words of the sensor's own sentences (an AUTH user "user" is also in "4 user names")."""
    texts = [a["summary"] for a in run.records["alert"]]
    texts += [json.dumps(a["evidence"]) for a in run.records["alert"]]
    texts += [json.dumps(h["top_features"]) for h in run.records["host_score"]]
    return {w for t in texts for w in re.findall(r"[A-Za-z_]+", t)}


def leaks(raw: Run, redacted: Run) -> list[str]:
    template = _template_words(raw)
    values = {v for found in originals(raw).values() for v in found}
    return sorted(v for v in values if len(v) >= 4 and v not in template and v in redacted.text)


def _config(tmp: Path, key: str = "key", **keys: object) -> str:
    lines = ["[privacy]"]
    for name, value in keys.items():
        lines.append(f"{name} = {json.dumps(value)}")
    if "pseudonymise" in keys:
        lines.append(f"key_file = {json.dumps(str(tmp / key))}")
    return "\n".join(lines) + "\n"


def test_the_capture_has_a_value_in_the_fields_the_tests_need(raw: Run) -> None:
    found = originals(raw)
    for name in ("client_ip", "server_ip", "host", "uid", "helo", "auth_user", "mail_from",
                 "rcpt_to", "reply_text", "header_from", "header_to", "subject", "message_id",
                 "received", "attachment_name", "attachment_hash"):
        assert found[name], name
    assert any("@" in t for t in found["reply_text"])  # servers quote addresses in replies
    assert raw.records["alert"] and raw.records["host_score"]


def test_pseudonymised_runs_leak_nothing_and_agree_across_runs_and_workers(
    capture: Path, raw: Run, tmp_path: Path
) -> None:
    config = _config(capture.parent, pseudonymise=["all"])
    one = analyze(capture, tmp_path / "one", config)
    assert leaks(raw, one) == []
    # detection worked on the raw values: the same alerts, the same host scores
    assert [(a["kind"], a["ts"], a["severity"]) for a in one.records["alert"]] == \
        [(a["kind"], a["ts"], a["severity"]) for a in raw.records["alert"]]
    assert len(one.records["host_score"]) == len(raw.records["host_score"])
    assert len(one.records["session"]) == len(raw.records["session"])
    stats = [json.loads(r.files["stats"]) for r in (one, raw)]
    assert stats[0]["detect"]["alerts_by_kind"] == stats[1]["detect"]["alerts_by_kind"]
    # an alert's host is its session's client_ip pseudonym, and the alert table shows it
    hosts = {a["host"] for a in one.records["alert"]}
    assert hosts <= {s["client_ip"] for s in one.records["session"]} | \
        {s["server_ip"] for s in one.records["session"]}
    assert any(h in one.text.split("alerts (newest per host and kind)")[-1] for h in hosts)
    # a second run with the same key, this time with two worker processes: the same bytes
    two = analyze(capture, tmp_path / "two", config, "--workers", "2")
    for kind in OUTPUTS:
        assert two.files[kind] == one.files[kind], kind
    # another key: other pseudonyms for the same values
    other = analyze(capture, tmp_path / "other",
                    _config(capture.parent, "other.key", pseudonymise=["all"]))
    mine = {s["client_ip"] for s in one.records["session"]}
    theirs = {s["client_ip"] for s in other.records["session"]}
    assert len(mine) == len(theirs) > 1 and not mine & theirs


@pytest.mark.parametrize("workers", ["1", "2"])
def test_dropping_everything_leaks_nothing_without_a_key(
    capture: Path, raw: Run, tmp_path: Path, workers: str
) -> None:
    run = analyze(capture, tmp_path / "out", _config(tmp_path, drop=["all"]),
                  "--workers", workers)
    assert leaks(raw, run) == []
    session = run.records["session"][0]
    assert "client_ip" not in session and "uid" not in session and "client_port" in session
    assert all(a["host"] == "" for a in run.records["alert"])


def test_keep_domain_keeps_each_address_domain(capture: Path, raw: Run, tmp_path: Path) -> None:
    run = analyze(capture, tmp_path / "out",
                  _config(capture.parent, pseudonymise=["addresses"], keep_domain=True))
    by_uid = {s["uid"]: s for s in raw.records["session"]}  # uids are kept: no IP is named
    pairs = 0
    for s in run.records["session"]:
        for t, raw_t in zip(s["transactions"], by_uid[s["uid"]]["transactions"], strict=True):
            for r, raw_r in zip(t["rcpt_to"], raw_t["rcpt_to"], strict=True):
                domain = raw_r["addr"].rpartition("@")[2].lower()
                assert re.fullmatch(rf"h:[0-9a-f]{{16}}@{re.escape(domain)}", r["addr"])
                pairs += 1
    assert pairs > 100
    locals_ = {v.rpartition("@")[0] for name in ("mail_from", "rcpt_to")
               for v in originals(raw, (name,))[name] if "@" in v}
    assert not [v for v in locals_ if len(v) >= 4 and f"{v}@" in run.text]


def test_a_missing_key_file_is_one_line_and_exit_2(capture: Path, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[privacy]\npseudonymise = ["ips"]\nkey_file = "absent.key"\n')
    r = sensor("analyze", str(capture), "--config", str(config), "--quiet")
    assert r.returncode == 2
    assert r.stderr == (f'sensor: error: {config}: privacy.key_file: cannot read key file '
                        f'"{tmp_path / "absent.key"}": No such file or directory\n')
