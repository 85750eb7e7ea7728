"""Hand-made HostFeatures for rule tests: every count zero unless named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from sensor.config import Config, parse_config
from sensor.records import ConnRecord, HostFeatures, WindowFeatures

SITE = ('[site]\nhome_net = ["10.20.0.0/16"]\nmail_servers = ["10.20.0.10"]\n'
        'local_domains = ["campus.example"]\n')


def config(extra: str = "") -> Config:
    return parse_config(SITE + extra, "test.toml")


def window(**values: float) -> WindowFeatures:
    names = [f.name for f in fields(WindowFeatures)]
    unknown = set(values) - set(names)
    assert not unknown, unknown
    return WindowFeatures(*[float(values.get(n, 0.0)) for n in names])


def host(ip: str = "10.20.4.10", *, home: bool = True, mta: bool = False, ts: float = 1000.0,
         short: Mapping[str, float] | None = None, medium: Mapping[str, float] | None = None,
         long: Mapping[str, float] | None = None, **scalars: Any) -> HostFeatures:
    """A host whose medium and long windows include the shorter ones' counts unless given."""
    s = short or {}
    m = {**s, **(medium or {})}
    lg = {**m, **(long or {})}
    base: dict[str, Any] = dict(auth_fails_before_success=0.0, rcpts_after_auth_success=0.0,
                                msgs_after_auth_success=0.0, auth_success_ts=0.0,
                                auth_own_fails_before_success=0.0,
                                burst_rcpts_after_auth_success=0.0)
    base.update(scalars)
    return HostFeatures(ip, ts, home, mta, ts - 3000, window(**s), window(**m), window(**lg),
                        ts - 50, ts - 500, ts - 3000, base["auth_fails_before_success"],
                        base["rcpts_after_auth_success"], base["msgs_after_auth_success"],
                        base["auth_success_ts"], ("Cuid1", "Cuid2"),
                        base["auth_own_fails_before_success"],
                        base["burst_rcpts_after_auth_success"])


def conn(client: str, server: str, ts: float) -> ConnRecord:
    """A completed SMTP connection (the fields the features read, the rest plausible)."""
    return ConnRecord(
        uid="Cdet1", ts=ts, client_ip=client, client_port=40000, server_ip=server,
        server_port=25, duration_s=1.0, state="SF", history="ShADadFf", bytes_to_server=100,
        bytes_to_client=100, wire_bytes_to_server=300, wire_bytes_to_client=300,
        pkts_to_server=5, pkts_to_client=5, retrans_segments=0, ooo_segments=0, gaps=0,
        gap_bytes=0, conflicting_overlaps=0, rtt_s=0.01, syn_ttl=64, syn_window=64240,
        syn_mss=1460, syn_wscale=7, end_reason="fin")
