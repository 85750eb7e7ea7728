"""LineBuffer: CRLF framing, bare LF/CR, bounds, DATA and BDAT takes across any split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.lines import LineBuffer


def lines_of(buf: LineBuffer) -> list[bytes]:
    out = []
    while (line := buf.pop_line()) is not None:
        out.append(line)
    return out


def test_crlf_lines_and_partial_line_waits() -> None:
    buf = LineBuffer(100)
    buf.feed(b"EHLO a\r\nMAIL FROM:<x@y>\r\nRC")
    assert lines_of(buf) == [b"EHLO a", b"MAIL FROM:<x@y>"]
    buf.feed(b"PT TO:<z@y>\r")
    assert lines_of(buf) == []
    buf.feed(b"\n")
    assert lines_of(buf) == [b"RCPT TO:<z@y>"]
    assert (buf.bare_lf, buf.bare_cr, buf.truncated) == (0, 0, 0)


def test_bare_lf_and_bare_cr_are_counted() -> None:
    buf = LineBuffer(100)
    buf.feed(b"NOOP\nHELO a\rb\r\n")
    assert lines_of(buf) == [b"NOOP", b"HELO a\rb"]
    assert buf.bare_lf == 1
    assert buf.bare_cr == 1


def test_line_beyond_max_is_truncated_and_rest_discarded() -> None:
    buf = LineBuffer(16)
    buf.feed(b"X" * 40)
    assert lines_of(buf) == [b"X" * 16]
    assert len(buf) == 0
    buf.feed(b"Y" * 10 + b"\r\nQUIT\r\n")
    assert lines_of(buf) == [b"QUIT"]
    assert buf.truncated == 1


def test_complete_long_line_is_cut_to_max() -> None:
    buf = LineBuffer(8)
    buf.feed(b"0123456789abc\r\nNOOP\r\n")
    assert lines_of(buf) == [b"01234567", b"NOOP"]
    assert buf.truncated == 1


def test_take_all_empties_the_buffer() -> None:
    buf = LineBuffer(10)
    buf.feed(b"DATA\r\nSubject: x")
    assert buf.pop_line() == b"DATA"
    assert buf.take_all() == b"Subject: x"
    assert len(buf) == 0 and buf.take_all() == b""


def test_take_returns_exact_byte_counts() -> None:
    buf = LineBuffer(10)
    buf.feed(b"\r\n.\r\nabc")
    assert buf.take(4) == b"\r\n.\r"
    assert buf.take(10) == b"\nabc"
    assert buf.take(3) == b""


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=30), st.integers(4, 64))
def test_random_bytes_keep_buffer_bounded(chunks: list[bytes], max_line: int) -> None:
    buf = LineBuffer(max_line)
    for chunk in chunks:
        buf.feed(chunk)
        while (line := buf.pop_line()) is not None:
            assert len(line) <= max_line
        assert len(buf) <= max_line


def test_whole_lines_only_for_clean_complete_lines() -> None:
    for per_byte in (True, False):
        buf = LineBuffer(10)
        buf.per_byte = per_byte
        assert buf.whole_lines(b"EHLO a\r\nMAIL b\r\n") == [b"EHLO a", b"MAIL b"]
        assert buf.whole_lines(b"\r\n") == [b""]
        assert buf.whole_lines(b"x" * 10 + b"\r\n") == [b"x" * 10]
        for refused in (b"EHLO a", b"a\nb\r\n", b"a\rb\r\n", b"x" * 11 + b"\r\n", b"a\r\n\n",
                        b"\n", b"", b"a\r\r\n"):  # fmt: skip
            assert buf.whole_lines(refused) is None
        buf.feed(b"partial")
        assert buf.whole_lines(b"line\r\n") is None  # bytes are buffered: the general path
        assert buf.pop_line() is None and len(buf) == len(b"partial")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"ab", b"250-x", b"250 y"]), max_size=12),
    st.integers(1, 12),
)
def test_whole_lines_equals_feed_then_pop_line(parts: list[bytes], max_line: int) -> None:
    data = b"".join(parts)
    fast, counting, slow = LineBuffer(max_line), LineBuffer(max_line), LineBuffer(max_line)
    fast.per_byte, counting.per_byte = True, False
    got = fast.whole_lines(data)
    assert got == counting.whole_lines(data)  # the two ways of splitting agree
    if got is None:
        return
    slow.feed(data)
    assert got == lines_of(slow)
    assert (slow.bare_lf, slow.bare_cr, slow.truncated, len(slow)) == (0, 0, 0, 0)
    assert len(fast) == 0
