"""The host table: what one record adds to its client and our server, roles, LRU bound, schema."""

from __future__ import annotations

from featfactory import auth, conn, rcpt, session, site_config, tx

from sensor.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, HostTable, vector
from sensor.features.extract import SiteView
from sensor.records import HostFeatures

BOT, MX_EXT, OUR_MX, OUTSIDER = "10.20.4.10", "198.18.0.7", "10.20.0.25", "198.19.1.1"


def feats(table: HostTable, ip: str) -> HostFeatures:
    f = table.features(ip)
    assert f is not None
    return f


def test_connections_to_external_mx_count_failures_and_destinations() -> None:
    t = HostTable(site_config())
    t.on_conn(conn(BOT, MX_EXT, 0.0))
    t.on_conn(conn(BOT, "198.18.0.8", 1.0, state="REJ"))
    t.on_conn(conn(BOT, "198.18.1.9", 2.0, state="S0"))
    t.on_conn(conn(BOT, OUR_MX, 3.0, state="RSTR", bytes_to_client=0))
    f = feats(t, BOT)
    assert f.in_home_net and not f.mail_server
    s = f.short
    assert (s.conns, s.failed_conns, s.refused_conns, s.unanswered_conns, s.reset_conns) == (
        4, 3, 1, 1, 1)
    assert (s.ext_conns, s.ext_failed_conns, s.ext_dst_ips, s.dst_ips, s.dst_24s) == (
        3, 2, 3, 4, 3)
    assert s.failed_ratio == 0.75


def test_outbound_session_counts_mail_from_recipients_and_rejections() -> None:
    t = HostTable(site_config())
    rcpts = [rcpt("x@far.example"), rcpt("y@far.example", 450, "4.2.0", "greylisted"),
             rcpt("z@other.example", 550, "5.7.1", "denied")]
    t.on_session(session(BOT, MX_EXT, 10.0, (tx(10.1, rcpts), tx(10.2, [], data=False)),
                         helo="DESKTOP-1", helo_kind="bare_word"))
    s = feats(t, BOT).medium
    assert (s.sessions, s.mail_from, s.ext_mail_from, s.msgs, s.rcpts) == (1, 2, 2, 1, 3)
    assert (s.rcpt_accepted, s.rcpt_4xx, s.rcpt_5xx, s.rcpt_unknown) == (1, 1, 1, 0)
    assert s.rcpt_domains == 2 and s.rcpt_foreign == 3 and s.relay_rcpts == 0
    assert s.helo_bad == 1 and s.helo_bad_share == 1.0 and s.mean_msg_size == 1000
    assert t.features(MX_EXT) is None  # external servers get no host entry


def test_relay_through_our_server_is_seen_on_both_sides() -> None:
    t = HostTable(site_config())
    rcpts = [rcpt(f"u{i}@far{i}.example") for i in range(4)] + [rcpt("bob@campus.example")]
    changed = t.on_session(session(OUTSIDER, "10.20.0.30", 5.0, (tx(5.1, rcpts),)))
    assert [h.ip for h, _ in changed] == [OUTSIDER, "10.20.0.30"]
    assert feats(t, OUTSIDER).short.relay_rcpts == 4
    srv = feats(t, "10.20.0.30").short
    assert (srv.srv_sessions, srv.srv_relay_rcpts, srv.srv_relay_clients) == (1, 4, 1)
    # authenticated sessions are not relaying
    t.on_session(session("198.19.1.2", "10.20.0.30", 6.0, (tx(6.1, rcpts),),
                         auth=(auth(5.9, "success"),)))
    assert feats(t, "198.19.1.2").short.relay_rcpts == 0
    assert feats(t, "198.19.1.2").short.auth_clear_ext_success == 1


def test_inbound_traits_user_unknown_blocklist_pregreet_forged_helo() -> None:
    t = HostTable(site_config())
    unknown = [rcpt(f"g{i}@campus.example", 550, "5.1.1", "User unknown") for i in range(3)]
    t.on_session(session(OUTSIDER, OUR_MX, 1.0, (tx(1.1, unknown, data=False),),
                         helo="campus.example", anomalies={"pregreet": 1}))
    t.on_session(session(OUTSIDER, OUR_MX, 2.0, banner_code=554, helo=None, helo_kind=None,
                         reply_codes={554: 1}))
    s = feats(t, OUTSIDER).short
    assert (s.rcpt_unknown, s.unknown_ratio, s.pregreet, s.blocked, s.helo_forged) == (
        3, 1.0, 1, 1, 1)


def test_refused_connection_sessions_are_left_to_the_conn_record() -> None:
    t = HostTable(site_config())
    assert t.on_session(session(BOT, MX_EXT, 1.0, bytes_from_client=0, bytes_from_server=0,
                                commands=(), banner_code=0)) == []
    assert t.stats.ignored_sessions == 1


def test_failures_then_success_then_sending_is_tracked_per_client_and_user() -> None:
    t = HostTable(site_config())
    for i in range(3):
        t.on_session(session(f"198.19.2.{i}", "10.20.0.27", float(i),
                             auth=(auth(float(i), "failure", "victim"),)))
    # a fourth address logs in as the same user: failures for the user count
    many = [rcpt(f"r{i}@far.example") for i in range(7)]
    t.on_session(session("198.19.2.9", "10.20.0.27", 10.0, (tx(10.2, many), tx(10.3, many)),
                         auth=(auth(10.1, "success", "victim"),)))
    f = feats(t, "198.19.2.9")
    assert f.auth_fails_before_success == 3 and f.auth_success_ts == 10.1
    assert f.rcpts_after_auth_success == 14 and f.msgs_after_auth_success == 2
    srv = feats(t, "10.20.0.27").short
    assert srv.srv_auth_failures == 3


def test_host_table_is_an_lru_with_counted_evictions() -> None:
    t = HostTable(site_config("[bounds]\nmax_hosts = 2\n"))
    for i in range(4):
        t.on_conn(conn(f"10.20.4.{i}", MX_EXT, float(i)))
    assert len(t) == 2 and t.stats.evicted == 2 and t.stats.hosts == 4
    assert t.features("10.20.4.0") is None and t.features("10.20.4.3") is not None


def test_hosts_idle_for_host_idle_s_of_packet_time_leave_the_table() -> None:
    t = HostTable(site_config("[bounds]\nhost_idle_s = 3600.0\n"))
    t.on_conn(conn("10.20.4.1", MX_EXT, 0.0))
    t.on_conn(conn("10.20.4.2", MX_EXT, 3000.0))
    t.on_conn(conn("10.20.4.3", MX_EXT, 3700.0))  # 10.20.4.1 and the MX idle for 3600 s
    assert t.features("10.20.4.1") is None and t.features("10.20.4.2") is not None
    assert t.stats.expired == 1 and len(t) == 2
    t.on_conn(conn("10.20.4.3", MX_EXT, 3710.0))  # within a sweep period: nothing swept
    t.on_conn(conn("10.20.4.3", MX_EXT, 6700.0))
    assert t.features("10.20.4.2") is None and t.stats.expired == 2


def test_vector_follows_the_versioned_schema() -> None:
    t = HostTable(site_config())
    t.on_conn(conn(BOT, MX_EXT, 0.0))
    vec = vector(feats(t, BOT))
    assert FEATURE_SCHEMA_VERSION == 2
    assert len(vec) == len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    pos = FEATURE_NAMES.index
    assert vec[pos("in_home_net")] == 1.0 and vec[pos("mail_server")] == 0.0
    assert vec[pos("short_ext_conns")] == 1.0 and vec[pos("long_ext_dst_ips")] == 1.0
    assert all(isinstance(v, float) for v in vec)


def test_release_forgets_hosts_but_keeps_the_counters() -> None:
    t = HostTable(site_config("[bounds]\nmax_events_per_host = 1\n"))
    for i in range(3):
        t.on_conn(conn(BOT, MX_EXT, float(10 * i)))
    assert t.dropped_events() == 2
    t.release()
    assert len(t) == 0 and t.features(BOT) is None
    assert t.stats.records == 3 and t.stats.hosts == 1 and t.dropped_events() == 2


def test_site_roles_for_ipv4_ipv6_scoped_and_malformed_addresses() -> None:
    view = SiteView.of(site_config().site)
    assert view.roles("10.20.0.10") == (True, True)  # home_net and mail_servers
    assert view.roles("10.20.9.9") == (True, False)
    assert view.roles("10.21.0.1") == (False, False)
    assert view.roles("2001:db8:20::5") == (True, False)
    assert view.roles("fe80::1%eth0") == (False, False)  # read through ipaddress
    assert view.roles("::ffff:10.20.0.10") == (False, False)  # IPv6, not the IPv4 network
    for bad in ("010.20.0.1", "10.20.0", "", "10.20.0.1\x00", "not an ip"):
        assert view.roles(bad) == (False, False)
    assert view.local("campus.example") and view.local("mx.campus.example")
    assert not view.local("evilcampus.example") and not view.local("example")


def test_the_vector_without_a_snapshot_is_the_snapshot_vector() -> None:
    t = HostTable(site_config())
    rcpts = [rcpt("x@far.example"), rcpt("y@campus.example", 550, "5.7.1", "denied")]
    for i in range(4):
        t.on_conn(conn(BOT, f"198.18.0.{i}", 100.0 * i))
        t.on_session(session(BOT, MX_EXT, 100.0 * i + 1, (tx(100.0 * i + 1.1, rcpts, size=10 * i),),
                             auth=(auth(100.0 * i + 1.05, "failure"),)))
    for ip in (BOT, OUR_MX):
        t.on_session(session(OUTSIDER, ip, 401.0, (tx(401.1, rcpts),),
                             auth=(auth(401.05, "success"),)))
    for ip in (BOT, OUTSIDER):
        changed = {h.ip: h for h, _ in t.on_conn(conn(ip, MX_EXT, 402.0))}
        fast = HostTable.vector(changed[ip])
        assert fast == vector(feats(t, ip)) and all(isinstance(v, float) for v in fast)
