"""Session and connection logs read back: exact records, bad lines counted, the detector's order."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.detect.alerts import alert_to_dict
from sensor.detect.detector import Detector
from sensor.errors import RecordError
from sensor.output.jsonl import conn_to_dict, to_json_line
from sensor.output.readers import (
    MAX_FILE_ERRORS,
    ReadStats,
    conn_from_dict,
    iter_logged_records,
    merge_logs,
    record_from_line,
)
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord, SmtpSession
from sensor.simulate import load_scenario, simulate
from sensor.smtp.schema import session_to_dict
from sensor.tcp.reassembler import TcpLimits

from .record_strategies import conns

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "data" / "public" / "zeek" / "traces"
Logged = ConnRecord | SmtpSession


def line_of(rec: Logged) -> bytes:
    """The line `sensor analyze --conns/--sessions` writes for a record."""
    return to_json_line(conn_to_dict(rec) if isinstance(rec, ConnRecord) else session_to_dict(rec))


def write_log(path: Path, recs: Iterable[Logged], gz: bool = False) -> Path:
    data = b"".join(line_of(r) for r in recs)
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def read_all(*paths: Path, max_line: int | None = None) -> tuple[list[Logged], ReadStats,
                                                                 list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    stats = ReadStats()
    kw = {} if max_line is None else {"max_line": max_line}
    recs = list(iter_logged_records([str(p) for p in paths],
                                    lambda p, m: errors.append((p, m)), stats, **kw))
    return recs, stats, errors


def pipeline_records(paths: list[Path], ports: tuple[int, ...] = (25, 587)) -> list[Logged]:
    """Every record of the real pipeline over captures, in the order it emits them."""
    out: list[Logged] = []
    pipe = Pipeline(ports=ports, on_conn=out.append, on_session=out.append)
    errors: list[str] = []
    pipe.run(open_files([str(p) for p in paths], build_filter(ports), pipe.capture_stats,
                        lambda p, r: errors.append(r)))  # fmt: skip
    pipe.finish()
    assert errors == []
    return out


# --------------------------------------------------------------------------------------------
# one record


@settings(max_examples=300, deadline=None)
@given(conns)
def test_any_connection_record_survives_its_json_line(rec: ConnRecord) -> None:
    assert conn_from_dict(conn_to_dict(rec)) == rec
    assert record_from_line(line_of(rec)) == rec


def test_every_record_of_the_public_captures_reads_back_exactly() -> None:
    traces = sorted(p for p in TRACES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
    assert len(traces) > 10
    recs = [r for t in traces for r in pipeline_records([t])]
    assert sum(isinstance(r, SmtpSession) for r in recs) > 10
    for rec in recs:
        again = record_from_line(line_of(rec))
        assert again == rec and repr(again) == repr(rec)  # anomaly names as Anomaly members


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten minutes of the site-500 scenario (attacks of several kinds among benign hosts)."""
    pcap = tmp_path_factory.mktemp("sim") / "site.pcap"
    simulate([load_scenario("site-500")], str(pcap), seed=2, duration_s=900)
    return pcap


def test_every_record_of_a_simulated_capture_reads_back_exactly(simulated: Path) -> None:
    recs = pipeline_records([simulated])
    assert len(recs) > 5000
    assert [record_from_line(line_of(r)) for r in recs] == recs


@pytest.mark.parametrize(("line", "message"), [
    (b"", "not a JSON line"),
    (b"{\"ts\": 1", "not a JSON line"),
    (b"[1, 2]", "expected a JSON object, got a list"),
    (b"\"text\"", "expected a JSON object, got 'text'"),
    (b"{\"ts\": 1.0}", "neither a session record"),
    (b"\xff{}", "not UTF-8 text (byte 0)"),
    (b"[" * 100_000, "not a JSON line (nested too deeply)"),
    (b"{\"history\": \"S\", \"end_reason\": \"fin\"}", "uid: missing"),
])  # fmt: skip
def test_a_line_that_is_no_record_says_why(line: bytes, message: str) -> None:
    with pytest.raises(RecordError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        record_from_line(line)


def test_a_connection_field_of_the_wrong_type_is_named() -> None:
    d = conn_to_dict(pipeline_records([TRACES / "smtp.pcap"])[0])  # type: ignore[arg-type]
    d["rtt_s"] = "0.1"
    with pytest.raises(RecordError, match=r"^rtt_s: expected a number, got '0\.1'$"):
        conn_from_dict(d)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.sampled_from([b'{"schema":"smtp_session/1"}', b"{}"]))
def test_any_bytes_are_a_record_or_a_record_error(data: bytes) -> None:
    with contextlib.suppress(RecordError):
        record_from_line(data)


# --------------------------------------------------------------------------------------------
# files


def test_logs_of_one_run_come_back_in_the_order_the_detector_saw(tmp_path: Path) -> None:
    recs = pipeline_records(sorted(TRACES.glob("smtp*.pcap")))
    c = write_log(tmp_path / "c.jsonl", [r for r in recs if isinstance(r, ConnRecord)])
    s = write_log(tmp_path / "s.jsonl.gz", [r for r in recs if isinstance(r, SmtpSession)],
                  gz=True)  # fmt: skip
    for order in ((s, c), (c, s)):
        got, stats, errors = read_all(*order)
        assert got == recs and errors == []
        assert stats.sessions_paired == stats.sessions > 0 and stats.bad_lines == 0


def test_logs_of_different_runs_are_merged_by_close_time(tmp_path: Path) -> None:
    early = [r for r in pipeline_records([TRACES / "smtp.pcap"])]
    late = [r for r in pipeline_records([TRACES / "smtp-multi-addr.pcap"])]
    assert max(r.ts + r.duration_s for r in early) < min(r.ts + r.duration_s for r in late)
    paths = [write_log(tmp_path / "late-c", [r for r in late if isinstance(r, ConnRecord)]),
             write_log(tmp_path / "late-s", [r for r in late if isinstance(r, SmtpSession)]),
             write_log(tmp_path / "early-s", [r for r in early if isinstance(r, SmtpSession)]),
             write_log(tmp_path / "early-c", [r for r in early if isinstance(r, ConnRecord)])]
    got, _, _ = read_all(*paths)
    assert got == early + late


def test_a_session_whose_connection_record_was_lost_still_comes(tmp_path: Path) -> None:
    recs = pipeline_records(sorted(TRACES.glob("smtp*.pcap")))
    lost = next(r.uid for r in recs if isinstance(r, SmtpSession))
    conn_lines = [line_of(r) for r in recs if isinstance(r, ConnRecord)]
    c = tmp_path / "c.jsonl"
    c.write_bytes(b"".join(b"{}\n" if b'"uid":"%s"' % lost.encode() in x else x
                           for x in conn_lines))  # fmt: skip
    s = write_log(tmp_path / "s.jsonl", [r for r in recs if isinstance(r, SmtpSession)])
    got, stats, errors = read_all(s, c)
    want = [r for r in recs if not (isinstance(r, ConnRecord) and r.uid == lost)]
    assert len(got) == len(want) and all(r in want for r in got) and len(errors) == 1
    assert stats.sessions_unpaired == 1 and stats.sessions_paired == stats.sessions - 1
    assert [r for r in got if r.uid != lost] == [r for r in want if r.uid != lost]


def test_sessions_held_back_are_bounded(tmp_path: Path) -> None:
    recs = pipeline_records(sorted(TRACES.glob("smtp*.pcap")))
    conns_ = [r for r in recs if isinstance(r, ConnRecord)]
    sessions_ = [r for r in recs if isinstance(r, SmtpSession)]
    # every session is held back until the connection records come, all at the end
    late = [replace(c, ts=c.ts + 1e10) for c in conns_]
    stats = ReadStats()
    patient = TcpLimits(idle_timeout_s=1e11)  # no session's record is too late to come
    got = list(merge_logs([sessions_, late], stats, patient, max_pending=2))
    assert len(got) == len(recs) and stats.pending_peak == 3
    assert stats.pending_overflow == len(sessions_) - 2 == stats.sessions_unpaired
    assert got[-4:] == [late[-2], sessions_[-2], late[-1], sessions_[-1]]


def test_the_same_records_in_two_streams_all_come_out() -> None:
    recs = pipeline_records(sorted(TRACES.glob("smtp*.pcap")))
    stats = ReadStats()
    got = list(merge_logs([recs, list(reversed(recs)), recs], stats))
    assert len(got) == 3 * len(recs) and stats.sessions_paired == stats.sessions
    assert got[:2] == recs[:2] and got[-2:] == recs[-2:]


def test_logs_of_successive_runs_are_opened_one_after_the_other(tmp_path: Path) -> None:
    recs = pipeline_records([TRACES / "smtp.pcap"])
    runs = [[replace(r, ts=r.ts + 1e9 * i, uid=f"{r.uid}-{i}") for r in recs] for i in range(60)]
    paths = []
    for i, run in enumerate(runs):  # the logs of each run, newest first
        paths.append(write_log(tmp_path / f"c{i}", [r for r in run if isinstance(r, ConnRecord)]))
        paths.append(write_log(tmp_path / f"s{i}", [r for r in run if isinstance(r, SmtpSession)]))
    paths.reverse()
    fds = Path("/proc/self/fd")
    before = len(list(fds.iterdir()))
    most = 0
    got = []
    for rec in iter_logged_records(str(p) for p in paths):
        got.append(rec)
        most = max(most, len(list(fds.iterdir())) - before)
    assert got == [r for run in runs for r in run]
    assert most <= 2  # the two logs of one run at a time, not 120 files


def test_sessions_without_their_connection_log_keep_their_order(tmp_path: Path) -> None:
    recs = [r for r in pipeline_records(sorted(TRACES.glob("smtp*.pcap")))
            if isinstance(r, SmtpSession)]
    got, stats, _ = read_all(write_log(tmp_path / "s", recs))
    assert got == recs and stats.sessions_paired == 0 and stats.conns == 0


def test_bad_lines_are_counted_skipped_and_reported_once_per_file(tmp_path: Path) -> None:
    recs = pipeline_records([TRACES / "smtp.pcap"])
    good = b"".join(line_of(r) for r in recs)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"not json\n" + good + b"\n[]\n" + line_of(recs[0]).replace(b'"uid"', b'"u"')
                    + line_of(recs[-1])[:40])  # fmt: skip
    got, stats, errors = read_all(bad)
    assert got == recs
    assert stats.bad_lines == 4 and stats.truncated_lines == 1 and stats.files_with_bad_lines == 1
    assert errors == [(str(bad), "line 1: not a JSON line (Expecting value: line 1 column 1 "
                                 "(char 0)); 4 bad lines in all")]  # fmt: skip


def test_truncated_files_and_unreadable_ones(tmp_path: Path) -> None:
    recs = pipeline_records([TRACES / "smtp.pcap"])
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(line_of(r) for r in recs)[:-10])
    cut_gz = write_log(tmp_path / "cut.jsonl.gz", recs, gz=True)
    cut_gz.write_bytes(cut_gz.read_bytes()[:-30])
    garbled_gz = tmp_path / "garbled.gz"
    garbled_gz.write_bytes(b"\x1f\x8b" + bytes(100))
    missing = tmp_path / "missing.jsonl"
    for path in (cut, cut_gz):
        assert read_all(path)[0] == recs[:-1]
    got, stats, errors = read_all(cut, cut_gz, garbled_gz, missing)
    assert len(got) == 2 * (len(recs) - 1)
    assert stats.truncated_lines == 2 and stats.files_failed == 2
    assert sorted((Path(p).name, m.split(":")[0]) for p, m in errors) == [
        ("cut.jsonl", f"line {len(recs)}"), ("cut.jsonl.gz", f"line {len(recs)}"),
        ("garbled.gz", "unreadable after line 0"), ("missing.jsonl", "cannot open")]
    said = dict((Path(p).name, m) for p, m in errors)
    assert "truncated final line" in said["cut.jsonl"]
    assert "gzip stream cut short" in said["cut.jsonl.gz"]


def test_an_overlong_line_is_skipped_without_reading_it_whole(tmp_path: Path) -> None:
    recs = pipeline_records([TRACES / "smtp.pcap"])
    log = tmp_path / "long.jsonl"
    assert max(len(line_of(r)) for r in recs[:2]) < 5000
    log.write_bytes(line_of(recs[0]) + b"x" * 50_000 + b"\n\n  \n" + line_of(recs[1]))
    got, stats, errors = read_all(log, max_line=5000)
    assert got == recs[:2] and stats.bad_lines == 1
    assert errors == [(str(log), "line 2: line longer than 5000 bytes")]


def test_error_messages_are_capped(tmp_path: Path) -> None:
    paths = []
    for i in range(MAX_FILE_ERRORS + 5):
        paths.append(tmp_path / f"{i}.jsonl")
        paths[-1].write_bytes(b"{}\n")
    _, stats, errors = read_all(*paths)
    assert stats.bad_lines == len(paths) and len(errors) == MAX_FILE_ERRORS + 1
    assert errors[-1] == (str(paths[MAX_FILE_ERRORS]), "and 4 more files with bad lines or "
                                                       "errors (not listed)")  # fmt: skip


# --------------------------------------------------------------------------------------------
# what matters: the detector gives the same alerts from the logs as from the capture


def sensor(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "sensor", *args], capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_alerts_from_the_logs_equal_the_alerts_of_the_analysis(
    simulated: Path, tmp_path: Path, workers: str
) -> None:
    s, c, a = tmp_path / "s.jsonl", tmp_path / "c.jsonl", tmp_path / "a.jsonl"
    sensor("analyze", str(simulated), "--sessions", str(s), "--conns", str(c), "--alerts",
           str(a), "--workers", workers, "-q", "--no-model")
    want = a.read_bytes().splitlines(keepends=True)
    assert len({json.loads(x)["kind"] for x in want}) >= 5  # spambot, spam_source, harvest, ...
    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(gzip.compress(s.read_bytes()))
    for logs in ((s, c), (c, gz)):
        stats = ReadStats()
        got, errors = replay(logs, stats)
        assert errors == []
        assert got == want  # every alert and update, byte for byte: hosts, kinds, rules, ts
        assert stats.sessions_paired == stats.sessions > 5000 and stats.sessions_unpaired == 0
        assert stats.pending_peak < stats.sessions / 20  # read as it goes, not all at once


def replay(logs: Iterable[Path], stats: ReadStats) -> tuple[list[bytes], list[tuple[str, str]]]:
    """The alert lines of the detector fed from logs, and the reader's error lines."""
    got: list[bytes] = []
    det = Detector(load_config(None), lambda al: got.append(to_json_line(alert_to_dict(al))))
    errors: list[tuple[str, str]] = []
    for rec in iter_logged_records([str(p) for p in logs], lambda p, m: errors.append((p, m)),
                                   stats):
        if isinstance(rec, ConnRecord):
            det.on_conn(rec)
        else:
            det.on_session(rec)
    det.finish()
    return got, errors
