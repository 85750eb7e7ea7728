"""Framing and truncation of the syslog transports, without a collector."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sensor.sinks.transports import (
    LF_ESCAPE,
    TRUNCATION_MARKER,
    frame_lf,
    frame_octet,
    truncate_datagram,
)


@given(st.binary(max_size=3000))
def test_octet_frame_parses_back(message: bytes) -> None:
    frame = frame_octet(message)
    length, _, rest = frame.partition(b" ")
    assert int(length) == len(rest) and rest == message


@given(st.binary(max_size=3000))
def test_lf_frame_is_one_line(message: bytes) -> None:
    frame = frame_lf(message)
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert frame[:-1] == message.replace(b"\n", LF_ESCAPE)


@given(st.text(max_size=3000), st.integers(480, 2048))
def test_truncation_keeps_utf8_whole_and_fits(text: str, limit: int) -> None:
    message = text.encode()
    if len(message) <= limit:
        return
    cut = truncate_datagram(message, limit)
    assert len(cut) <= limit and cut.endswith(TRUNCATION_MARKER)
    head = cut[: -len(TRUNCATION_MARKER)]
    assert message.startswith(head)
    assert text.startswith(head.decode("utf-8"))  # never a split character
    assert len(head) > limit - len(TRUNCATION_MARKER) - 4
