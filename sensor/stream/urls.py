"""Stream URLs: `redis://HOST:PORT/DB?stream=NAME[&maxlen=N][&queue=N][&group=G]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sensor.errors import ConfigError

SCHEMES: Final = ("redis", "rediss", "unix")  # what redis-py's from_url accepts
DEFAULT_MAXLEN: Final = 1_000_000
"""Entries a stream keeps (XADD MAXLEN ~): about 1-2 GB of Redis memory at 1-2 KB a record."""
DEFAULT_QUEUE: Final = 100_000
"""Records a publisher holds while Redis is slow or away; beyond, new ones are dropped."""
MAX_NUMBER: Final = 1 << 40
_OURS: Final = ("stream", "maxlen", "queue", "group")


@dataclass(slots=True, frozen=True)
class StreamUrl:
    """Where records go or come from: the server (as redis-py takes it) and our options."""

    server: str  # the URL without our query keys, for redis.Redis.from_url
    stream: str
    maxlen: int = DEFAULT_MAXLEN
    queue_size: int = DEFAULT_QUEUE
    group: str = ""

    @property
    def name(self) -> str:
        """The destination without credentials, for summaries and warnings."""
        parts = urlsplit(self.server)
        host = parts.hostname or ""
        where = f"{host}:{parts.port or 6379}" if parts.scheme != "unix" else parts.path
        return f"{parts.scheme}://{where}{parts.path if parts.scheme != 'unix' else ''}" \
               f"?stream={self.stream}"


def parse_stream_url(url: str, option: str) -> StreamUrl:
    """Parse a stream URL given to `option`; ConfigError names the option and what is wrong."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"{option}: {what} in {url!r}")

    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise bad(f"expected a redis://HOST:PORT/DB URL (schemes: {', '.join(SCHEMES)})")
    if parts.scheme != "unix" and not parts.hostname:
        raise bad("expected a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise bad("expected a port 1-65535") from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise bad(f"expected a database number as the path, got {db!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OURS}
    rest = [(k, v) for k, v in query if k not in _OURS]
    stream = ours.get("stream", "")
    if not stream:
        raise bad("expected ?stream=NAME")
    numbers: dict[str, int] = {}
    for key, default in (("maxlen", DEFAULT_MAXLEN), ("queue", DEFAULT_QUEUE)):
        text = ours.get(key, str(default))
        if not text.isdigit() or not 0 < int(text) <= MAX_NUMBER:
            raise bad(f"{key}: expected an integer > 0, got {text!r}")
        numbers[key] = int(text)
    server = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    return StreamUrl(server, stream, numbers["maxlen"], numbers["queue"], ours.get("group", ""))
