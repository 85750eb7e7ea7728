"""Syslog sink destinations: URLs and [[sinks.syslog]] tables parsed into SinkSpec."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from sensor.errors import ConfigError
from sensor.sinks.formats import FORMATS

SCHEMES: Final = ("udp", "tcp", "tls", "relp", "unix")
# tcp+tls is the spelling DESIGN.md uses for RFC 5425; it means the same as tls.
SCHEME_ALIASES: Final = {"tcp+tls": "tls"}
DEFAULT_PORTS: Final = {
    "udp": 514,  # RFC 5426 section 3.3
    "tcp": 514,  # customary for RFC 6587 (no registered port)
    "tls": 6514,  # RFC 5425 section 4.1
    "relp": 2514,  # rsyslog's documented default for imrelp examples
}
# The --format names of sensor.sinks.formats.FORMATS; a spec only carries the name for the CLI.
FORMAT_NAMES: Final = FORMATS  # the --format names
FRAMINGS: Final = ("octet", "lf")
TLS_VERSIONS: Final = ("1.2", "1.3")
MIN_DATAGRAM: Final = 480  # RFC 5426 section 3.2: every receiver accepts 480 octets over IPv4
MAX_DATAGRAM: Final = 65507  # largest UDP payload over IPv4
MAX_QUEUE: Final = 10_000_000

@dataclass(slots=True, frozen=True)
class SinkSpec:
    """One syslog destination, from a URL or a [[sinks.syslog]] table."""

    url: str
    scheme: str  # udp | tcp | tls | relp | unix
    host: str
    port: int
    path: str  # for unix://
    framing: str = "octet"  # tcp/tls: "octet" (RFC 6587 octet counting) or "lf"
    format: str = "rfc5424"  # carried for the CLI's wiring
    max_datagram: int = 2048  # udp truncation size (RFC 5426 section 3.2's SHOULD)
    queue_size: int = 10000
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_hostname: bool = True
    server_name: str = ""
    tls_min: str = "1.2"
    flush_timeout_s: float = 5.0

    @property
    def name(self) -> str:
        """The destination without its options, for summaries and warnings."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


# Option names: URL query key -> (SinkSpec field, kind). Tables use the field names.
_QUERY_KEYS: Final = {
    "framing": "framing",
    "format": "format",
    "max_datagram": "max_datagram",
    "queue": "queue_size",
    "ca": "ca_file",
    "cert": "cert_file",
    "key": "key_file",
    "verify": "verify_hostname",
    "server_name": "server_name",
    "tls_min": "tls_min",
    "flush_timeout": "flush_timeout_s",
}
_TLS_FIELDS: Final = (
    "ca_file", "cert_file", "key_file", "verify_hostname", "server_name", "tls_min")
_FIELD_SCHEMES: Final = {
    "framing": ("tcp", "tls"),
    "max_datagram": ("udp",),
    **{f: ("tls",) for f in _TLS_FIELDS},
}


def _expect(label: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"{label}: expected {expected}, got {got!r}")


def _check_field(field: str, value: object, label: str) -> object:
    """Validates one option value (a string from a URL, or a TOML value) for `field`;
    `label` names it in errors."""
    if field == "framing":
        if value not in FRAMINGS:
            raise _expect(label, '"octet" or "lf"', value)
        return value
    if field == "format":
        if value not in FORMAT_NAMES:
            raise _expect(label, "one of " + ", ".join(FORMAT_NAMES), value)
        return value
    if field == "tls_min":
        if value not in TLS_VERSIONS:
            raise _expect(label, '"1.2" or "1.3"', value)
        return value
    if field in ("max_datagram", "queue_size"):
        lo, hi = (MIN_DATAGRAM, MAX_DATAGRAM) if field == "max_datagram" else (1, MAX_QUEUE)
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.isascii() and value.isdigit():
            number = int(value)
        if number is None or not lo <= number <= hi:
            raise _expect(label, f"an integer from {lo} to {hi}", value)
        return number
    if field == "flush_timeout_s":
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                seconds = None
        if seconds is None or not math.isfinite(seconds) or not 0.0 <= seconds <= 3600.0:
            raise _expect(label, "a number of seconds from 0 to 3600", value)
        return seconds
    if field == "verify_hostname":
        if isinstance(value, bool):
            return value
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise _expect(label, "a boolean (1/0, true/false)", value)
    # file names and the TLS server name: any non-empty string without NUL
    if not isinstance(value, str) or "\x00" in value:
        raise _expect(label, "a string", value)
    return value


def _base_spec(url: str, where: str) -> SinkSpec:
    """The scheme, host, port and path of a sink URL (options are applied by the callers)."""
    head = f"{where}: {url!r}"
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{head}: expected a URL such as udp://HOST:514, tcp://HOST:514, "
                          "tls://HOST:6514, relp://HOST:2514 or unix:///dev/log")
    try:
        parts = urlsplit(url)
        port_given = parts.port
    except ValueError as exc:
        raise ConfigError(f"{head}: expected a port from 1 to 65535 ({exc})") from None
    scheme = SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in SCHEMES:
        raise ConfigError(f"{head}: unknown scheme {parts.scheme!r} "
                          f"(expected one of {', '.join(SCHEMES)})")
    if parts.fragment:
        raise ConfigError(f"{head}: a sink URL has no #fragment")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{head}: user names and passwords are not supported in a sink URL")
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"{head}: expected unix:///ABSOLUTE/PATH such as unix:///dev/log")
        return SinkSpec(url=url, scheme=scheme, host="", port=0, path=parts.path)
    if parts.path not in ("", "/"):
        raise ConfigError(f"{head}: expected no path after the host and port, got {parts.path!r}")
    host = parts.hostname or ""
    if not host:
        raise ConfigError(f"{head}: expected a host, as in {scheme}://HOST:{DEFAULT_PORTS[scheme]}")
    if port_given == 0:
        raise ConfigError(f"{head}: expected a port from 1 to 65535, got 0")
    port = port_given if port_given is not None else DEFAULT_PORTS[scheme]
    return SinkSpec(url=url, scheme=scheme, host=host, port=port, path="")


def _apply(spec: SinkSpec, options: dict[str, object], where: str,
           labels: dict[str, str]) -> SinkSpec:
    """Returns `spec` with the validated options (field -> value) set; `labels` names each
    option in errors."""
    changes: dict[str, Any] = {}
    for field, value in options.items():
        label = labels[field]
        allowed = _FIELD_SCHEMES.get(field)
        if allowed is not None and spec.scheme not in allowed:
            raise ConfigError(f"{label}: only applies to "
                              + " and ".join(f"{s}://" for s in allowed)
                              + f" sinks, not {spec.scheme}://")
        changes[field] = _check_field(field, value, label)
    new = replace(spec, **changes)
    if (new.cert_file == "") != (new.key_file == ""):
        raise ConfigError(f"{where}: a client certificate needs both cert and key")
    return new


def parse_sink_url(url: str, where: str = "--syslog") -> SinkSpec:
    """Parses a sink URL such as tcp://siem:514?framing=lf; raises ConfigError naming `where`."""
    spec = _base_spec(url, where)
    query = urlsplit(url).query
    options: dict[str, object] = {}
    names: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        field = _QUERY_KEYS.get(key)
        if field is None:
            raise ConfigError(f"{where}: {url!r}: unknown option {key!r} (known: "
                              + ", ".join(sorted(_QUERY_KEYS)) + ")")
        if field in options:
            raise ConfigError(f"{where}: {url!r}: option {key!r} given twice")
        options[field] = value
        names[field] = f"{where}: {url!r}: {key}"
    return _apply(spec, options, where, names)


_TABLE_FIELDS: Final = ("url", *_QUERY_KEYS.values())


def spec_from_table(table: dict[str, Any], where: str) -> SinkSpec:
    """Builds a spec from a [[sinks.syslog]] table: `url` plus option keys named as SinkSpec's
    fields (framing, format, max_datagram, queue_size, ca_file, ...); ConfigError names `where`."""
    for key in table:
        if key not in _TABLE_FIELDS:
            raise ConfigError(f"{where}.{key}: unknown key (known: "
                              + ", ".join(sorted(_TABLE_FIELDS)) + ")")
    url = table.get("url")
    if not isinstance(url, str):
        raise ConfigError(f"{where}.url: expected a sink URL string such as tcp://siem:514, "
                          f"got {url!r}")
    spec = parse_sink_url(url, f"{where}.url")
    options = {k: v for k, v in table.items() if k != "url"}
    return _apply(spec, options, where, {k: f"{where}.{k}" for k in options})
