"""The transport between sensors and detectors: what a Redis Streams or a Kafka client must do.

A stream is an append-only log of entries (a flat map of byte fields) in publish order. Readers
form a consumer group: each entry is delivered to the group once, stays pending until acked, and
a restarted reader gets its pending entries again. Redis Streams map it one to one (XADD,
XREADGROUP, XACK, XAUTOCLAIM, XRANGE, a key for the checkpoint); Kafka would map it to produce,
a consumer group's poll, committed offsets (acks of a prefix per partition) and a compacted
topic for the checkpoint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

Fields = dict[bytes, bytes]
Entry = tuple[str, Fields]
"""An entry: its id in the stream (ordered as published) and its fields."""
Row = tuple[bytes, ...]
"""The values of the fields named to `StreamTransport.packer`, in that order."""
Packed = Any
"""One entry as `StreamTransport.packer` made it: the transport's own form (a map of fields by
default, the packed command arguments for Redis)."""


class TransportError(Exception):
    """The stream server could not be reached or refused an operation (the caller retries)."""


class StreamTransport(ABC):
    """One stream on one server. Methods raise TransportError on any server or network failure;
    after one, the next call reconnects."""

    @abstractmethod
    def publish(self, batch: list[Fields]) -> None:
        """Append the entries in order. On TransportError a prefix of them may be appended."""

    def packer(self, common: Fields, names: tuple[bytes, ...]) -> Callable[[Row], Packed]:
        """A function giving one entry, in the form `publish_packed` takes, from the values of
        `names`: the fields of `common`, then `names` with those values. For a publisher whose
        entries all start with the same fields and have the same names, which a transport may
        encode once (this one keeps the map, for `publish`)."""

        def pack(row: Row) -> Packed:
            fields = dict(common)
            fields.update(zip(names, row, strict=True))
            return fields

        return pack

    def publish_packed(self, batch: list[Packed]) -> None:
        """`publish` of entries made by `packer`."""
        self.publish(batch)

    @abstractmethod
    def create_group(self, group: str) -> None:
        """Create the consumer group at the stream's beginning (and the stream) unless it exists."""

    @abstractmethod
    def read_group(self, group: str, consumer: str, count: int, block_s: float,
                   pending_after: str | None = None) -> list[Entry]:
        """Up to `count` entries never delivered to the group (waiting up to `block_s` for one),
        or, with `pending_after`, this consumer's pending entries after that id."""

    @abstractmethod
    def claim_pending(self, group: str, consumer: str) -> int:
        """Make every entry pending in the group this consumer's; returns how many."""

    @abstractmethod
    def read_range(self, after: str, count: int) -> list[Entry]:
        """Up to `count` entries after id `after` ("" from the first one kept), not through the
        group (for replay)."""

    @abstractmethod
    def first_id(self) -> str | None:
        """The id of the oldest entry the stream still holds (None when it is empty)."""

    @abstractmethod
    def load_checkpoint(self, key: str) -> bytes | None:
        """The checkpoint stored under `key`, or None."""

    @abstractmethod
    def commit(self, group: str, ids: list[str], key: str, checkpoint: bytes) -> None:
        """Acknowledge `ids` and store `checkpoint` under `key`, both or neither."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""
