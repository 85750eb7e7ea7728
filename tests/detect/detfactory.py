"""Hand-made HostFeatures for rule tests: every count zero unless named."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sensor.config import Config, parse_config
from sensor.records import HostFeatures, WindowFeatures

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
         short: dict[str, float] | None = None, medium: dict[str, float] | None = None,
         long: dict[str, float] | None = None, **scalars: Any) -> HostFeatures:
    """A host whose medium and long windows include the shorter ones' counts unless given."""
    s = short or {}
    m = {**s, **(medium or {})}
    lg = {**m, **(long or {})}
    base: dict[str, Any] = dict(auth_fails_before_success=0.0, rcpts_after_auth_success=0.0,
                                msgs_after_auth_success=0.0, auth_success_ts=0.0)
    base.update(scalars)
    return HostFeatures(ip, ts, home, mta, ts - 3000, window(**s), window(**m), window(**lg),
                        ts - 50, ts - 500, ts - 3000, base["auth_fails_before_success"],
                        base["rcpts_after_auth_success"], base["msgs_after_auth_success"],
                        base["auth_success_ts"], ("Cuid1", "Cuid2"))
