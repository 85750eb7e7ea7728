"""The Redis Streams transport (redis-py): XADD MAXLEN ~, XREADGROUP, XACK with MULTI/EXEC.

Publishing goes through sensor.stream.resp when the URL allows, and redis-py is then never
imported by a sensor (it costs 80-150 ms of CPU a run)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from itertools import chain
from typing import TYPE_CHECKING, Any, Final

from sensor.stream.resp import RespConnection, RespError, handles, pack
from sensor.stream.transport import Entry, Fields, Row, StreamTransport, TransportError
from sensor.stream.urls import StreamUrl

if TYPE_CHECKING:
    import redis

SOCKET_TIMEOUT_S: Final = 10.0  # a blocked read waits at most block_s, well below this
CONNECT_TIMEOUT_S: Final = 5.0
_XADD_BATCH: Final = """
local i = 2
local n = 0
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, i + count))
  i = i + count + 1
  n = n + 1
end
return n
"""
"""ARGV: maxlen, then per entry the number of field and value arguments and those arguments."""


class RedisTransport(StreamTransport):
    """One Redis stream. redis-py's own retries are off: a failed XADD batch must be seen as
    failed, never silently sent twice, and the callers count and back off themselves."""

    def __init__(self, url: StreamUrl) -> None:
        self.url = url
        self.stream = url.stream
        self._sha = hashlib.sha1(_XADD_BATCH.encode()).hexdigest().encode()
        self._entry_args = 0  # arguments of an entry made by the last packer()
        self._redis: redis.Redis | None = None
        self._resp = (RespConnection(url.server, CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S)
                      if handles(url.server) else None)
        if self._resp is None:  # redis-py publishes: imported now, with the rest of start-up
            self._client  # noqa: B018

    @property
    def _client(self) -> redis.Redis:
        """redis-py's client, made (and redis-py imported) on first use."""
        if self._redis is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._redis = redis.Redis.from_url(
                self.url.server, socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                health_check_interval=0)
        return self._redis

    def ping(self) -> None:
        """Check that the server answers."""
        from redis.exceptions import RedisError

        try:
            self._client.ping()
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None

    def publish(self, batch: list[Fields]) -> None:
        """One EVALSHA of a script that XADDs every entry: one reply per batch, and the batch
        is appended whole or not at all. The command is packed here: redis-py's generic
        packing and one reply per XADD cost the packet loop's process 40 us a record."""
        n, parts = _pack_entries(batch)
        self._send(n, parts)

    def packer(self, common: Fields, names: tuple[bytes, ...]) -> Callable[[Row], bytes]:
        """One entry's script arguments in the RESP protocol, by one %-format made here with
        `common` and `names` filled in: a fifth of the cost of packing each field."""
        fmt = _row_format(common, names)
        self._entry_args = 2 * (len(common) + len(names)) + 1
        if len(names) == 6:  # the publisher's: spelled out, 30% faster than the general case
            def pack6(row: Row) -> bytes:
                a, b, c, d, e, f = row
                return fmt % (len(a), a, len(b), b, len(c), c, len(d), d, len(e), e, len(f), f)

            return pack6

        def pack(row: Row) -> bytes:
            return fmt % tuple(chain.from_iterable(zip(map(len, row), row, strict=True)))

        return pack

    def publish_packed(self, batch: list[bytes]) -> None:
        """`publish` of entries made by `packer`, as they are."""
        self._send(len(batch) * self._entry_args, batch)

    def _send(self, n: int, parts: list[bytes]) -> None:
        """EVALSHA of the batch script with the packed entries (`n` arguments in `parts`)."""
        stream = self.stream.encode()
        maxlen = b"%d" % self.url.maxlen
        head = (b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                % (n + 5, len(self._sha), self._sha, len(stream), stream, len(maxlen), maxlen))
        payload = b"".join([head, *parts])
        if self._resp is not None:
            self._send_resp(payload)
            return
        from redis.exceptions import NoScriptError, RedisError

        pool = self._client.connection_pool
        conn: Any = None
        try:
            conn = pool.get_connection()
            conn.send_packed_command([payload], check_health=False)
            try:
                conn.read_response()
            except NoScriptError:  # a new or restarted server: load the script, then again
                conn.send_command("SCRIPT", "LOAD", _XADD_BATCH)
                conn.read_response()
                conn.send_packed_command([payload], check_health=False)
                conn.read_response()
        except RedisError as exc:
            if conn is not None:
                conn.disconnect()
            raise TransportError(_describe(exc)) from None
        except OSError as exc:
            if conn is not None:
                conn.disconnect()
            raise TransportError(str(exc)) from None
        finally:
            if conn is not None:
                pool.release(conn)

    def _send_resp(self, payload: bytes) -> None:
        """`_send` through this module's own connection."""
        assert self._resp is not None
        try:
            try:
                self._resp.command(payload)
            except RespError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                # a new or restarted server: load the script, then again
                self._resp.command(pack(b"SCRIPT", b"LOAD", _XADD_BATCH.encode()))
                self._resp.command(payload)
        except RespError as exc:
            raise TransportError(str(exc).splitlines()[0][:200] or "error reply") from None
        except (OSError, ValueError) as exc:
            raise TransportError(str(exc) or type(exc).__name__) from None

    def create_group(self, group: str) -> None:
        from redis.exceptions import RedisError, ResponseError

        try:
            self._client.xgroup_create(self.stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TransportError(_describe(exc)) from None
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None

    def read_group(self, group: str, consumer: str, count: int, block_s: float,
                   pending_after: str | None = None) -> list[Entry]:
        from redis.exceptions import RedisError, ResponseError

        start = ">" if pending_after is None else pending_after
        block = None if pending_after is not None else max(1, int(block_s * 1000))
        try:
            got: Any = self._client.xreadgroup(group, consumer, {self.stream: start},
                                               count=count, block=block)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):  # the server lost it (restarted without persistence)
                self.create_group(group)
                return []
            raise TransportError(_describe(exc)) from None
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None
        return _entries(got[0][1]) if got else []

    def claim_pending(self, group: str, consumer: str) -> int:
        from redis.exceptions import RedisError

        claimed = 0
        start = "0-0"
        try:
            while True:
                # (not JUSTID: redis-py then drops the cursor)
                got: Any = self._client.xautoclaim(self.stream, group, consumer, 0,
                                                   start_id=start, count=1000)
                claimed += len(got[1])
                start = _text(got[0])
                if start == "0-0":
                    return claimed
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None

    def read_range(self, after: str, count: int) -> list[Entry]:
        from redis.exceptions import RedisError

        try:
            got: Any = self._client.xrange(self.stream, f"({after}" if after else "-", "+",
                                           count=count)
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None
        return _entries(got or [])

    def first_id(self) -> str | None:
        from redis.exceptions import RedisError

        try:
            got: Any = self._client.xrange(self.stream, "-", "+", count=1)
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None
        return _text(got[0][0]) if got else None

    def load_checkpoint(self, key: str) -> bytes | None:
        from redis.exceptions import RedisError

        try:
            got: Any = self._client.get(key)
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None
        return None if got is None else bytes(got)

    def commit(self, group: str, ids: list[str], key: str, checkpoint: bytes) -> None:
        from redis.exceptions import RedisError

        pipe = self._client.pipeline(transaction=True)
        for at in range(0, len(ids), 10_000):
            pipe.xack(self.stream, group, *ids[at:at + 10_000])
        pipe.set(key, checkpoint)
        try:
            pipe.execute()
        except RedisError as exc:
            raise TransportError(_describe(exc)) from None
        finally:
            pipe.reset()

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        if self._redis is not None:
            from redis.exceptions import RedisError

            with contextlib.suppress(RedisError):
                self._redis.close()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _entries(raw: Any) -> list[Entry]:
    """redis-py's [(id, {field: value})] as our entries (a deleted entry has no fields)."""
    out: list[Entry] = []
    for eid, fields in raw:
        out.append((_text(eid), dict(fields) if fields else {}))
    return out


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _pack_entries(batch: list[Fields]) -> tuple[int, list[bytes]]:
    """The script's arguments for `batch` in the RESP protocol (per entry, the number of field
    and value arguments, then those), and how many arguments that is."""
    parts: list[bytes] = []
    add = parts.append
    n = 0
    for fields in batch:
        count = len(fields) * 2
        n += count + 1
        arg = b"%d" % count
        add(b"$%d\r\n%s\r\n" % (len(arg), arg))
        for k, v in fields.items():
            add(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
    return n, parts


def _row_format(common: Fields, names: tuple[bytes, ...]) -> bytes:
    """A %-format of one entry's arguments as `_pack_entries` packs them: the fields of
    `common` filled in, each of `names` then taking the length and bytes of its value."""
    count = b"%d" % (2 * (len(common) + len(names)))
    fixed = [count]
    for k, v in common.items():
        fixed += (k, v)
    fmt = b"".join(_bulk(arg).replace(b"%", b"%%") for arg in fixed)
    for k in names:
        fmt += _bulk(k).replace(b"%", b"%%") + b"$%d\r\n%s\r\n"
    return fmt


def _bulk(arg: bytes) -> bytes:
    """One argument as a RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(arg), arg)
