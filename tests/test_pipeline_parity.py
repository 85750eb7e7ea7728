"""Parity of capture + reassembly with Wireshark on the public captures in tests/data/public/."""

from __future__ import annotations

from pathlib import Path

import pytest
import tshark_util as ts
from parity_exceptions import is_excepted

from sensor.capture.bpf import build_filter
from sensor.capture.source import open_files
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord
from sensor.tcp.reassembler import StreamHandler

TRACE_NAMES = [
    "communityid/ipv6.pcap",
    "smtp-attachment-msg.pcap",
    "smtp-mail-transactions-invalid.pcap",
    "smtp-multi-addr.pcap",
    "smtp-one-side-only.pcap",
    "smtp.pcap",
    "smtp/mime-header-size-limit.pcap.gz",
    "smtp/rfc3030-bdat-0-last.pcap",
    "smtp/rfc3030-bdat-example1.pcap",
    "smtp/rfc3030-bdat-multipart-chunked.pcap",
    "smtp/rfc3030-bdat-multipart.pcap",
    "smtp/rfc3030-bdat-nonascii.pcap",
    "smtp/smtp-bdat-cmd-chunk-size-overflow.pcap",
    "smtp/smtp-bdat-cmd-chunk-size-overflow2.pcap",
    "smtp/smtp-bdat-cmd-invalid.pcapng",
    "smtp/smtp-bdat-cmd-negative-chunk-size.pcap",
    "smtp/smtp-bdat-gap.pcap",
    "smtp/smtp-bdat-pipeline-8bitmime.pcap",
    "smtp/smtp-many-addresses.pcap.gz",
    "tcp/truncated-header.pcap",
    "tls/smtp-starttls.pcap",
]


class _Collect:
    """A stream handler keeping every delivered byte and gap of one connection."""

    def __init__(self) -> None:
        self.to_server = bytearray()
        self.to_client = bytearray()
        self.gaps = 0

    def data(self, to_server: bool, ts: float, payload: bytes) -> None:
        (self.to_server if to_server else self.to_client).extend(payload)

    def gap(self, to_server: bool, ts: float, n: int) -> None:
        # tshark's follow output marks a hole the same way, so the streams stay comparable.
        self.gaps += 1
        (self.to_server if to_server else self.to_client).extend(
            f"[{n} bytes missing in capture file]".encode() + b"\0"
        )

    def close(self, ts: float, record: ConnRecord) -> None:
        pass


def _analyse(path: Path) -> tuple[list[ConnRecord], dict[str, _Collect]]:
    conns: list[ConnRecord] = []
    streams: dict[str, _Collect] = {}

    def collect(
        uid: str, ts: float, cip: str, cport: int, sip: str, sport: int, midstream: bool
    ) -> StreamHandler | None:
        streams[uid] = _Collect()
        return streams[uid]

    errors: list[tuple[str, str]] = []
    pipe = Pipeline(on_conn=conns.append, handlers=collect)
    pipe.run(
        open_files(
            [str(path)], build_filter([25]), pipe.capture_stats, lambda p, r: errors.append((p, r))
        )
    )
    pipe.finish()
    assert errors == []
    return conns, streams


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_conv_counts_match_tshark(name: str, zeek_traces: Path, tshark: str) -> None:
    path = zeek_traces / name
    conns, _ = _analyse(path)
    ours = {}
    for c in conns:
        ours[((c.client_ip, c.client_port), (c.server_ip, c.server_port))] = c
    theirs = [r for r in ts.conv_tcp(str(path)) if 25 in (r.a[1], r.b[1])]
    assert theirs, f"tshark sees no port-25 conversation in {name}"
    assert len(ours) == len(theirs), (sorted(ours), theirs)
    for row in theirs:
        if (row.a, row.b) in ours:
            c = ours[(row.a, row.b)]
            a_is_client = True
        else:
            c = ours[(row.b, row.a)]
            a_is_client = False
        got = (c.pkts_to_server, c.wire_bytes_to_server, c.pkts_to_client, c.wire_bytes_to_client)
        if a_is_client:
            want = (row.frames_a_to_b, row.bytes_a_to_b, row.frames_b_to_a, row.bytes_b_to_a)
        else:
            want = (row.frames_b_to_a, row.bytes_b_to_a, row.frames_a_to_b, row.bytes_a_to_b)
        shown = (got[0], ts.wireshark_size(got[1]), got[2], ts.wireshark_size(got[3]))
        if is_excepted("tshark", "conv", name, "bytes"):
            shown, want = (shown[0], shown[2]), (want[0], want[2])
        assert shown == want, f"{name} {c.uid}: ours {shown} tshark {want}"


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_client_stream_matches_tshark_follow(name: str, zeek_traces: Path, tshark: str) -> None:
    path = zeek_traces / name
    conns, streams = _analyse(path)
    ids = ts.stream_ids(str(path))
    for c in conns:
        key = (c.client_ip, c.client_port, c.server_ip, c.server_port)
        rev = (c.server_ip, c.server_port, c.client_ip, c.client_port)
        n = ids.get(key, ids.get(rev))
        assert n is not None, f"{name}: tshark has no stream for {key}"
        node0, sent0, sent1 = ts.follow_raw(str(path), n)
        client_bytes = sent0 if node0 == (c.client_ip, c.client_port) else sent1
        # handlers are made at a connection's first payload byte: none, no bytes
        got = bytes(streams[c.uid].to_server) if c.uid in streams else b""
        pairs = enumerate(zip(got, client_bytes, strict=False))
        first_diff = next((i for i, (x, y) in pairs if x != y), -1)
        assert got == client_bytes, (
            f"{name} stream {n}: {len(got)} bytes reassembled, tshark follow has "
            f"{len(client_bytes)}; first difference at {first_diff}"
        )
