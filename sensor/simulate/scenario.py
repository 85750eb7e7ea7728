"""Load, validate and merge scenario TOML files (built-in or user-written) into typed Scenarios."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from sensor.errors import ConfigError
from sensor.simulate.content import Flavour
from sensor.simulate.frames import OsProfile
from sensor.simulate.spec import (
    DEFAULT_DURATION_S,
    DEFAULT_START_EPOCH,
    KIND_DEFAULTS,
    Actor,
    ActorKind,
    AuthMech,
    HeloStyle,
    Scenario,
    Site,
    Target,
    Timing,
    TimingModel,
)

MAX_INCLUDE_DEPTH = 4  # scenarios may include built-ins that include others, this deep at most
MAX_ACTOR_COUNT = 100_000  # hosts in one actor
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class _Bad(Exception):
    """A value does not have the expected form; carries the expectation."""


Conv = Callable[[Any], Any]


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "1h", "30m", "600s" or "1h30m"."""
    if isinstance(value, bool):
        raise _Bad("a duration such as 600, \"600s\", \"30m\" or \"1h\"")
    if isinstance(value, int | float) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mi * 60 + s
    raise _Bad("a duration such as 600, \"600s\", \"30m\" or \"1h\"")


def parse_start(value: object) -> float:
    """Epoch seconds from a number or an ISO 8601 time (a time without zone is UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _Bad("an ISO 8601 time or epoch seconds") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise _Bad("an ISO 8601 time or epoch seconds")


def _prob(v: object) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0:
        return float(v)
    raise _Bad("a probability between 0 and 1")


def _int_min(lo: int) -> Conv:
    def conv(v: object) -> int:
        if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= MAX_ACTOR_COUNT * 10:
            return v
        raise _Bad(f"an integer >= {lo}")
    return conv


def _num_min(lo: float) -> Conv:
    def conv(v: object) -> float:
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= lo:
            return float(v)
        raise _Bad(f"a number >= {lo:g}")
    return conv


def _pair(item: Conv, what: str) -> Conv:
    def conv(v: object) -> tuple[Any, Any]:
        if isinstance(v, list) and len(v) == 2:
            a, b = item(v[0]), item(v[1])
            if a <= b:
                return (a, b)
        raise _Bad(f"[min, max] of {what} with min <= max")
    return conv


def _enum(cls: type[Enum]) -> Conv:
    def conv(v: object) -> Enum:
        for member in cls:
            if member.value == v:
                return member
        raise _Bad("one of " + ", ".join(repr(m.value) for m in cls))
    return conv


def _networks(v: object) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if isinstance(items, list) and all(isinstance(i, str) for i in items):
        try:
            return tuple(str(ipaddress.ip_network(i, strict=False)) for i in items)
        except ValueError:
            pass
    raise _Bad("an address or CIDR, or a list of them")


def _addresses(v: object) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if isinstance(items, list) and all(isinstance(i, str) for i in items):
        try:
            return tuple(str(ipaddress.ip_address(i)) for i in items)
        except ValueError:
            pass
    raise _Bad("an IP address or a list of them")


def _strings(v: object) -> tuple[str, ...]:
    if isinstance(v, list) and all(isinstance(i, str) and i for i in v):
        return tuple(v)
    raise _Bad("a list of non-empty strings")


def _str(v: object) -> str:
    if isinstance(v, str):
        return v
    raise _Bad("a string")


def _bool(v: object) -> bool:
    if isinstance(v, bool):
        return v
    raise _Bad("true or false")


_SITE: dict[str, Conv] = {
    "home_net": _networks, "mx": _addresses, "relay": _addresses, "open_relays": _addresses,
    "mail_servers": _addresses, "local_domains": _strings, "external_mx": _networks,
    "internet": _networks, "users": _int_min(1),
}
_TIMING: dict[str, tuple[str, Conv]] = {
    "model": ("model", _enum(TimingModel)), "rate_per_hour": ("rate_per_hour", _num_min(0)),
    "start": ("start_s", parse_duration), "length": ("length_s", parse_duration),
    "interval": ("interval_s", lambda v: max(parse_duration(v), 0.001)),
    "jitter": ("jitter", _prob), "peak_hour": ("peak_hour", _num_min(0)),
    "trough_ratio": ("trough_ratio", _prob),
}
_INT0, _INT1 = _int_min(0), _int_min(1)
_ACTOR: dict[str, Conv] = {
    "kind": _enum(ActorKind), "name": _str, "count": _INT1, "hosts": _networks,
    "os": _enum(OsProfile), "vlan": _int_min(0), "hops": _INT0,
    "rtt_ms": _pair(_num_min(0.01), "milliseconds"), "target": _enum(Target),
    "helo": _enum(HeloStyle), "ehlo": _prob, "tls": _prob, "pipelining": _bool, "bdat": _prob,
    "auth": _enum(AuthMech), "auth_users": _strings, "auth_attempts": _pair(_INT1, "integers"),
    "auth_fail": _prob, "fail_sessions": _INT0, "messages": _pair(_INT0, "integers"),
    "rcpts": _pair(_INT1, "integers"), "destinations": _INT1, "flavour": _enum(Flavour),
    "size_median": _INT1, "size_sigma": _num_min(0), "attach": _prob, "html": _prob,
    "sloppy_paths": _prob,
    "templates": _INT1, "reject_4xx": _prob, "reject_5xx": _prob, "data_reject": _prob,
    "unknown_user": _prob, "refused": _prob, "unanswered": _prob, "pregreet": _prob,
    "blocklisted": _prob, "blocklist_text": _str, "quit": _prob, "retransmit": _prob,
    "reorder": _prob,
}
_TOP = ("scenario", "site", "actor")
_HEAD = ("name", "description", "duration", "start", "include")


def _check(src: str, where: str, key: str, conv: Conv, value: object) -> Any:
    try:
        return conv(value)
    except _Bad as exc:
        raise ConfigError(f"{src}: {where}{key}: expected {exc}, got {value!r}") from None


def _table(src: str, where: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{src}: {where.rstrip('.')}: expected a table, got {value!r}")
    return value


def _unknown(src: str, where: str, key: str, allowed: Sequence[str]) -> ConfigError:
    return ConfigError(f"{src}: {where}{key}: unknown key (expected one of: "
                       f"{', '.join(allowed)})")


def _actor(src: str, index: int, raw: object) -> Actor:
    where = f"actor[{index}]."
    table = _table(src, where, raw)
    if "kind" not in table:
        raise ConfigError(f"{src}: {where}kind: missing (expected one of "
                          + ", ".join(repr(k.value) for k in ActorKind) + ")")
    kind: ActorKind = _check(src, where, "kind", _ACTOR["kind"], table["kind"])
    values: dict[str, Any] = dict(KIND_DEFAULTS[kind])
    values["name"] = f"{kind.value}-{index}"
    for key, value in table.items():
        if key == "timing":
            values["timing"] = _timing(src, f"{where}timing.", value,
                                       values.get("timing", Timing()))
        elif key in _ACTOR:
            values[key] = _check(src, where, key, _ACTOR[key], value)
        else:
            raise _unknown(src, where, key, [*_ACTOR, "timing"])
    values["kind"] = kind
    return Actor(**values)


def _timing(src: str, where: str, raw: object, base: object) -> Timing:
    table = _table(src, where, raw)
    assert isinstance(base, Timing)
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _TIMING:
            raise _unknown(src, where, key, list(_TIMING))
        attr, conv = _TIMING[key]
        changes[attr] = _check(src, where, key, conv, value)
    return replace(base, **changes)


def parse_scenario(text: str, src: str, depth: int = 0) -> Scenario:
    """A validated Scenario from TOML text; `src` names the file in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{src}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in _TOP:
            raise _unknown(src, "", key, _TOP)
    head = _table(src, "scenario.", doc.get("scenario", {}))
    for key in head:
        if key not in _HEAD:
            raise _unknown(src, "scenario.", key, _HEAD)
    parts: list[Scenario] = []
    if "include" in head:
        names = _check(src, "scenario.", "include", _strings, head["include"])
        if depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"{src}: scenario.include: nested deeper than {MAX_INCLUDE_DEPTH}")
        for name in names:
            if name not in builtin_names():
                raise ConfigError(f"{src}: scenario.include: expected built-in scenario names "
                                  f"({', '.join(builtin_names())}), got {name!r}")
            parts.append(parse_scenario(_builtin_text(name), f"{name}.toml", depth + 1))
    site_raw = _table(src, "site.", doc.get("site", {}))
    site_changes: dict[str, Any] = {}
    for key, value in site_raw.items():
        if key not in _SITE:
            raise _unknown(src, "site.", key, list(_SITE))
        site_changes[key] = _check(src, "site.", key, _SITE[key], value)
    actors_raw = doc.get("actor", [])
    if not isinstance(actors_raw, list):
        raise ConfigError(f"{src}: actor: expected an array of tables [[actor]]")
    own = Scenario(
        name=_check(src, "scenario.", "name", _str, head.get("name", Path(src).stem)),
        description=_check(src, "scenario.", "description", _str, head.get("description", "")),
        site=replace(Site(), **site_changes),
        actors=tuple(_actor(src, i, a) for i, a in enumerate(actors_raw)),
        duration_s=_check(src, "scenario.", "duration", parse_duration,
                          head.get("duration", DEFAULT_DURATION_S)),
        start_epoch=_check(src, "scenario.", "start", parse_start,
                           head.get("start", DEFAULT_START_EPOCH)),
    )
    if not parts:
        return own
    merged = merge([*parts, own])
    return replace(merged, name=own.name, description=own.description,
                   duration_s=own.duration_s if "duration" in head else merged.duration_s,
                   start_epoch=own.start_epoch if "start" in head else merged.start_epoch)


def merge(scenarios: Sequence[Scenario]) -> Scenario:
    """One scenario running every actor of `scenarios` on the union of their sites."""
    first = scenarios[0]
    if len(scenarios) == 1:
        return first
    site_values: dict[str, Any] = {}
    for f in fields(Site):
        vals = [getattr(s.site, f.name) for s in scenarios]
        if f.name == "users":
            site_values[f.name] = max(vals)
        else:
            site_values[f.name] = tuple(dict.fromkeys(v for tup in vals for v in tup))
    return Scenario(
        name="+".join(s.name for s in scenarios),
        description="; ".join(s.description for s in scenarios if s.description),
        site=Site(**site_values),
        actors=_distinct_names([a for s in scenarios for a in s.actors]),
        duration_s=max(s.duration_s for s in scenarios),
        start_epoch=first.start_epoch,
    )


def _distinct_names(actors: list[Actor]) -> tuple[Actor, ...]:
    """Actors renamed where needed so that every name (the seed of its randomness) is unique."""
    seen: set[str] = set()
    out = []
    for actor in actors:
        name, n = actor.name, 1
        while name in seen:
            n += 1
            name = f"{actor.name}#{n}"
        seen.add(name)
        out.append(actor if name == actor.name else replace(actor, name=name))
    return tuple(out)


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("sensor.simulate") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _builtin_text(name: str) -> str:
    return (resources.files("sensor.simulate") / "scenarios" / f"{name}.toml").read_text("utf-8")


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a user scenario from a TOML file path."""
    if name_or_path in builtin_names():
        return parse_scenario(_builtin_text(name_or_path), f"{name_or_path}.toml")
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{name_or_path}: no such scenario file or built-in scenario "
                          f"(built-ins: {', '.join(builtin_names())})")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name_or_path}: cannot read: {exc}") from None
    return parse_scenario(text, str(path))
