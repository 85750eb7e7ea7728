from collections.abc import Callable

from sensor.decode.packet import Segment

def feed(
    packets: bytes,
    meta: bytes,
    linktype: int,
    decode: Callable[[int, bytes], Segment | None],
    segment: Callable[[float, Segment], None],
    /,
) -> tuple[int, float | None, float | None]: ...
