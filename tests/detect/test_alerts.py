"""Alerts: DESIGN.md's record, one per (host, kind) per interval, updates only on escalation."""

from __future__ import annotations

from detfactory import config, conn, host

from sensor.config import parse_config
from sensor.detect import Detector, alert_to_dict
from sensor.detect.alerts import Suppressor, iso_time
from sensor.records import Alert

BURST = {"ext_conns": 5, "ext_mail_from": 5, "ext_dst_ips": 5}


def run(det: Detector, **kw: object) -> list[Alert]:
    return det.evaluate(host(**kw))  # type: ignore[arg-type]


def test_alert_record_has_the_design_fields_in_order() -> None:
    out: list[Alert] = []
    det = Detector(parse_config('[site]\nsensor = "tap-eth1"\nhome_net = ["10.20.0.0/16"]\n',
                                "t.toml"), out.append)
    (a,) = run(det, short=BURST)
    d = alert_to_dict(a)
    assert list(d) == ["ts", "time", "sensor", "host", "kind", "severity", "sid", "rule",
                       "score", "source", "window_s", "summary", "evidence", "first_seen",
                       "last_seen"]
    assert (d["sensor"], d["host"], d["kind"], d["source"], d["window_s"]) == (
        "tap-eth1", "10.20.4.10", "spambot", "rule", 60)
    assert d["evidence"] == {"features": {"ext_mail_from": 5, "ext_dst_ips": 5, "rcpts": 0,
                                          "reject_ratio": 0, "failed_ratio": 0},
                             "sessions": ["Cuid1", "Cuid2"]}
    assert d["first_seen"] == 950.0 and d["last_seen"] == d["ts"] == 1000.0
    assert out == [a] and det.stats.alerts_by_kind == {"spambot": 1}


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(1764430000.123) == "2025-11-29T15:26:40.123Z"


def test_one_alert_per_interval_plus_escalation_updates() -> None:
    det = Detector(config("[suppression]\ninterval_s = 600\n"), lambda a: None)
    assert len(run(det, ts=1000.0, short=BURST)) == 1
    assert run(det, ts=1010.0, short={**BURST, "ext_mail_from": 9}) == []  # not doubled
    (up,) = run(det, ts=1020.0, short={**BURST, "ext_mail_from": 10})
    assert up.evidence["update"] == "direct_to_mx_burst count 5 -> 10"
    assert up.summary.endswith("(update: direct_to_mx_burst count 5 -> 10)")
    # a second signal with a higher severity is an update too
    det2 = Detector(config(), lambda a: None)
    (first,) = run(det2, ts=1000.0, long={"ext_conns": 4, "ext_mail_from": 4, "ext_dst_ips": 4})
    assert first.severity == 6
    (up,) = run(det2, ts=1001.0, short=BURST)
    assert up.evidence["update"] == "severity 6 -> 8"
    # after the interval a new alert (not an update) is due
    assert [a.evidence.get("update") for a in run(det, ts=1601.0, short=BURST)] == [None]
    assert det.stats.suppressed == 1 and det.stats.updates == 1


def test_suppression_is_per_host_and_kind() -> None:
    det = Detector(config(), lambda a: None)
    assert len(run(det, short=BURST)) == 1
    assert len(run(det, ip="10.20.4.11", short=BURST)) == 1
    both = {**BURST, "auth_failures": 10}
    assert [a.kind for a in run(det, short=both)] == ["auth_bruteforce"]


def test_disabled_rules_do_not_run() -> None:
    det = Detector(config("[rules.spambot]\nenabled = false\n"), lambda a: None)
    assert run(det, short=BURST) == []


def test_suppressor_table_is_bounded() -> None:
    from sensor.detect.rules import spambot

    cfg = config()
    sup = Suppressor(cfg.suppression, 2)
    for i in range(3):
        f = host(f"10.20.4.{i}", short=BURST)
        finding = spambot(f, cfg.rules["spambot"], cfg.windows)
        assert finding is not None and sup.decide(f.host, finding, 0.0) == ""
    f = host("10.20.4.0", short=BURST)
    finding = spambot(f, cfg.rules["spambot"], cfg.windows)
    assert finding is not None and sup.decide(f.host, finding, 1.0) == ""  # forgotten: new alert


def test_suppressor_forgets_episodes_whose_interval_passed() -> None:
    from sensor.detect.rules import spambot

    cfg = config()
    sup = Suppressor(cfg.suppression, 100)
    for i, ts in enumerate((0.0, 10.0, 20.0)):
        f = host(f"10.20.4.{i}", short=BURST)
        finding = spambot(f, cfg.rules["spambot"], cfg.windows)
        assert finding is not None and sup.decide(f.host, finding, ts) == ""
    assert len(sup._episodes) == 3
    f = host("10.20.4.2", short=BURST)
    finding = spambot(f, cfg.rules["spambot"], cfg.windows)
    assert finding is not None
    assert sup.decide(f.host, finding, 3615.0) is None  # its own episode is still on
    assert len(sup._episodes) == 3  # kept an interval more, for findings decided late
    assert sup.decide(f.host, finding, 7215.0) == ""  # a new episode
    assert list(sup._episodes) == [("10.20.4.2", "spambot")]  # the two older ones expired


def test_finish_returns_the_counters_and_releases_the_host_table() -> None:
    det = Detector(config(), lambda a: None)
    det.on_conn(conn("10.20.4.10", "198.18.0.7", 0.0))
    stats = det.finish()
    assert (stats.records, stats.hosts, stats.hosts_active) == (1, 1, 1)
    assert len(det.table) == 0 and det.stats.records == 1
