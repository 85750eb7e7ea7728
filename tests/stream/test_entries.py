"""Stream entries: what a publisher writes reads back as the same header."""

from __future__ import annotations

import pytest

from sensor.stream.entries import SESSION, EntryError, Parsed, make_fields


@pytest.mark.parametrize("t", [0.0, 1700000000.0123, 1700000000.000788 + 0.022524118423461914,
                               1e16, 1e-7, 123.0, 2.5e-310, 1.7976931348623157e308])
def test_merge_key_reads_back_as_the_same_float(t: float) -> None:
    fields = make_fields(b"tap", b"tap/h/1/ab", 7, SESSION, t, b"10.0.0.1", b"10.0.0.2", b"{}")
    p = Parsed("1-0", fields)
    assert (p.t, p.seq, p.kind, p.sensor, p.client, p.server) == (
        t, 7, SESSION, "tap", "10.0.0.1", "10.0.0.2")


def test_nan_key_is_refused() -> None:
    fields = make_fields(b"tap", b"src", 1, SESSION, float("nan"), b"", b"", b"")
    with pytest.raises(EntryError):
        Parsed("1-0", fields)
