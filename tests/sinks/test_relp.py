"""RELP: frames in any split, the window, serverclose and resending, and zero loss over an
rsyslog restart in the middle of a stream."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.sinks.relp import (
    MAX_DATALEN,
    MAX_HEADER,
    WINDOW,
    RelpParser,
    RelpProtocolError,
    encode_frame,
    parse_offers,
)
from sensor.sinks.syslog import SyslogSink, parse_sink_url

from .collectors import Rsyslog, free_port, rfc5424, seqs
from .test_syslog import stream_with_restart

Start = Callable[..., Rsyslog]

frames_st = st.lists(st.tuples(st.integers(0, 999_999_999),
                               st.sampled_from([b"rsp", b"syslog", b"serverclose", b"open"]),
                               st.binary(max_size=300)), max_size=20)


@given(frames_st, st.lists(st.integers(1, 50), max_size=40))
def test_any_split_gives_the_same_frames(frames: list[tuple[int, bytes, bytes]],
                                         cuts: list[int]) -> None:
    stream = b"".join(encode_frame(*f) for f in frames)
    parser = RelpParser()
    got = []
    pos = 0
    for size in [*cuts, len(stream)]:
        got += parser.feed(stream[pos:pos + size])
        pos += size
    assert got == frames
    assert parser.buffer == b""


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=20))
def test_garbage_only_raises_protocol_errors(data: bytes, cuts: list[int]) -> None:
    parser = RelpParser()
    pos = 0
    try:
        for size in [*cuts, len(data)]:
            parser.feed(data[pos:pos + size])
            pos += size
            # a partial header never grows past the header limit, a partial frame past its
            # declared length
            assert len(parser.buffer) <= MAX_HEADER + MAX_DATALEN + 1
    except RelpProtocolError:
        pass


@pytest.mark.parametrize("bad", [b"x rsp 0\n", b"1 rsp 2 abc\n", b"1 rsp 0 \n",
                                 b"1 rsp 999999999 x", b"1 r$p 1 x\n", b"1234567890 rsp 0\n"])
def test_bad_frames(bad: bytes) -> None:
    with pytest.raises(RelpProtocolError):
        RelpParser().feed(bad)


def test_offers() -> None:
    data = b"relp_version=0\nrelp_software=librelp,1.11.0,http://x\ncommands=syslog\n"
    assert parse_offers(data)[b"commands"] == [b"syslog"]
    assert parse_offers(data)[b"relp_software"][0] == b"librelp"


class RelpServer:
    """A small RELP server on a real socket that acks on request, for window and resend
    tests (rsyslog cannot be told to hold its acks)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.parser = RelpParser()
        self.received: list[tuple[int, bytes]] = []  # (txnr, message) of "syslog" commands

    def accept(self) -> None:
        self.listener.settimeout(10)
        self.conn, _ = self.listener.accept()
        self.parser = RelpParser()
        txnr, command, _ = self.read_frames(1)[0]
        assert command == b"open"
        offers = b"200 OK\nrelp_version=0\nrelp_software=test\ncommands=syslog"
        self.conn.sendall(encode_frame(txnr, b"rsp", offers))

    def read_frames(self, count: int, timeout: float = 10.0) -> list[tuple[int, bytes, bytes]]:
        assert self.conn is not None
        got: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        self.conn.settimeout(0.2)
        while len(got) < count and time.monotonic() < deadline:
            try:
                data = self.conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            got += self.parser.feed(data)
        for txnr, command, data in got:
            if command == b"syslog":
                self.received.append((txnr, data))
        return got

    def ack(self, txnrs: list[int]) -> None:
        assert self.conn is not None
        self.conn.sendall(b"".join(encode_frame(t, b"rsp", b"200 OK") for t in txnrs))


def test_window_serverclose_and_resend() -> None:
    server = RelpServer()
    warnings: list[str] = []
    sink = SyslogSink(parse_sink_url(f"relp://127.0.0.1:{server.port}?flush_timeout=10"),
                      warnings.append)
    sink.start()
    for seq in range(WINDOW + 50):
        sink.send(rfc5424(seq))
    server.accept()
    first = server.read_frames(WINDOW, timeout=5)
    assert len(first) == WINDOW  # the window: nothing more until acks come
    assert server.read_frames(1, timeout=0.5) == []
    txnrs = [t for t, _, _ in first]
    assert txnrs == list(range(2, 2 + WINDOW))  # "open" was 1
    server.ack(txnrs[:100])
    second = server.read_frames(50)
    assert len(second) == 50
    # the server acks ten more, then closes the session: the other 68 are sent again
    assert server.conn is not None
    server.conn.sendall(b"".join(encode_frame(t, b"rsp", b"200 OK") for t in txnrs[100:110])
                        + encode_frame(0, b"serverclose"))
    server.conn.close()
    server.accept()
    again = server.read_frames(68)
    resent = [rfc5424(seq) for seq in range(110, WINDOW + 50)]
    assert [d for _, _, d in again] == resent
    server.ack([t for t, _, _ in again])
    closing = threading.Thread(target=sink.close)
    closing.start()
    frames = server.read_frames(1)
    assert frames[0][1] == b"close"
    server.ack([frames[0][0]])
    closing.join(10)
    stats = sink.stats
    assert (stats.sent, stats.resent, stats.reconnects, stats.dropped_undeliverable) == (
        WINDOW + 50, 68, 1, 0)
    assert any("sent again" in w for w in warnings)


def test_refused_messages_are_counted() -> None:
    server = RelpServer()
    sink = SyslogSink(parse_sink_url(f"relp://127.0.0.1:{server.port}?flush_timeout=2"))
    sink.start()
    for seq in range(3):
        sink.send(rfc5424(seq))
    server.accept()
    frames = server.read_frames(3)
    assert server.conn is not None
    server.conn.sendall(encode_frame(frames[0][0], b"rsp", b"200 OK")
                        + encode_frame(frames[1][0], b"rsp", b"500 no space")
                        + encode_frame(frames[2][0], b"rsp", b"200 OK"))
    closing = threading.Thread(target=sink.close)
    closing.start()
    close = server.read_frames(1)
    server.ack([close[0][0]])
    closing.join(10)
    assert (sink.stats.sent, sink.stats.dropped_undeliverable) == (2, 1)


@pytest.mark.parametrize("burst", [False, True], ids=["paced", "burst"])
def test_zero_loss_over_an_rsyslog_restart(rsyslog: Start, burst: bool) -> None:
    daemon = rsyslog(("relp",))
    warnings: list[str] = []
    sink = SyslogSink(parse_sink_url(daemon.url("relp", query="queue=200000&flush_timeout=30")),
                      warnings.append)
    sink.start()
    count = 60000 if burst else 20000
    stream_with_restart(daemon, "relp", sink, count, burst)
    received = Counter(seqs(daemon.wait_records("relp", count)))
    stats = sink.stats
    assert sorted(received) == list(range(count)), "RELP lost messages over a restart"
    duplicates = sum(received.values()) - count
    assert (stats.sent, stats.dropped_undeliverable, stats.dropped_queue_full) == (count, 0, 0)
    assert warnings  # the outage was reported
    if burst:  # the window was full when rsyslog stopped reading: those were sent again
        assert stats.resent >= 1 and stats.reconnects == 1, stats
    # rsyslog answers every message it took before a clean shutdown, so a resent message is
    # one it never stored: nothing arrives twice
    assert duplicates == 0, (duplicates, stats)
    print(f"relp restart: {count} delivered, {duplicates} duplicates, {stats}")


def test_unreachable_relp_collector(rsyslog: Start) -> None:
    port = free_port()
    warnings: list[str] = []
    sink = SyslogSink(parse_sink_url(f"relp://127.0.0.1:{port}?flush_timeout=0.3"),
                      warnings.append)
    sink.start()
    sink.send(rfc5424(1))
    sink.close()
    assert (sink.stats.sent, sink.stats.dropped_undeliverable) == (0, 1)
    assert len(warnings) == 1
