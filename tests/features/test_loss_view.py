"""The model's view of a host leaves out failed connections that show capture loss; the rules'
view (the snapshot) keeps them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from featfactory import conn, site_config
from test_cli_loss import drop_packets

from sensor.capture.source import open_files
from sensor.config import load_config
from sensor.features import FEATURE_NAMES, HostTable, vector
from sensor.features.batch import vectors
from sensor.features.extract import loss_failed, unattributable
from sensor.features.hosts import HostState
from sensor.pipeline import Pipeline
from sensor.records import ConnRecord

ROOT = Path(__file__).resolve().parents[2]
BOT, MX_EXT, OUR_MX = "10.20.4.10", "198.18.0.7", "10.20.0.10"
FAILURES = ("failed_conns", "refused_conns", "unanswered_conns", "reset_conns",
            "ext_failed_conns", "failed_ratio")


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def _batch(states: list[HostState]) -> np.ndarray:
    floats, ints = bytearray(), bytearray()
    for st in states:
        HostTable.raw(st, floats, ints)
    return vectors(floats, ints, len(states))


def test_a_failed_connection_with_capture_loss_counts_for_the_rules_not_the_model() -> None:
    t = HostTable(site_config())
    # SYN-ACK and the server's FIN lost: Zeek's SH, though the server sent its banner
    lost_synack = conn(BOT, MX_EXT, 10.0, "SH", history="ADdFgG", gaps=2, bytes_to_client=197)
    assert loss_failed(lost_synack)
    t.on_conn(lost_synack)
    t.on_conn(conn(BOT, OUR_MX, 11.0, "RSTRH", history="r", gaps=1, bytes_to_client=0))
    t.on_conn(conn(BOT, MX_EXT, 12.0, "REJ", history="Sr"))  # refused, nothing lost
    st = t._hosts[BOT]
    rules = vector(t.snapshot(st))
    model = HostTable.vector(st)
    for w in ("short", "medium", "long"):
        got = {n: (rules[_col(f"{w}_{n}")], model[_col(f"{w}_{n}")]) for n in FAILURES}
        assert got == {"failed_conns": (3, 1), "refused_conns": (1, 1),
                       "unanswered_conns": (1, 0), "reset_conns": (1, 0),
                       "ext_failed_conns": (2, 1), "failed_ratio": (1.0, 1 / 3)}, w
    others = [i for i, n in enumerate(FEATURE_NAMES) if n.partition("_")[2] not in FAILURES]
    assert [rules[i] for i in others] == [model[i] for i in others]
    assert t.stats.loss_failed_conns == 2
    assert _batch([st]).tobytes() == np.array([model]).tobytes()


def test_without_capture_loss_the_views_are_the_same() -> None:
    t = HostTable(site_config())
    t.on_conn(conn(BOT, MX_EXT, 10.0, "S0", history="S"))
    t.on_conn(conn(BOT, MX_EXT, 11.0, "REJ", history="Sr"))
    t.on_conn(conn(BOT, MX_EXT, 12.0, "RSTR", history="ShADr", bytes_to_client=0))
    st = t._hosts[BOT]
    assert HostTable.vector(st) == vector(t.snapshot(st))
    assert vector(t.snapshot(st))[_col("short_failed_conns")] == 3
    assert t.stats.loss_failed_conns == 0


def test_a_record_without_payload_syn_or_rst_counts_nowhere() -> None:
    """The last ACKs and FINs of a connection already written out (its linger cut short under a
    full table, or its record out before a run of kernel drops ended) come back as records of
    their own; a FIN-only one reads as SH, a failed attempt."""
    t = HostTable(site_config())
    remnants = [conn(BOT, MX_EXT, 10.0, "SH", history="AFa", bytes_to_server=0, bytes_to_client=0,
                     pkts_to_server=2, pkts_to_client=1, end_reason="evicted"),
                conn(BOT, MX_EXT, 10.1, "OTH", history="a", bytes_to_server=0, bytes_to_client=0,
                     end_reason="timeout"),
                conn(BOT, MX_EXT, 10.2, "SHR", history="f", bytes_to_server=0, bytes_to_client=0)]
    for rec in remnants:
        assert unattributable(rec)
        assert t.on_conn(rec) == []
    assert t.stats.unattributed_conns == 3 and BOT not in t._hosts
    counted = [conn(BOT, MX_EXT, 11.0, "OTH", history="aDd", bytes_to_server=5882),  # mid-stream
               conn(BOT, MX_EXT, 12.0, "S0", history="S", bytes_to_server=0),  # an attempt
               conn(BOT, MX_EXT, 13.0, "RSTRH", history="r", bytes_to_server=0,
                    bytes_to_client=0)]  # fmt: skip
    for rec in counted:
        assert not unattributable(rec)
        assert t.on_conn(rec) != []
    snap = vector(t.snapshot(t._hosts[BOT]))
    assert snap[_col("short_ext_conns")] == 3 and t.stats.unattributed_conns == 3


def test_a_lone_syn_the_sensor_cut_off_counts_for_the_rules_not_the_model() -> None:
    """One SYN, then the input ended (or a cap evicted it) before the client would have sent it
    again: the rest may be in a run of kernel drops. Retransmitted, or timed out, it failed."""
    def s0(end: str, pkts: int) -> ConnRecord:
        return conn(BOT, MX_EXT, 10.0, "S0", history="S", bytes_to_server=0,
                    pkts_to_server=pkts, pkts_to_client=0, end_reason=end)

    assert loss_failed(s0("eof", 1)) and loss_failed(s0("evicted", 1))
    assert not loss_failed(s0("eof", 3)) and not loss_failed(s0("timeout", 1))
    t = HostTable(site_config())
    t.on_conn(s0("eof", 1))
    st = t._hosts[BOT]
    assert vector(t.snapshot(st))[_col("short_unanswered_conns")] == 1  # the rules' view
    assert HostTable.vector(st)[_col("short_unanswered_conns")] == 0  # the model's
    assert t.stats.loss_failed_conns == 1


def test_an_unanswered_attempt_whose_client_went_on_shows_loss() -> None:
    """Seen in a live benchmark run at 40% kernel drops: the client's SYN, its EHLO and its FIN,
    no packet of the server's (and no gap: the FIN came after the lost bytes, which nothing
    acknowledged) read SH, a failed attempt, and the model raised anomalous_host for it. A
    client sends an ACK, payload or a FIN only once a SYN-ACK reached it."""
    for state, history in (("SH", "SDF"), ("SH", "SF"), ("S0", "SA"), ("S0", "SD"),
                           ("RSTOS0", "SAR")):  # fmt: skip
        rec = conn(BOT, MX_EXT, 10.0, state, history=history, gaps=0, bytes_to_client=0)
        assert loss_failed(rec), (state, history)
    for state, history in (("S0", "S"), ("RSTOS0", "SR"), ("REJ", "Sr"), ("SF", "ShADadFf")):
        rec = conn(BOT, MX_EXT, 10.0, state, history=history, gaps=0, bytes_to_client=0)
        assert not loss_failed(rec), (state, history)  # unanswered, refused, or not failed
    t = HostTable(site_config())
    t.on_conn(conn(BOT, MX_EXT, 10.0, "SH", history="SDF", gaps=0, bytes_to_client=0,
                   bytes_to_server=28))  # fmt: skip
    st = t._hosts[BOT]
    assert vector(t.snapshot(st))[_col("short_unanswered_conns")] == 1  # the rules' view
    assert HostTable.vector(st)[_col("short_unanswered_conns")] == 0  # the model's
    assert t.stats.loss_failed_conns == 1


def _host_views(pcap: Path) -> tuple[int, int, HostTable]:
    """Hosts changed, and of them those whose two views differed, over a capture; every
    batch row equals the per-host model vector, and the views differ only in failures."""
    table = HostTable(load_config(str(ROOT / "pcaps" / "demo.toml")))
    seen = differ = 0
    fail_cols = {i for i, n in enumerate(FEATURE_NAMES) if n.partition("_")[2] in FAILURES}

    def check(changed: list[tuple[HostState, int]]) -> None:
        nonlocal seen, differ
        states = [st for st, _ in changed]
        if not states:
            return
        model = [HostTable.vector(st) for st in states]
        assert _batch(states).tobytes() == np.array(model, dtype=np.float64).tobytes()
        for st, m in zip(states, model, strict=True):
            r = vector(table.snapshot(st))
            seen += 1
            if r != m:
                differ += 1
                assert all(m[i] == r[i] for i in range(len(r)) if i not in fail_cols)
                assert all(m[i] <= r[i] for i in fail_cols)

    pipe = Pipeline(on_conn=lambda r: check(table.on_conn(r)),
                    on_session=lambda s: check(table.on_session(s)))
    pipe.run(open_files([str(pcap)], "tcp", pipe.capture_stats, lambda path, why: None))
    pipe.finish()
    return seen, differ, table


def test_on_a_whole_capture_the_views_are_equal_and_under_drops_differ_in_failures_only(
    tmp_path: Path,
) -> None:
    demo = ROOT / "pcaps" / "demo.pcap"
    seen, differ, table = _host_views(demo)
    assert seen > 300 and differ == 0 and table.stats.loss_failed_conns == 0
    lossy = tmp_path / "lossy.pcap"
    drop_packets(demo, lossy, 0.2, 5)
    seen, differ, table = _host_views(lossy)
    assert seen > 300 and differ > 0 and table.stats.loss_failed_conns > 0
