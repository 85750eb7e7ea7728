"""Stream handlers: the compiled SMTP parser is a StreamSink, called through the compiled method
table; a handler of any other class is wrapped and called through Python. Both see the same
streams."""

from __future__ import annotations

from pathlib import Path

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord, SmtpSession
from sensor.smtp.parser import SmtpParser
from sensor.tcp.reassembler import StreamHandler
from sensor.tcp.stream import StreamSink


class _Delegate:
    """A plain Python handler (not a StreamSink) passing everything on to `inner`."""

    def __init__(self, inner: StreamHandler) -> None:
        self.inner = inner
        self.calls = 0

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        self.calls += 1
        self.inner.data(to_server, ts, payload)

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        self.calls += 1
        self.inner.gap(to_server, ts, n)

    def close(self, ts: float, record: ConnRecord) -> None:
        self.calls += 1
        self.inner.close(ts, record)


def _sessions(path: Path, wrap: bool) -> tuple[list[SmtpSession], list[_Delegate]]:
    """The sessions of `path`: the parsers fed natively, or each behind a _Delegate."""
    sessions: list[SmtpSession] = []
    delegates: list[_Delegate] = []

    def wrapped(
        uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
    ) -> StreamHandler | None:
        inner = pipe._new_handler(uid, ts, cip, cport, sip, sport, midstream)
        if inner is None:
            return None
        delegates.append(_Delegate(inner))
        return delegates[-1]

    pipe = Pipeline(on_session=sessions.append, handlers=wrapped if wrap else None)
    pipe.run(open_files([str(path)], build_filter([25]), pipe.capture_stats, lambda p, r: None))
    pipe.finish()
    return sessions, delegates


def test_parser_is_a_sink_and_a_wrapped_handler_gets_the_same_sessions(zeek_traces: Path) -> None:
    parser = Pipeline()._new_handler("C1", 0.0, "192.0.2.1", 40000, "192.0.2.2", 25, False)
    assert isinstance(parser, SmtpParser) and isinstance(parser, StreamSink)
    for name in ("smtp.pcap", "smtp/smtp-bdat-gap.pcap", "smtp-one-side-only.pcap"):
        native, _ = _sessions(zeek_traces / name, wrap=False)
        through_python, delegates = _sessions(zeek_traces / name, wrap=True)
        assert native and through_python == native, name
        assert delegates and all(d.calls for d in delegates), name
