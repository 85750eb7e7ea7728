"""The sensor's TOML configuration: packaged defaults, a user file merged over them, validated."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from sensor.decode.packet import DecodeLimits
from sensor.errors import ConfigError
from sensor.service.affinity import parse_cpus
from sensor.smtp.limits import RFC_COMMAND_LINE, SmtpLimits

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Param = int | float | str | bool
WINDOW_NAMES = ("short", "medium", "long")
DEFAULT_NAME = "default_config.toml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WORK_HOURS = re.compile(r"([0-9]{1,2})-([0-9]{1,2})")


@dataclass(slots=True, frozen=True)
class SiteConfig:
    """Who is ours: protected networks, authorised MTAs and the mail domains we receive for."""

    sensor: str
    home_net: tuple[IPNetwork, ...]
    mail_servers: tuple[IPNetwork, ...]
    local_domains: frozenset[str]
    # the site's working time, for the time-of-day features (schema v2)
    timezone: str = "UTC"  # IANA name, checked at start-up
    work_start: int = 8  # local hours: work_start <= hour < work_end (wrapping past midnight)
    work_end: int = 18
    work_days: frozenset[int] = frozenset(range(5))  # datetime.weekday(): 0 is Monday


@dataclass(slots=True, frozen=True)
class WindowsConfig:
    """Lengths of the three sliding windows, in seconds of packet time."""

    short_s: int
    medium_s: int
    long_s: int

    def length(self, name: str) -> int:
        """The length of the window called `name` (short, medium or long)."""
        return {"short": self.short_s, "medium": self.medium_s, "long": self.long_s}[name]


@dataclass(slots=True, frozen=True)
class BoundsConfig:
    """Memory bounds of the feature stage."""

    max_hosts: int
    max_events_per_host: int
    max_users: int
    sample_sessions: int
    memcap_mb: int
    """Estimated TCP reassembly state, in total (split between --workers)."""
    host_idle_s: float = 7200.0
    """Packet time without a record before a host leaves the feature table."""


@dataclass(slots=True, frozen=True)
class ReassemblyConfig:
    """The TCP reassembly caps and timers (sensor.tcp.reassembler.TcpLimits, same names)."""

    max_connections: int
    max_ooo_bytes_per_dir: int
    max_ooo_chunks_per_dir: int
    max_total_bytes: int
    rexmit_segments: int
    max_ack_gap: int
    idle_timeout_s: float
    closed_linger_s: float
    expire_interval_s: float
    half_open_share: float


@dataclass(slots=True, frozen=True)
class SuppressionConfig:
    """One alert per (host, kind) per interval, plus updates on escalation."""

    interval_s: int
    escalate_factor: float


@dataclass(slots=True, frozen=True)
class ModelConfig:
    """[model]: how the trained host model scores host windows and raises anomalous_host."""

    score_interval_s: int
    severity: int
    sid: int
    top_features: int
    score_delay_s: int = 30
    max_pending_rows: int = 200000


FACILITIES: tuple[str, ...] = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
"""Syslog facility names, their codes by position (RFC 5424 table 1)."""
_SD_NAME_CHARS = "".join(re.escape(chr(c)) for c in range(0x21, 0x7F) if chr(c) not in '="]@')
_SD_ID = re.compile(f"[{_SD_NAME_CHARS}]{{1,31}}@[0-9]+(?:\\.[0-9]+)*")


@dataclass(slots=True, frozen=True)
class SyslogConfig:
    """[syslog]: what every syslog destination's messages carry, and which records go."""

    facility: int = 16  # local0
    hostname: str = ""  # "" is this machine's name
    app_name: str = "port25-sensor"
    sd_id: str = "port25@32473"
    format: str = "rfc5424"
    sessions: bool = False


@dataclass(slots=True, frozen=True)
class CaptureConfig:
    """[capture]: what a live capture reports to its operator."""

    loss_warn_percent: float = 1.0  # capture-loss estimate of an interval that warns on stderr


@dataclass(slots=True, frozen=True)
class RuleConfig:
    """One rule's switch, severity, signature id and thresholds (validated against the defaults)."""

    name: str
    enabled: bool
    severity: int
    sid: int
    params: dict[str, Param]
    nums: dict[str, float]  # the numeric params as floats

    def num(self, key: str) -> float:
        """A numeric threshold."""
        return self.nums[key]

    def word(self, key: str) -> str:
        """A string parameter (a window name)."""
        value = self.params[key]
        assert isinstance(value, str)
        return value


@dataclass(slots=True, frozen=True)
class PrivacyConfig:
    """[privacy]: fields dropped from, and fields pseudonymised in, everything the sensor writes.

    Names are those of docs/privacy.md (fields and groups, validated); `key` is the content of
    `key_file`, read once at start-up.
    """

    drop: tuple[str, ...] = ()
    pseudonymise: tuple[str, ...] = ()
    key_file: str = ""
    keep_domain: bool = False
    pseudonym_hex: int = 16
    fold_local_case: bool = False
    key: bytes = field(default=b"", repr=False, compare=False)


@dataclass(slots=True, frozen=True)
class LiveConfig:
    """[live]: what `sensor live --config F` runs with when no option says otherwise."""

    interfaces: tuple[str, ...] = ()
    workers: int = 1  # 0: one per core ("auto")
    user: str = ""  # "": nobody when started as root, else the current user
    sessions: str = ""  # output paths; "": not written
    conns: str = ""
    alerts: str = ""
    host_scores: str = ""
    stats: str = ""
    stats_interval_s: int = 60
    heap_trim_s: int = 60  # 0: never (sensor.service.memory)
    reserve_mb: int = 512  # memory made resident at start, shared by the workers; 0: none
    snaplen: int = 262144
    buffer_mb: int = 64
    promisc: bool = True
    cpus: tuple[int, ...] = ()  # cores the capture processes run on (sensor.service.affinity)


@dataclass(slots=True, frozen=True)
class Config:
    """The whole validated configuration, plus what was assumed for keys the user left out."""

    source: str
    site: SiteConfig
    windows: WindowsConfig
    bounds: BoundsConfig
    suppression: SuppressionConfig
    rules: dict[str, RuleConfig]
    assumed: tuple[str, ...]
    reassembly: ReassemblyConfig
    smtp: SmtpLimits = field(default_factory=SmtpLimits)  # [smtp]: the SMTP parser's bounds
    decode: DecodeLimits = field(default_factory=DecodeLimits)  # [decode]: the decoder's bounds
    model: ModelConfig = field(default_factory=lambda: ModelConfig(10, 6, 250100, 5))
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)  # [privacy]: what is written
    syslog: SyslogConfig = field(default_factory=SyslogConfig)  # [syslog]
    sinks: tuple[Any, ...] = ()  # [[sinks.syslog]] tables as sensor.sinks.syslog.SinkSpec
    live: LiveConfig = field(default_factory=LiveConfig)  # [live]: the service's settings
    capture: CaptureConfig = field(default_factory=CaptureConfig)  # [capture]


def default_text() -> str:
    """The documented default configuration file, as shipped in the package."""
    return resources.files("sensor").joinpath(DEFAULT_NAME).read_text(encoding="utf-8")


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


class _Checker:
    """Merges a user table over the defaults, rejecting unknown keys and wrong types."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, got: object) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: expected {expected}, got {_show(got)}")

    def merge(self, user: dict[str, Any], default: dict[str, Any], prefix: str) -> dict[str, Any]:
        out = dict(default)
        for key, value in user.items():
            path = f"{prefix}{key}"
            if key not in default:
                known = ", ".join(sorted(default))
                raise ConfigError(f"{self.source}: {path}: unknown key (known: {known})")
            want = default[key]
            if isinstance(want, dict):
                if not isinstance(value, dict):
                    raise self.fail(path, "a table", value)
                out[key] = self.merge(value, want, path + ".")
            else:
                out[key] = self.check_type(path, want, value)
        return out

    def check_type(self, path: str, want: object, value: object) -> object:
        if path == "live.workers":  # an integer or "auto": checked by _live
            return value
        if isinstance(want, bool):
            if not isinstance(value, bool):
                raise self.fail(path, "true or false", value)
        elif isinstance(want, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, "an integer", value)
        elif isinstance(want, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(path, "a number", value)
            return float(value)
        elif isinstance(want, str):
            if not isinstance(value, str):
                raise self.fail(path, "a string", value)
        elif isinstance(want, list):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise self.fail(path, "a list of strings", value)
        return value


def _range(chk: _Checker, path: str, value: object) -> None:
    """Out-of-range values: every number is > 0 unless its name says otherwise."""
    key = path.rpartition(".")[2]
    if isinstance(value, bool):
        return
    if key in ("severity", "slow_severity"):
        assert isinstance(value, int)
        if not 1 <= value <= 10:
            raise chk.fail(path, "an integer from 1 to 10", value)
    elif key == "window" or key.endswith("_window"):
        if value not in WINDOW_NAMES:
            raise chk.fail(path, 'one of "short", "medium", "long"', value)
    elif key.endswith(("_ratio", "_share")):
        assert isinstance(value, float)
        if not 0.0 < value <= 1.0:
            raise chk.fail(path, "a number > 0 and <= 1", value)
    elif key in ("rexmit_segments", "heap_trim_s", "reserve_mb"):
        assert isinstance(value, int)
        if value < 0:
            raise chk.fail(path, "an integer >= 0 (0: off)", value)
    elif key == "escalate_factor":
        assert isinstance(value, float)
        if not value > 1.0:
            raise chk.fail(path, "a number > 1", value)
    elif isinstance(value, int) and value <= 0:
        raise chk.fail(path, "an integer > 0", value)
    elif isinstance(value, float) and value <= 0:
        raise chk.fail(path, "a number > 0", value)


def _networks(chk: _Checker, path: str, items: list[str]) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for index, item in enumerate(items):
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise chk.fail(path, "IP networks in CIDR form like \"10.0.0.0/8\"", item) from None
        if net.network_address != ipaddress.ip_interface(item).ip:  # host bits set: a typo?
            raise chk.fail(f"{path}[{index}]", f"a network address ({net})", item)
        out.append(net)
    return tuple(out)


def _timezone(chk: _Checker, name: str) -> str:
    """An IANA time zone name the running Python can load (its tz database or tzdata); UTC
    needs neither."""
    if name == "UTC":
        return name
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise chk.fail("site.timezone", 'an IANA time zone name like "Europe/Berlin"',
                       name) from None
    return name


def _work_hours(chk: _Checker, text: str) -> tuple[int, int]:
    """(first working hour, first hour after work) of "HH-HH", local time."""
    m = _WORK_HOURS.fullmatch(text.strip())
    if m is None or not (0 <= int(m[1]) <= 23 and 0 <= int(m[2]) <= 24) or int(m[1]) == int(m[2]):
        raise chk.fail("site.work_hours", 'two different hours "HH-HH" like "08-18" (0-24)', text)
    return int(m[1]), int(m[2]) % 24


def _work_days(chk: _Checker, days: list[str]) -> frozenset[int]:
    """Working days as datetime.weekday() numbers (0 is Monday)."""
    out: set[int] = set()
    for day in days:
        key = day.strip().lower()
        if key not in WEEKDAYS:
            raise chk.fail("site.work_days", 'day names "mon" to "sun"', day)
        out.add(WEEKDAYS.index(key))
    return frozenset(out)


def _build(chk: _Checker, merged: dict[str, Any], user: dict[str, Any],
           sinks: object = None) -> Config:
    site_t, win_t = merged["site"], merged["windows"]
    for section in ("windows", "bounds", "suppression", "reassembly", "model"):
        for key, value in merged[section].items():
            _range(chk, f"{section}.{key}", value)
    rules: dict[str, RuleConfig] = {}
    for name, table in merged["rules"].items():
        for key, value in table.items():
            _range(chk, f"rules.{name}.{key}", value)
        params = {k: v for k, v in table.items() if k not in ("enabled", "severity", "sid")}
        nums = {k: float(v) for k, v in params.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        rules[name] = RuleConfig(name, table["enabled"], table["severity"], table["sid"], params,
                                 nums)
    syslog = _syslog(chk, merged["syslog"])
    if not win_t["short_s"] <= win_t["medium_s"] <= win_t["long_s"]:
        raise chk.fail("windows", "short_s <= medium_s <= long_s", list(win_t.values()))
    if merged["bounds"]["host_idle_s"] < win_t["long_s"]:
        raise chk.fail("bounds.host_idle_s", f"at least windows.long_s ({win_t['long_s']})",
                       merged["bounds"]["host_idle_s"])
    if not site_t["sensor"].strip():
        raise chk.fail("site.sensor", "a non-empty name", site_t["sensor"])
    domains = []
    for dom in site_t["local_domains"]:
        if not dom or " " in dom or "@" in dom:
            raise chk.fail("site.local_domains", "domain names like \"example.org\"", dom)
        domains.append(dom.lower().rstrip("."))
    site = SiteConfig(site_t["sensor"], _networks(chk, "site.home_net", site_t["home_net"]),
                      _networks(chk, "site.mail_servers", site_t["mail_servers"]),
                      frozenset(domains), _timezone(chk, site_t["timezone"]),
                      *_work_hours(chk, site_t["work_hours"]), _work_days(chk, site_t["work_days"]))
    return Config(chk.source, site, WindowsConfig(**win_t), BoundsConfig(**merged["bounds"]),
                  SuppressionConfig(**merged["suppression"]), rules, _assumed(user, site),
                  reassembly=ReassemblyConfig(**merged["reassembly"]),
                  smtp=_smtp_limits(chk, merged["smtp"]),
                  decode=_decode_limits(chk, merged["decode"]),
                  model=ModelConfig(**merged["model"]),
                  privacy=_privacy(chk, merged["privacy"]),
                  syslog=syslog, sinks=_sinks(chk, sinks, syslog.format),
                  live=_live(chk, merged["live"]),
                  capture=_capture(chk, merged["capture"]))


MAX_RESERVE_MB: Final = 1 << 20  # [live] reserve_mb: 1 TiB
_IFACE_NAME = re.compile(r"[^\s/:]{1,15}")  # Linux IFNAMSIZ 16 with the NUL; no '/', ':' or space
_USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}\$?")


def _live(chk: _Checker, table: dict[str, Any]) -> LiveConfig:
    """The [live] section: interface names, workers ("auto" or >= 1), a user name, sizes > 0;
    relative output paths are relative to the working directory, as on the command line."""
    for i, name in enumerate(table["interfaces"]):
        if not _IFACE_NAME.fullmatch(name):
            raise chk.fail(f"live.interfaces[{i}]", "an interface name like \"eth1\"", name)
    workers = table["workers"]
    if workers == "auto":
        n = 0
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        n = workers
    else:
        raise chk.fail("live.workers", 'an integer >= 1 or "auto"', workers)
    if table["user"] and not _USER_NAME.fullmatch(table["user"]):
        raise chk.fail("live.user", "a user name like \"nobody\" (\"\": the default)",
                       table["user"])
    for key in ("stats_interval_s", "heap_trim_s", "reserve_mb", "snaplen", "buffer_mb"):
        _range(chk, f"live.{key}", table[key])
    if table["reserve_mb"] > MAX_RESERVE_MB:
        raise chk.fail("live.reserve_mb", f"an integer from 0 to {MAX_RESERVE_MB}",
                       table["reserve_mb"])
    try:
        cpus = parse_cpus(table["cpus"])
    except ValueError:
        raise chk.fail("live.cpus", 'a list of cores like "0,2-3" ("": not pinned)',
                       table["cpus"]) from None
    return LiveConfig(tuple(table["interfaces"]), n, table["user"], table["sessions"],
                      table["conns"], table["alerts"], table["host_scores"], table["stats"],
                      table["stats_interval_s"], table["heap_trim_s"], table["reserve_mb"],
                      table["snaplen"], table["buffer_mb"], table["promisc"], cpus)


def _capture(chk: _Checker, table: dict[str, Any]) -> CaptureConfig:
    """The [capture] section: a loss percentage that warns, from 0 (always) to 100."""
    pct = table["loss_warn_percent"]
    if not 0.0 <= pct <= 100.0:
        raise chk.fail("capture.loss_warn_percent", "a percentage from 0 to 100", pct)
    return CaptureConfig(float(pct))


def read_key(path: str, where: str) -> bytes:
    """The bytes of a key file (a final newline removed); ConfigError naming `where` and the
    file when it cannot be read or holds fewer than MIN_KEY_BYTES bytes."""
    from sensor.output.privacy import MIN_KEY_BYTES

    try:
        with open(path, "rb") as fh:
            key = fh.read(1 << 16)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read key file \"{path}\": {exc.strerror}") from None
    if key.endswith(b"\n"):
        key = key[:-2] if key.endswith(b"\r\n") else key[:-1]
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: expected a key of at least {MIN_KEY_BYTES} bytes in "
                          f"\"{path}\", got {len(key)}")
    return key


def _privacy(chk: _Checker, table: dict[str, Any]) -> PrivacyConfig:
    """The [privacy] section: known field names, each in one list; the key read when needed."""
    from sensor.output.privacy import MAX_HEX, MIN_HEX, expand

    sets = {name: expand(table[name], f"{chk.source}: privacy.{name}")
            for name in ("drop", "pseudonymise")}
    both = sets["drop"] & sets["pseudonymise"]
    if both:
        raise chk.fail("privacy.drop", "fields not also in privacy.pseudonymise",
                       ", ".join(sorted(both)))
    hex_len = table["pseudonym_hex"]
    if not MIN_HEX <= hex_len <= MAX_HEX:
        raise chk.fail("privacy.pseudonym_hex", f"an integer from {MIN_HEX} to {MAX_HEX}",
                       hex_len)
    path: str = table["key_file"]
    key = b""
    if table["pseudonymise"]:
        if not path:
            raise chk.fail("privacy.key_file", "a key file (privacy.pseudonymise is not empty)",
                           path)
        if chk.source != "defaults" and not os.path.isabs(path):  # beside the config file
            path = os.path.join(os.path.dirname(os.path.abspath(chk.source)), path)
        key = read_key(path, f"{chk.source}: privacy.key_file")
    return PrivacyConfig(tuple(table["drop"]), tuple(table["pseudonymise"]), path,
                         table["keep_domain"], hex_len, table["fold_local_case"], key)


def _syslog(chk: _Checker, table: dict[str, Any]) -> SyslogConfig:
    """The [syslog] section: a known facility and format, header fields RFC 5424 accepts."""
    from sensor.sinks.formats import FORMATS

    facility = table["facility"].strip().lower()
    if facility not in FACILITIES:
        raise chk.fail("syslog.facility", 'a facility name like "local0" or "mail"',
                       table["facility"])
    for key, limit in (("hostname", 255), ("app_name", 48)):
        value = table[key]
        if len(value) > limit or not all("!" <= c <= "~" for c in value):
            raise chk.fail(f"syslog.{key}", f"printable ASCII without spaces, at most {limit} "
                           "characters", value)
    if not table["app_name"]:
        raise chk.fail("syslog.app_name", "a non-empty name", "")
    if len(table["sd_id"]) > 32 or not _SD_ID.fullmatch(table["sd_id"]):
        raise chk.fail("syslog.sd_id", 'NAME@ENTERPRISE-NUMBER of at most 32 characters, like '
                       '"port25@32473"', table["sd_id"])
    if table["format"] not in FORMATS:
        raise chk.fail("syslog.format", "one of " + ", ".join(FORMATS), table["format"])
    return SyslogConfig(FACILITIES.index(facility), table["hostname"], table["app_name"],
                        table["sd_id"], table["format"], table["sessions"])


def _sinks(chk: _Checker, sinks: object, fmt: str) -> tuple[Any, ...]:
    """[[sinks.syslog]]: one destination per table (sensor.sinks.syslog validates each); a
    table that names no format gets [syslog] format `fmt`."""
    if sinks is None:
        return ()
    if not isinstance(sinks, dict):
        raise chk.fail("sinks", "a table holding [[sinks.syslog]] tables", sinks)
    for key in sinks:
        if key != "syslog":
            raise ConfigError(f"{chk.source}: sinks.{key}: unknown key (known: syslog)")
    tables = sinks.get("syslog", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise chk.fail("sinks.syslog", "[[sinks.syslog]] tables", tables)
    from sensor.sinks.syslog import spec_from_table

    here = os.path.dirname(os.path.abspath(chk.source)) if chk.source != "defaults" else ""
    out = []
    for i, table in enumerate(tables):
        t = {"format": fmt, **table}
        for key in ("ca_file", "cert_file", "key_file"):  # relative to the config file
            path = t.get(key)
            if isinstance(path, str) and path and here and not os.path.isabs(path):
                t[key] = os.path.join(here, path)
        out.append(spec_from_table(t, f"{chk.source}: sinks.syslog[{i}]"))
    return tuple(out)


def _decode_limits(chk: _Checker, table: dict[str, Any]) -> DecodeLimits:
    """The [decode] section: every bound an integer > 0."""
    for key, value in table.items():
        _range(chk, f"decode.{key}", value)
    return DecodeLimits(**table)


def _smtp_limits(chk: _Checker, table: dict[str, Any]) -> SmtpLimits:
    """The [smtp] section: every bound an integer > 0, lines at least RFC 5321's 512 octets."""
    for key, value in table.items():
        _range(chk, f"smtp.{key}", value)
    if table["max_line"] < RFC_COMMAND_LINE:
        raise chk.fail("smtp.max_line", f"an integer >= {RFC_COMMAND_LINE}", table["max_line"])
    return SmtpLimits(**table)


def _assumed(user: dict[str, Any], site: SiteConfig) -> tuple[str, ...]:
    given = user.get("site", {})
    out: list[str] = []
    if "home_net" not in given:
        out.append("home_net: assumed RFC 1918 private networks and IPv6 ULA "
                   "(10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7)")
    if "mail_servers" not in given:
        out.append("mail_servers: none given, so every home_net host delivering to the internet "
                   "on port 25 is a spambot candidate")
    if not site.local_domains:
        out.append("local_domains: none given, so open_relay and relay_abuse cannot be detected")
    return tuple(out)


def parse_config(text: str, source: str) -> Config:
    """Validate TOML text against the defaults; ConfigError names source, key and expectation."""
    chk = _Checker(source)
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    default = tomllib.loads(default_text())
    sinks = user.pop("sinks", None)  # a list of tables the defaults cannot show
    return _build(chk, chk.merge(user, default, ""), user, sinks)


def load_config(path: str | None) -> Config:
    """The configuration from a TOML file, or the defaults (with `assumed` filled) when None."""
    if path is None:
        return parse_config("", "defaults")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_config(text, path)
