"""Fuzz targets: one function per stage that takes arbitrary bytes and must never raise.

Each ``fuzz_<target>`` drives the real library code. They run under atheris (coverage guided,
scripts/fuzz.py) and, for every input saved under tests/data/fuzz/<target>/, as regression tests
(tests/fuzz/test_regressions.py). An exception out of a target is a bug: hostile bytes must
come out as counters and anomalies, never as an exception.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable
from dataclasses import replace

from smtp.dialogues import BASIC, conn_record, run

from sensor.capture.common import CaptureStats
from sensor.capture.pcapfile import read_pcap
from sensor.capture.pcapng import read_pcapng
from sensor.config import parse_config
from sensor.decode.packet import Decoder
from sensor.errors import ConfigError
from sensor.output.jsonl import conn_to_dict, to_json_line
from sensor.output.readers import (
    BadLines,
    ReadStats,
    merge_logs,
    read_stream,
    record_from_line,
)
from sensor.pipeline import Pipeline
from sensor.records import Alert, ConnRecord, SmtpSession
from sensor.sinks.formats import FORMATS, FormatOptions, format_alert, format_session
from sensor.smtp import SmtpLimits, SmtpParser
from sensor.smtp.message import analyze_message, walk_message
from sensor.smtp.schema import session_to_dict

LINKTYPES = (0, 1, 101, 108, 113, 228, 229, 276, 12, 14)  # null, ether, raw, loop, sll, ipv4...
SMALL = SmtpLimits(max_line=256, max_rcpts_per_txn=8, max_pending_cmds=8, max_txns_per_session=4,
                   max_header_bytes=512, max_mime_bytes=4096, max_auth_attempts=4,
                   max_commands=64, max_reply_lines=8, max_mime_parts=16, max_mime_depth=4,
                   max_mime_headers=16, max_mime_params=8, max_encoded_words=8)  # fmt: skip


class Reader:
    """Takes typed values off the front of the fuzz input (atheris' FuzzedDataProvider, kept
    dependency-free so that the regression tests need no fuzzer)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def int(self, nbytes: int) -> int:
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return int.from_bytes(chunk.ljust(nbytes, b"\0"), "big")

    def bytes(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def fuzz_pcap(data: bytes) -> None:
    """The classic pcap reader on any file content."""
    for _frame in read_pcap(io.BytesIO(data), CaptureStats(), chunk_bytes=64):
        pass


def fuzz_pcapng(data: bytes) -> None:
    """The pcapng reader on any file content."""
    for _frame in read_pcapng(io.BytesIO(data), CaptureStats(), chunk_bytes=64):
        pass


def fuzz_decode(data: bytes) -> None:
    """The frame decoder on any frame of any supported link type."""
    if not data:
        return
    Decoder(CaptureStats()).decode(LINKTYPES[data[0] % len(LINKTYPES)], data[1:])


def _frame(src: int, dst: int, sport: int, dport: int, seq: int, ack: int, flags: int,
           payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, src]), bytes([192, 0, 2, dst]))  # fmt: skip
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + tcp + payload


def fuzz_pipeline(data: bytes) -> None:
    """Reassembly and SMTP parsing of segments the input describes: few endpoints, so that
    segments meet in the same connections, with any flags, sequence numbers and payloads."""
    r = Reader(data)
    frames: list[tuple[float, int, bytes]] = []
    ts = 1000.0
    base = r.int(4)
    while r.left() > 0 and len(frames) < 200:
        head = r.int(2)
        to_server = bool(head & 1)
        cport = 40000 + (head >> 1 & 3)
        flags = r.int(1)
        seq = (base + r.int(2) - 256) & 0xFFFFFFFF
        ack = (base + r.int(2) - 256) & 0xFFFFFFFF
        payload = r.bytes(r.int(1) % 64)
        ts += (head >> 3 & 0xFF) / 10.0
        if to_server:
            frames.append((ts, 1, _frame(1, 2, cport, 25, seq, ack, flags, payload)))
        else:
            frames.append((ts, 1, _frame(2, 1, 25, cport, seq, ack, flags, payload)))
    sessions: list[SmtpSession] = []
    conns: list[ConnRecord] = []
    pipe = Pipeline(on_session=sessions.append, on_conn=conns.append, smtp_limits=SMALL)
    pipe.run(frames)
    pipe.finish()
    assert len(sessions) <= len(conns)


def fuzz_smtp(data: bytes) -> None:
    """The SMTP parser fed both directions in any order and chunking, with gaps."""
    r = Reader(data)
    out: list[SmtpSession] = []
    p = SmtpParser("Cfuzz", 1.0, "192.0.2.10", 40000, "198.51.100.25", 25, out.append, SMALL)
    ts = 1.0
    while r.left() > 0:
        op = r.int(1)
        ts += 0.01
        n = r.int(1)
        if op & 0x0F == 0:
            p.gap(bool(op & 0x10), ts, n + 1)
        else:
            p.data(bool(op & 0x10), ts, r.bytes(n))
    p.close(ts, conn_record())
    assert len(out) == 1


def fuzz_mime(data: bytes) -> None:
    """Header extraction and the MIME walk on any message copy, whole or cut."""
    cut = bool(data[:1]) and data[0] & 1 == 1
    info = analyze_message(data, cut, SMALL)
    assert info.mime_parts <= SMALL.max_mime_parts and info.error is None
    walked = walk_message(data, cut, SMALL)
    assert walked.mime_parts <= SMALL.max_mime_parts


def fuzz_config(data: bytes) -> None:
    """The configuration loader: any text is a Config or a ConfigError, nothing else."""
    with contextlib.suppress(ConfigError):
        parse_config(data.decode("utf-8", "replace"), "fuzz.toml")


_MODEL: list[bytes] = []  # a small valid model archive, made once per process


def _small_model() -> bytes:
    if not _MODEL:
        import random
        import tempfile

        from sensor.detect import model as host_model

        rng = random.Random(1)
        n = len(host_model.MODEL_FEATURES)
        rows = []
        for i in range(120):
            row = [float(rng.randrange(4)) for _ in range(n - 4)] + [0.0] * 4
            row[n - 4 + i % 4] = 1.0
            rows.append(row)
        data = host_model.TrainingSet(rows, {"outside": 30}, ["fuzz"], (0.0, 1.0), "fuzz")
        m = host_model.fit(data, detector="tail-per-role", seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/m.skops"
            host_model.save(m, path)
            with open(path, "rb") as fh:
                _MODEL.append(fh.read())
    return _MODEL[0]


def fuzz_model(data: bytes) -> None:
    """Model loading: a valid archive with one member's bytes changed (and its checksum made
    right, so the change reaches skops and our checks), or raw bytes; a model or ModelError."""
    import tempfile
    import zipfile

    from sensor.detect.model import load
    from sensor.errors import ModelError

    r = Reader(data)
    mode = r.int(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/fuzz.skops"
        if mode < 16:
            with open(path, "wb") as fh:
                fh.write(r.bytes(r.left()))
        else:
            src = zipfile.ZipFile(io.BytesIO(_small_model()))
            names = src.namelist()
            target = names[r.int(2) % len(names)] if mode < 128 else "schema.json"
            with zipfile.ZipFile(path, "w") as out:
                for name in names:
                    body = src.read(name)
                    if name == target:
                        at = r.int(3) % (len(body) + 1)
                        cut = r.int(1) % 8
                        body = body[:at] + r.bytes(r.int(1) % 64) + body[at + cut:]
                    out.writestr(name, body)
        with contextlib.suppress(ModelError):
            load(path)
def fuzz_records(data: bytes) -> None:
    """A session/connection log (one line, or many, or gzip) read back, as `train --from-sessions`
    reads it: every line is a record or a counted bad line, nothing raises, and every record
    read is written and read again unchanged."""
    stats = ReadStats()
    recs = list(read_stream(io.BytesIO(data), stats, BadLines(), max_line=4096))
    for rec in recs:
        d = conn_to_dict(rec) if isinstance(rec, ConnRecord) else session_to_dict(rec)
        again = record_from_line(to_json_line(d))
        if again != rec:
            raise AssertionError(f"read back differently: {rec!r} != {again!r}")
    merged = list(merge_logs([recs, list(reversed(recs))], stats))
    if len(merged) != 2 * len(recs):
        raise AssertionError(f"{len(merged)} records out of the merge of twice {len(recs)}")


_SESSION: list[dict[str, object]] = []  # a real session dict, made once per process


def _fuzz_text(r: Reader) -> str:
    """A string of up to 63 bytes of the input, as the sensor reads attacker bytes (UTF-8 with
    surrogate escapes for what is not), so lone surrogates and every control byte appear."""
    return r.bytes(r.int(1) % 64).decode("utf-8", "surrogateescape")


def _check_frame(frame: bytes, fmt: str, header: str) -> None:
    if b"\n" in frame or b"\r" in frame or b"\0" in frame:
        raise AssertionError(f"{fmt}/{header}: LF, CR or NUL in {frame!r}")
    text = frame.decode("utf-8")  # raises on anything but valid UTF-8
    if header == "rfc3164":
        head = text.split(":", 1)[0]
        if not head.isascii() or not head.startswith("<"):
            raise AssertionError(f"{fmt}/{header}: header {head!r}")
        return
    fields = text.split(" ", 7)
    if len(fields) < 7 or fields[0][:1] != "<" or not all(
            f and f.isascii() and f.isprintable() and " " not in f for f in fields[:6]):
        raise AssertionError(f"{fmt}/{header}: header {fields[:7]!r}")
    if fmt == "json" and not fields[7].startswith("\ufeff{"):
        raise AssertionError(f"json body without BOM: {fields[7][:20]!r}")


def fuzz_formats(data: bytes) -> None:
    """Every syslog format of an alert and of a session whose strings come from the input
    (control bytes, surrogates, any length): one frame each, valid UTF-8, a clean header."""
    if not _SESSION:
        _SESSION.append(session_to_dict(run(BASIC)))
    r = Reader(data)
    flags = r.int(1)
    ts = (r.int(8) - (1 << 63)) / 1000.0 if flags & 1 else float(r.int(4))
    feats: dict[str, object] = {_fuzz_text(r): r.int(2) - 32768 for _ in range(r.int(1) % 4)}
    alert = Alert(ts=ts, time="", sensor=_fuzz_text(r), host=_fuzz_text(r), kind=_fuzz_text(r),
                  severity=r.int(1) - 128, sid=r.int(3), rule=_fuzz_text(r),
                  score=r.int(2) / 1000.0, source=_fuzz_text(r), window_s=float(r.int(2)),
                  summary=_fuzz_text(r),
                  evidence={"features": feats, "sessions": [_fuzz_text(r)],
                            "update": _fuzz_text(r)},
                  first_seen=ts - r.int(2), last_seen=ts)  # fmt: skip
    session = dict(_SESSION[0])
    txn = dict(session["transactions"][0])  # type: ignore[index]
    txn["headers"] = {**txn["headers"], "subject": _fuzz_text(r)}
    txn["mail_from"] = _fuzz_text(r)
    txn["rcpt_to"] = [{**txn["rcpt_to"][0], "addr": _fuzz_text(r)} for _ in range(r.int(1) % 40)]
    session.update(helo=_fuzz_text(r), uid=_fuzz_text(r), client_ip=_fuzz_text(r), ts=ts,
                   transactions=[txn] * (1 + flags % 20))  # fmt: skip
    opts = FormatOptions(hostname=_fuzz_text(r), app_name=_fuzz_text(r), procid=_fuzz_text(r),
                         sd_id=_fuzz_text(r), facility=r.int(1) - 100)  # fmt: skip
    for fmt in FORMATS:
        for header in ("rfc5424", "rfc3164"):
            o = replace(opts, format=fmt, header=header)
            _check_frame(format_alert(alert, o), fmt, header)
            _check_frame(format_session(session, o), fmt, header)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pcap": fuzz_pcap, "pcapng": fuzz_pcapng, "decode": fuzz_decode, "pipeline": fuzz_pipeline,
    "smtp": fuzz_smtp, "mime": fuzz_mime, "config": fuzz_config, "model": fuzz_model,
    "records": fuzz_records, "formats": fuzz_formats,
}  # fmt: skip
