"""sensor/tcp/_ident.c writes the same text as its Python readings in sensor/tcp/conn.py."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sensor.tcp import _ident, conn

ports = st.integers(min_value=-(2**63), max_value=2**63 - 1)
texts = st.text(max_size=40)
# what capture gives: whole seconds and microseconds, as the decoders add them
micro = st.builds(lambda s, u: s + u * 1e-6, st.integers(0, 2**33), st.integers(0, 999_999))
nano = st.builds(lambda s, n: s + n * 1e-9, st.integers(0, 2**32), st.integers(0, 999_999_999))


@given(st.one_of(micro, nano, st.floats(allow_nan=True, allow_infinity=True)),
       texts, ports, texts, ports)  # fmt: skip
@example(1.0, "a", 0, "b", 0)
@example(1700000000.0, "10.0.0.1", 25, "10.0.0.2", 65535)
@example(4294967295.999999, "", -1, "", 2**63 - 1)
@example(4294967296.0, "x", 1, "y", 2)
@example(2.0**31, "x", 1, "y", 2)  # a power of two: repr writes it
@example(0.999999, "x", 1, "y", 2)
@example(-0.0, "x", 1, "y", 2)
@example(1e-7, "x", 1, "y", 2)
def test_uid_key_is_the_python_reading(ts: float, cip: str, cport: int, sip: str,
                                       sport: int) -> None:  # fmt: skip
    assert _ident.uid_key(ts, cip, cport, sip, sport) == conn.uid_key_py(ts, cip, cport, sip,
                                                                         sport)


def test_uid_key_near_every_microsecond_boundary() -> None:
    """Each double next to a whole microsecond (above and below it, where a decimal of six
    places no longer reads back as the same double) gets repr's text."""
    for sec in (1, 2, 3, 1_000_000_000, 1_700_000_000, 2**31 - 1, 2**31, 2**32 - 1):
        for us in (0, 1, 499_999, 500_000, 999_999):
            ts = sec + us * 1e-6
            for x in (math.nextafter(ts, -math.inf), ts, math.nextafter(ts, math.inf)):
                assert _ident.uid_key(x, "a", 1, "b", 2) == conn.uid_key_py(x, "a", 1, "b", 2)


def test_uid_key_refuses_what_make_uid_is_never_given() -> None:
    with pytest.raises(TypeError):
        _ident.uid_key(1, "a", 1, "b", 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _ident.uid_key(1.0, b"a", 1, "b", 2)  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        _ident.uid_key(1.0, "a", 2**64, "b", 2)
    with pytest.raises(TypeError):
        _ident.uid_key(1.0, "a", 1, "b")  # type: ignore[call-arg]


@given(st.binary(min_size=4, max_size=4))
def test_ip4_text_is_the_python_reading(addr: bytes) -> None:
    a, b, c, d = struct.unpack("4B", addr)
    assert _ident.ip4_text(addr) == f"{a}.{b}.{c}.{d}" == conn.ip_text_of(addr)


def test_ip4_text_takes_four_bytes_only() -> None:
    for bad in (b"", b"\x01\x02\x03", b"\x01" * 16, bytearray(4), "1234"):
        with pytest.raises(TypeError):
            _ident.ip4_text(bad)  # type: ignore[arg-type]


def test_compiled_conn_uses_the_c_writers() -> None:
    assert conn.NATIVE_IDENT
