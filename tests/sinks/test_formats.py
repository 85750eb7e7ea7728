"""The syslog formats: exact bytes per format, parsers written here that read every field back
(hostile strings included), hypothesis properties of framing, and the docs/siem.md examples."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from detect.test_scenarios import site_config
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp.dialogues import BANNER, BASIC, EHLO_REPLY, C, S, run

from sensor import __version__
from sensor.capture.bpf import DEFAULT_PORTS, build_filter
from sensor.capture.source import open_files
from sensor.detect import alert_to_dict
from sensor.detect.evaluate import run_detection
from sensor.pipeline import Pipeline
from sensor.records import Alert, SmtpSession
from sensor.simulate.engine import simulate
from sensor.simulate.scenario import load_scenario
from sensor.sinks.formats import (
    FORMATS,
    SESSION_LIST_MAX,
    FormatOptions,
    cef_severity,
    format_alert,
    format_session,
    leef_severity,
    syslog_severity,
)
from sensor.smtp.schema import session_to_dict

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "alerts-compromised-seed1.jsonl"
DOC = ROOT / "docs" / "siem.md"
OPTS = FormatOptions(hostname="sensor1.example.net")
HOSTILE = ("caf\u00e9 \u65e5\u672c \U0001f4e7 a\r\nb\x00c\x1b[31m\td\\e\"f]g|h=i\x7fj\x85k"
           "\u2028l\udce9m <13>1 - - [x@1 a=\"b\"]")  # fmt: skip


def real_alert() -> Alert:
    """The first alert of the compromised-account scenario (the golden log of the pipeline)."""
    return Alert(**json.loads(GOLDEN.read_text().splitlines()[0]))


# --- parsers written for the tests (independent of the module's escaping code) ------------------

_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def unescape(s: str, extra: str) -> str:
    """Undo the formats' escapes: \\\\ \\n \\r \\t \\uXXXX and \\ before any char of `extra`;
    anything else is a bug in the writer."""
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt in _SIMPLE:
            out.append(_SIMPLE[nxt])
            i += 2
        elif nxt == "u":
            out.append(chr(int(s[i + 2 : i + 6], 16)))
            i += 6
        elif nxt in extra:
            out.append(nxt)
            i += 2
        else:
            raise AssertionError(f"unknown escape \\{nxt} in {s!r}")
    return "".join(out)


def check_frame(frame: bytes) -> str:
    """One frame: valid UTF-8, no LF, CR or NUL anywhere."""
    assert b"\n" not in frame and b"\r" not in frame and b"\0" not in frame, frame
    return frame.decode("utf-8")


_HEAD5424 = re.compile(r"<(\d{1,3})>1 (\S+) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) "
                       r"([!-~]{1,32}) ")  # fmt: skip


def parse_5424(frame: bytes) -> dict[str, Any]:
    """RFC 5424: header fields, structured data {sd_id: {name: value}} and MSG (bytes)."""
    check_frame(frame)
    text = frame.decode("utf-8")
    m = _HEAD5424.match(text)
    assert m, text[:200]
    out: dict[str, Any] = {"pri": int(m[1]), "time": m[2], "host": m[3], "app": m[4],
                           "procid": m[5], "msgid": m[6], "sd": {}}  # fmt: skip
    rest = text[m.end():]
    if rest.startswith("-"):
        rest = rest[1:]
    else:
        while rest.startswith("["):
            end = re.match(r"\[([!-~]+?)[ \]]", rest)
            assert end, rest[:80]
            sd_id = end[1]
            assert not set(sd_id) & set('= ]"') and len(sd_id) <= 32
            params: dict[str, str] = {}
            i = len(sd_id) + 1
            while rest[i] == " ":
                eq = rest.index("=", i)
                name = rest[i + 1 : eq]
                assert re.fullmatch(r'[!-~]{1,32}', name) and not set(name) & set('= ]"'), name
                assert rest[eq + 1] == '"'
                j = eq + 2
                while rest[j] != '"':
                    j += 2 if rest[j] == "\\" else 1
                params[name] = unescape(rest[eq + 2 : j], '"]')
                i = j + 1
            assert rest[i] == "]"
            out["sd"][sd_id] = params
            rest = rest[i + 1 :]
    if rest:
        assert rest[0] == " ", rest[:40]
        rest = rest[1:]
    out["msg"] = rest.encode("utf-8")
    return out


def parse_3164(frame: bytes) -> dict[str, Any]:
    text = check_frame(frame)
    m = re.match(r"<(\d{1,3})>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([!-~]+?)(?:\[(\S+)\])?:"
                 r"(?: |$)", text)  # fmt: skip
    assert m, text[:100]
    return {"pri": int(m[1]), "time": m[2], "host": m[3], "tag": m[4], "pid": m[5],
            "msg": text[m.end():]}  # fmt: skip


def split_unescaped(s: str, sep: str, n: int) -> list[str]:
    """The first n fields of s split on sep not preceded by an escaping backslash, and the rest."""
    fields: list[str] = []
    start = i = 0
    while len(fields) < n:
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == sep:
            fields.append(s[start:i])
            start = i + 1
        i += 1
    return [*fields, s[start:]]


def parse_cef(body: str) -> tuple[list[str], dict[str, str]]:
    """CEF:0 header fields (unescaped) and the extension as a dict."""
    assert body.startswith("CEF:0|"), body[:40]
    *head, ext = split_unescaped(body[6:], "|", 6)
    head = [unescape(h, "|") for h in head]
    eqs = []
    i = 0
    while i < len(ext):
        if ext[i] == "\\":
            i += 2
            continue
        if ext[i] == "=":
            eqs.append(i)
        i += 1
    out: dict[str, str] = {}
    for n, eq in enumerate(eqs):
        kstart = ext.rfind(" ", 0, eq) + 1
        key = ext[kstart:eq]
        assert re.fullmatch(r"[A-Za-z0-9]+", key), key
        vend = (ext.rfind(" ", 0, eqs[n + 1]) if n + 1 < len(eqs) else len(ext))
        assert key not in out
        out[key] = unescape(ext[eq + 1 : vend], "=")
    return head, out


def parse_leef(body: str) -> tuple[list[str], dict[str, str]]:
    """LEEF:2.0 header fields and the tab-delimited attributes."""
    assert body.startswith("LEEF:2.0|"), body[:40]
    *head, attrs = split_unescaped(body[9:], "|", 5)
    assert head[4] == "x09"
    out: dict[str, str] = {}
    for pair in attrs.split("\t"):
        key, _, value = pair.partition("=")
        assert key not in out and re.fullmatch(r"[A-Za-z0-9_]+", key), key
        out[key] = unescape(value, "")
    return [unescape(h, "|") for h in head[:4]], out


def body_of(frame: bytes) -> str:
    """The MSG of a 5424 frame without structured data."""
    p = parse_5424(frame)
    assert p["sd"] == {}
    return str(p["msg"].decode("utf-8"))


def num(s: str) -> float:
    try:
        return int(s)
    except ValueError:
        return float(s)


def iso(ts: float) -> str:
    from sensor.detect.alerts import iso_time

    return iso_time(ts)


def check_alert(a: Alert, fmt: str, frame: bytes, opts: FormatOptions = OPTS) -> None:
    """Every field of the alert read back from the frame of one format."""
    feats = a.evidence.get("features", {})
    assert isinstance(feats, dict)
    sessions = ",".join(a.evidence.get("sessions", []))  # type: ignore[arg-type]
    if fmt == "rfc3164":
        p = parse_3164(frame)
        assert p["pri"] == 16 * 8 + syslog_severity(a.severity)
        assert unescape(p["msg"], "") == a.summary
        return
    p5 = parse_5424(frame)
    assert p5["pri"] == 16 * 8 + syslog_severity(a.severity)
    assert p5["time"] == iso(a.ts) and p5["msgid"] == a.kind
    assert p5["host"] == "sensor1.example.net" and p5["app"] == "port25-sensor"
    if fmt == "rfc5424":
        sd = p5["sd"]["port25@32473"]
        expected = {"sid": str(a.sid), "kind": a.kind, "host": a.host, "severity": str(a.severity),
                    "rule": a.rule, "source": a.source, "sensor": a.sensor,
                    "first_seen": iso(a.first_seen), "last_seen": iso(a.last_seen),
                    "sessions": sessions}  # fmt: skip
        assert {k: sd[k] for k in expected} == expected
        assert num(sd["score"]) == a.score and num(sd["window"]) == a.window_s
        assert {k: num(sd[k]) for k in feats} == feats
        assert sd.get("update") == a.evidence.get("update")
        assert unescape(p5["msg"].decode("utf-8"), "") == a.summary
        return
    if fmt == "json":
        assert p5["sd"] == {} and p5["msg"].startswith(b"\xef\xbb\xbf")
        assert json.loads(p5["msg"][3:]) == json.loads(json.dumps(alert_to_dict(a)))
        return
    body = body_of(frame)
    if fmt == "cef":
        head, ext = parse_cef(body)
        assert head == ["port25", "port25-sensor", __version__, str(a.sid), a.kind,
                        str(cef_severity(a.severity))]  # fmt: skip
        assert ext["src" if _is_address(a.host) else "shost"] == a.host
        assert ext["cat"] == a.kind and ext["msg"] == a.summary
        assert int(ext["rt"]) == int(a.ts * 1000) and int(ext["start"]) == int(a.first_seen * 1000)
        assert ext["cnt"] == str(len(a.evidence.get("sessions", [])))  # type: ignore[arg-type]
        labels = {ext[f"{k}Label"]: ext[k] for k in ext if f"{k}Label" in ext}
        assert labels["rule"] == a.rule and labels["source"] == a.source
        assert labels["sessions"] == sessions and num(labels["score"]) == a.score
        assert num(labels["window_s"]) == a.window_s and ext["dvchost"] == a.sensor
        got = dict(kv.split(":") for kv in labels["counts"].split(" ")) if feats else {}
        assert {k: num(v) for k, v in got.items()} == feats
    elif fmt == "leef":
        head, attrs = parse_leef(body)
        assert head == ["port25", "port25-sensor", __version__, str(a.sid)]
        assert attrs["src" if _is_address(a.host) else "srcHost"] == a.host
        assert attrs["cat"] == a.kind and attrs["msg"] == a.summary
        assert attrs["sev"] == str(leef_severity(a.severity)) and attrs["devTime"] == iso(a.ts)
        assert attrs["devTimeFormat"] == "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
        assert attrs["rule"] == a.rule and num(attrs["score"]) == a.score
        assert attrs["sessions"] == sessions and {k: num(attrs[k]) for k in feats} == feats
    else:
        doc = json.loads(body)
        assert doc["@timestamp"] == iso(a.ts) and doc["message"] == a.summary
        assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == a.severity
        assert "intrusion_detection" in doc["event"]["category"]
        assert doc["rule"] == {"id": str(a.sid), "name": a.rule, "category": a.kind,
                               "ruleset": "port25"}  # fmt: skip
        assert doc["source"] == {"ip" if _is_address(a.host) else "address": a.host}
        assert doc["observer"]["name"] == a.sensor
        assert doc["observer"]["hostname"] == "sensor1.example.net"
        assert doc["port25"]["evidence"] == json.loads(json.dumps(a.evidence))
        assert doc["port25"]["score"] == a.score and doc["port25"]["source"] == a.source


# --- exact bytes --------------------------------------------------------------------------------

GOLDEN_HEAD = ("<130>1 2026-11-30T08:09:23.896Z sensor1.example.net port25-sensor -"
               " compromised_account")
GOLDEN_5424 = (
    GOLDEN_HEAD + ' [port25@32473 sid="250020" kind="compromised_account" host="198.19.149.108"'
    ' severity="9" score="0.545" window="3600" source="rule" rule="auth_fail_success_burst"'
    ' sensor="sim" first_seen="2026-11-30T08:07:02.311Z" last_seen="2026-11-30T08:09:23.896Z"'
    ' sessions="CEKWRx8qU6G6beDnn,C0BOfdzKrad78JmQX,CBuDcWOQIzxfcac7J,Cif4ZouCSx2dW3Y84,'
    'C1aQTzQwFVW9x7FFY" auth_fails_before_success="4" auth_own_fails_before_success="4"'
    ' rcpts_after_auth_success="11" msgs_after_auth_success="1"'
    ' burst_rcpts_after_auth_success="11"] 198.19.149.108 logged in after 4 failed AUTH attempts'
    " and then sent 1 message to 11 recipients: a likely stolen password"
)
GOLDEN_CEF = (
    GOLDEN_HEAD + " - CEF:0|port25|port25-sensor|" + __version__ + "|250020|compromised_account|9|"
    "rt=1796026163896 src=198.19.149.108 cnt=5 cat=compromised_account dvchost=sim"
    " start=1796026022311 end=1796026163896 cs1Label=rule cs1=auth_fail_success_burst"
    " cs2Label=source cs2=rule cs3Label=sessions cs3=CEKWRx8qU6G6beDnn,C0BOfdzKrad78JmQX,"
    "CBuDcWOQIzxfcac7J,Cif4ZouCSx2dW3Y84,C1aQTzQwFVW9x7FFY cs4Label=counts"
    " cs4=auth_fails_before_success:4 auth_own_fails_before_success:4 rcpts_after_auth_success:11"
    " msgs_after_auth_success:1 burst_rcpts_after_auth_success:11 cfp1Label=score cfp1=0.545"
    " cn1Label=window_s cn1=3600 cn2Label=auth_fails_before_success cn2=4"
    " cn3Label=auth_own_fails_before_success cn3=4 msg=198.19.149.108 logged in after 4 failed"
    " AUTH attempts and then sent 1 message to 11 recipients: a likely stolen password"
)
GOLDEN_LEEF = (
    GOLDEN_HEAD + " - LEEF:2.0|port25|port25-sensor|" + __version__ + "|250020|x09|"
    "cat=compromised_account\tdevTime=2026-11-30T08:09:23.896Z"
    "\tdevTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSXXX\tsev=9\tsrc=198.19.149.108\tsid=250020"
    "\tscore=0.545\twindow=3600\tsource=rule\trule=auth_fail_success_burst\tsensor=sim"
    "\tfirst_seen=2026-11-30T08:07:02.311Z\tlast_seen=2026-11-30T08:09:23.896Z"
    "\tsessions=CEKWRx8qU6G6beDnn,C0BOfdzKrad78JmQX,CBuDcWOQIzxfcac7J,Cif4ZouCSx2dW3Y84,"
    "C1aQTzQwFVW9x7FFY\tauth_fails_before_success=4\tauth_own_fails_before_success=4"
    "\trcpts_after_auth_success=11\tmsgs_after_auth_success=1\tburst_rcpts_after_auth_success=11"
    "\tmsg=198.19.149.108 logged in after 4 failed AUTH attempts and then sent 1 message to 11"
    " recipients: a likely stolen password"
)
GOLDEN_3164 = ("<130>Nov 30 08:09:23 sensor1.example.net port25-sensor: 198.19.149.108 logged in"
               " after 4 failed AUTH attempts and then sent 1 message to 11 recipients: a likely"
               " stolen password")  # fmt: skip


def test_exact_bytes_of_a_real_alert_in_rfc5424_cef_leef_and_rfc3164() -> None:
    a = real_alert()
    assert format_alert(a, OPTS) == GOLDEN_5424.encode()
    assert format_alert(a, replace(OPTS, format="cef")) == GOLDEN_CEF.encode()
    assert format_alert(a, replace(OPTS, format="leef")) == GOLDEN_LEEF.encode()
    assert format_alert(a, replace(OPTS, format="rfc3164")) == GOLDEN_3164.encode()


def test_exact_bytes_of_json_and_ecs() -> None:
    a = real_alert()
    line = GOLDEN.read_text().splitlines()[0]
    assert format_alert(a, replace(OPTS, format="json")) == (
        GOLDEN_HEAD + " - \ufeff" + line).encode()
    ecs = format_alert(a, replace(OPTS, format="ecs"))
    assert ecs.startswith((GOLDEN_HEAD + ' - {"@timestamp":"2026-11-30T08:09:23.896Z",'
                           '"message":"198.19.149.108 logged in').encode())  # fmt: skip
    doc = json.loads(body_of(ecs))
    assert doc["event"] == {
        "kind": "alert", "category": ["intrusion_detection", "network"], "type": ["info"],
        "severity": 9, "module": "port25", "dataset": "port25.alert", "provider": "port25-sensor",
        "start": "2026-11-30T08:07:02.311Z", "end": "2026-11-30T08:09:23.896Z"}  # fmt: skip
    assert doc["observer"] == {"name": "sim", "type": "ids", "vendor": "port25",
                               "product": "port25-sensor", "version": __version__,
                               "hostname": "sensor1.example.net"}  # fmt: skip


def test_3164_header_choice_pid_and_empty_hostname() -> None:
    a = real_alert()
    cef = format_alert(a, FormatOptions(format="cef", header="rfc3164", procid="4242"))
    assert cef.startswith(b"<130>Nov 30 08:09:23 - port25-sensor[4242]: CEF:0|port25|")
    forced = format_alert(a, FormatOptions(format="rfc3164", header="rfc5424", facility=4))
    assert forced.startswith(b"<34>1 2026-11-30T08:09:23.896Z - port25-sensor - compromised_")
    assert parse_5424(forced)["sd"] == {}  # rfc3164's body is the summary alone
    js = format_alert(a, FormatOptions(format="json", header="rfc3164"))
    assert b"\xef\xbb\xbf" not in js and json.loads(parse_3164(js)["msg"])["sid"] == 250020


def test_severity_mapping() -> None:
    assert [syslog_severity(s) for s in range(0, 12)] == [6, 6, 6, 5, 5, 4, 4, 3, 3, 2, 1, 1]
    assert [cef_severity(s) for s in (-3, 0, 5, 10, 99)] == [0, 0, 5, 10, 10]
    assert [leef_severity(s) for s in (-3, 0, 1, 10, 99)] == [1, 1, 1, 10, 10]


def test_header_fields_are_printable_ascii_within_their_limits() -> None:
    opts = FormatOptions(hostname="h\u00f6st name\n" + "x" * 300, app_name="a p\u00e9" * 40,
                         procid="\x00" * 200, sd_id='id="x]@1 ' + "y" * 40)  # fmt: skip
    a = replace(real_alert(), kind="k\u00efnd with spaces and more than thirty-two characters",
                evidence={"features": {"na=me ]\"x" + "z" * 40: 1, "n\u00e9": 2.5}})
    p = parse_5424(format_alert(a, opts))
    assert p["host"] == ("h?st_name_" + "x" * 300)[:255]
    assert p["app"] == ("a_p?" * 40)[:48] and p["procid"] == "_" * 128
    assert p["msgid"] == "k?nd_with_spaces_and_more_than_t"
    ((sd_id, params),) = p["sd"].items()
    assert sd_id == 'id__x_@1_yyyyyyyyyyyyyyyyyyyyyyy'
    assert params["na_me___xzzzzzzzzzzzzzzzzzzzzzzz"] == "1" and params["n?"] == "2.5"


def test_feature_names_that_clash_with_fixed_parameters_are_left_out() -> None:
    a = replace(real_alert(), evidence={"features": {"host": 1, "msg": 2, "a" * 40: 3,
                                                     "a" * 33: 4, "ok": 5}})  # fmt: skip
    sd = parse_5424(format_alert(a, OPTS))["sd"]["port25@32473"]
    assert sd["host"] == a.host and "msg" not in sd and sd["a" * 32] == "3" and sd["ok"] == "5"
    _, attrs = parse_leef(body_of(format_alert(a, replace(OPTS, format="leef"))))
    assert attrs["msg"] == a.summary and attrs["ok"] == "5"


# --- hostile strings ----------------------------------------------------------------------------

def hostile_alert() -> Alert:
    a = real_alert()
    return replace(a, summary=f"{a.summary} {HOSTILE}", rule=f"rule {HOSTILE}",
                   sensor=f"sensor {HOSTILE}", source=HOSTILE,
                   evidence={"features": {"msgs": 412, "reject_ratio": 0.61},
                             "sessions": ["C1", HOSTILE], "update": HOSTILE})  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_strings_round_trip_in_every_format(fmt: str) -> None:
    a = hostile_alert()
    frame = format_alert(a, replace(OPTS, format=fmt))
    check_frame(frame)
    check_alert(a, fmt, frame)
    assert "caf\u00e9 \u65e5\u672c \U0001f4e7".encode() in frame  # UTF-8 as is, not escaped


@pytest.mark.parametrize("fmt", ("rfc5424", "cef", "leef"))
def test_a_host_that_is_not_an_address_keeps_its_text(fmt: str) -> None:
    a = replace(real_alert(), host="h:3f9a\u2026 [pseudonym]")
    frame = format_alert(a, replace(OPTS, format=fmt))
    if fmt == "rfc5424":
        assert parse_5424(frame)["sd"]["port25@32473"]["host"] == a.host
    elif fmt == "cef":
        ext = parse_cef(body_of(frame))[1]
        assert "src" not in ext and ext["shost"] == a.host
    else:
        attrs = parse_leef(body_of(frame))[1]
        assert "src" not in attrs and attrs["srcHost"] == a.host
    doc = json.loads(body_of(format_alert(a, replace(OPTS, format="ecs"))))
    assert doc["source"] == {"address": a.host}  # source.ip is an ip field in Elasticsearch


def test_times_that_cannot_be_dates_are_the_nilvalue() -> None:
    a = replace(real_alert(), ts=float("nan"), first_seen=1e300, last_seen=float("-inf"))
    for fmt in FORMATS:
        frame = format_alert(a, replace(OPTS, format=fmt))
        check_frame(frame)
    p = parse_5424(format_alert(a, OPTS))
    assert p["time"] == "-" and p["sd"]["port25@32473"]["first_seen"] == "-"
    ext = parse_cef(body_of(format_alert(a, replace(OPTS, format="cef"))))[1]
    assert "rt" not in ext and "start" not in ext


# --- realistic alerts from the pipeline ---------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Alert], list[SmtpSession]]:
    """Alerts and sessions of the real pipeline on a simulated capture."""
    pcap = tmp_path_factory.mktemp("sim") / "compromised.pcap"
    simulate([load_scenario("compromised")], str(pcap), seed=2)
    alerts, _ = run_detection([str(pcap)], site_config(pcap.with_suffix(".truth.json")))
    sessions: list[SmtpSession] = []
    pipe = Pipeline(ports=DEFAULT_PORTS, on_session=sessions.append)
    pipe.run(open_files([str(pcap)], build_filter(DEFAULT_PORTS), pipe.capture_stats,
                        lambda p, r: None))  # fmt: skip
    pipe.finish()
    assert alerts and sessions
    return alerts, sessions


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_pipeline_alert_reads_back(
        pipeline_run: tuple[list[Alert], list[SmtpSession]], fmt: str) -> None:
    for a in pipeline_run[0]:
        check_alert(a, fmt, format_alert(a, replace(OPTS, format=fmt)))


def check_session(d: dict[str, Any], fmt: str, frame: bytes) -> None:
    """The key fields of a session read back from one format."""
    txns = d["transactions"]
    rcpts = [r["addr"] for t in txns for r in t["rcpt_to"]]
    subject = next((t["headers"]["subject"] for t in txns
                    if t["headers"] and t["headers"]["subject"]), None) or ""  # fmt: skip
    mail_from = next((t["mail_from"] for t in txns if t["mail_from"]), "")
    rcpt_text = ",".join(rcpts[:SESSION_LIST_MAX]) + (
        f",+{len(rcpts) - SESSION_LIST_MAX} more" if len(rcpts) > SESSION_LIST_MAX else "")
    if fmt == "rfc3164":
        p3 = parse_3164(frame)
        assert p3["pri"] == 16 * 8 + 6 and d["uid"] in p3["msg"]
        return
    p = parse_5424(frame)
    assert p["pri"] == 16 * 8 + 6 and p["msgid"] == "session" and p["time"] == iso(d["ts"])
    if fmt == "rfc5424":
        sd = p["sd"]["port25@32473"]
        assert sd["uid"] == d["uid"] and sd["client_ip"] == d["client_ip"]
        assert sd["server_port"] == str(d["server_port"]) and sd["helo"] == (d["helo"] or "")
        assert sd["rcpts"] == str(len(rcpts)) and sd["rcpt_to"] == rcpt_text
        assert sd["subject"] == subject and sd["mail_from"] == mail_from
        assert sd["transactions"] == str(len(txns))
        return
    body = p["msg"]
    if fmt == "json":
        doc = json.loads(body[3:])
        assert body.startswith(b"\xef\xbb\xbf")
        assert doc["uid"] == d["uid"] and doc["helo"] == d["helo"]
        assert len(doc["transactions"]) == min(len(txns), SESSION_LIST_MAX)
        return
    text = body.decode("utf-8")
    if fmt == "cef":
        head, ext = parse_cef(text)
        assert head[3:] == ["session", "smtp_session", "1"]
        labels = {ext[f"{k}Label"]: ext[k] for k in ext if f"{k}Label" in ext}
        assert ext["src"] == d["client_ip"] and ext["dpt"] == str(d["server_port"])
        assert labels["helo"] == (d["helo"] or "") and labels["subject"] == subject
        assert labels["rcpt_to"] == rcpt_text and ext["externalId"] == d["uid"]
    elif fmt == "leef":
        _, attrs = parse_leef(text)
        assert attrs["src"] == d["client_ip"] and attrs["dstPort"] == str(d["server_port"])
        assert attrs["helo"] == (d["helo"] or "") and attrs["subject"] == subject
        assert attrs["rcpt_to"] == rcpt_text and attrs["uid"] == d["uid"]
    else:
        doc = json.loads(text)
        assert doc["event"]["kind"] == "event" and doc["event"]["id"] == d["uid"]
        assert doc["source"] == {"ip": d["client_ip"], "port": d["client_port"]}
        assert doc["destination"]["port"] == d["server_port"]
        if subject:
            assert doc["email"]["subject"] == subject
        assert doc["port25"]["session"]["helo"] == d["helo"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_pipeline_session_reads_back(
        pipeline_run: tuple[list[Alert], list[SmtpSession]], fmt: str) -> None:
    for s in pipeline_run[1]:
        d = session_to_dict(s)
        check_session(d, fmt, format_session(d, replace(OPTS, format=fmt)))


HOSTILE_DIALOGUE = [
    (S, BANNER),
    (C, "EHLO \u00e9vil\u65e5.example\x1b]0;x\x07 \\\"]|=\t\r\n".encode()),
    (S, EHLO_REPLY),
    (C, b"MAIL FROM:<a\"]@x\\y>\r\n"),
    (S, b"250 ok\r\n"),
    *[(C, b"RCPT TO:<r%d@example.net>\r\n" % i) for i in range(40)],
    *[(S, b"250 ok\r\n") for _ in range(40)],
    (C, b"DATA\r\n"),
    (S, b"354 go\r\n"),
    (C, "Subject: =?utf-8?q?caf=C3=A9_=E2=80=A8_=0A_x?= r\u00e9sum\u00e9 \x01\r\n\r\nhi\r\n.\r\n"
        .encode()),
    (S, b"250 queued\r\n"),
]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_session_round_trips_and_long_lists_are_cut(fmt: str) -> None:
    d = session_to_dict(run(HOSTILE_DIALOGUE))
    d["helo"] = d["helo"] + HOSTILE
    assert len(d["transactions"][0]["rcpt_to"]) == 40 and "\u00e9" in d["helo"]
    frame = format_session(d, replace(OPTS, format=fmt))
    check_frame(frame)
    check_session(d, fmt, frame)
    if fmt == "json":
        doc = json.loads(parse_5424(frame)["msg"][3:])
        assert doc["truncated"] == {"commands": len(d["commands"]) - SESSION_LIST_MAX,
                                    "transactions[0].rcpt_to": 40 - SESSION_LIST_MAX}
        assert len(doc["transactions"][0]["rcpt_to"]) == SESSION_LIST_MAX


def test_basic_session_in_5424_exact_bytes() -> None:
    got = format_session(session_to_dict(run(BASIC)), OPTS)
    assert got == (
        b'<134>1 1970-01-01T00:01:40.000Z sensor1.example.net port25-sensor - session'
        b' [port25@32473 uid="CtEst1" client_ip="192.0.2.10" client_port="40000"'
        b' server_ip="198.51.100.25" server_port="25" duration_s="3.5" helo="client.example.org"'
        b' helo_kind="fqdn" tls="0" auth="" auth_user="" transactions="1" messages="1" rcpts="2"'
        b' mail_from="alice@example.org" rcpt_to="bob@example.net,nobody@example.net"'
        b' subject="Quarterly r\xc3\xa9sum\xc3\xa9" reply_codes="220:1,221:1,250:4,354:1,550:1"'
        b' anomalies="" bytes_from_client="1072" bytes_from_server="446"] SMTP session CtEst1'
        b" 192.0.2.10:40000 -> 198.51.100.25:25: 1 transactions, 1 messages, 2 recipients")


# --- properties ---------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
NUMBER = st.one_of(st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False, allow_infinity=False))  # fmt: skip


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    a = real_alert()
    feats = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,32}", fullmatch=True), NUMBER,
                                 max_size=5))  # fmt: skip
    feats = {k: v for k, v in feats.items() if k not in {
        "sid", "kind", "host", "severity", "score", "window", "source", "rule", "sensor",
        "first_seen", "last_seen", "sessions", "update", "cat", "sev", "src", "msg"}}
    evidence: dict[str, object] = {"features": feats,
                                   "sessions": draw(st.lists(ANY_TEXT, max_size=3))}
    if draw(st.booleans()):
        evidence["update"] = draw(ANY_TEXT)
    return replace(a, summary=draw(ANY_TEXT), host=draw(ANY_TEXT), rule=draw(ANY_TEXT),
                   sensor=draw(ANY_TEXT), severity=draw(st.integers(-5, 15)),
                   score=draw(st.floats(0, 1)), evidence=evidence)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(alerts(), st.sampled_from(FORMATS))
def test_any_text_makes_one_frame_that_reads_back(a: Alert, fmt: str) -> None:
    frame = format_alert(a, replace(OPTS, format=fmt))
    check_alert(a, fmt, frame)


def _is_address(s: str) -> bool:
    from ipaddress import ip_address

    try:
        ip_address(s)
    except ValueError:
        return False
    return True


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT, ANY_TEXT, ANY_TEXT, st.lists(ANY_TEXT, max_size=20), st.sampled_from(FORMATS))
def test_any_session_text_makes_one_frame_that_reads_back(
        helo: str, subject: str, sender: str, rcpts: list[str], fmt: str) -> None:
    d = session_to_dict(run(BASIC))
    d["helo"] = helo
    t = d["transactions"][0]
    t["headers"]["subject"] = subject or None
    t["mail_from"] = sender or None
    t["rcpt_to"] = [dict(t["rcpt_to"][0], addr=r) for r in rcpts]
    frame = format_session(d, replace(OPTS, format=fmt))
    check_frame(frame)
    check_session(d, fmt, frame)


# --- docs/siem.md -------------------------------------------------------------------------------

DOC_FORMATS = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")


def doc_examples() -> dict[str, str]:
    """The example line under each '### `format`' heading of docs/siem.md's Formats section."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for m in re.finditer(r"^#### `(\w+)`\n(?:.*\n)*?```text\n(.*)\n```", text, re.M):
        out[m[1]] = m[2]
    return out


def test_docs_examples_are_what_the_code_writes() -> None:
    examples = doc_examples()
    assert sorted(examples) == sorted(DOC_FORMATS)
    a = real_alert()
    for fmt in DOC_FORMATS:
        want = format_alert(a, replace(OPTS, format=fmt)).decode("utf-8")
        want = want.replace("\ufeff", "<BOM>").replace("\t", "<TAB>")
        assert examples[fmt] == want, f"docs/siem.md {fmt} example should be:\n{want}"
