from collections.abc import Callable

from sensor.decode.packet import Segment

def feed(
    packets: bytes,
    meta: bytes,
    linktype: int,
    decode: Callable[[int, bytes], Segment | None],
    segment: Callable[..., None],
    keyed: bool = ...,
    /,
) -> tuple[int, float | None, float | None]: ...

class FlowKey:
    def __new__(cls, src: bytes, sport: int, dst: bytes, dport: int, /) -> FlowKey: ...
    def __hash__(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> bytes | int: ...
