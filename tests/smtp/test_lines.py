"""LineBuffer: CRLF framing, bare LF/CR, bounds, DATA and BDAT takes across any split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.commands import RESYNC_WORD_LENGTHS, is_command_line
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


def resync_reads(data: list[bytes], max_line: int, skip: bool) -> tuple[list[bytes], int]:
    """The lines a resync reads from chunks fed one by one, passing text over with skip_text or
    not; and the bytes left buffered."""
    buf = LineBuffer(max_line)
    got: list[bytes] = []
    for chunk in data:
        buf.feed(chunk)
        while True:
            if skip:
                buf.skip_text(RESYNC_WORD_LENGTHS)
            line = buf.pop_line()
            if line is None:
                break
            got.append(line)
    return got, len(buf)


_TEXT_LINES = st.sampled_from(
    [b"QUIT", b"quit", b"Quit", b"DATA", b"MAIL FROM:<a@b.example>", b"mail from:<a@b>",
     b"RCPT TO:<c@d.example>", b"STARTTLS", b"X-LINK2STATE", b"XCLIENT NAME=x", b".", b"..",
     b"", b" ", b"Hello there", b"Data follows", b"lorem ipsum dolor", b"x" * 70, b"QUIT\r",
     b"RSET now", b"HELO", b"EHLO mx.example", b"\xdfTARTTLS", b"\x16\x03\x01\x00\x05hello",
     b"\x16\x03"]
) | st.binary(max_size=20)
_ENDS = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r\r\n"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_TEXT_LINES, _ENDS), max_size=25),
    st.lists(st.integers(0, 600), max_size=5),
    st.integers(2, 40),
)
def test_skip_text_passes_over_only_lines_that_cannot_end_a_resync(
    body: list[tuple[bytes, bytes]], cuts: list[int], max_line: int
) -> None:
    """Whatever the chunking: the lines a resync reads with skip_text are those it reads
    without, in order, less lines that are neither a command, the end of content nor a TLS
    hello."""
    stream = b"".join(line + end for line, end in body)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    every, left = resync_reads(chunks, max_line, skip=False)
    kept, left_skipping = resync_reads(chunks, max_line, skip=True)
    assert left_skipping == left
    it = iter(every)
    for line in kept:  # a subsequence of every line
        assert any(line == other for other in it)
    dropped = list(every)
    for line in kept:
        dropped.remove(line)
    assert not [line for line in dropped
                if is_command_line(line) or line == b"." or line.startswith(b"\x16\x03")]


def test_skip_text_stops_at_a_verb_a_dot_and_an_unfinished_line() -> None:
    """What the C loop passes over (tests/test_native.py requires it built; without it
    skip_text passes nothing over and pop_line returns every line, as the property test
    above allows)."""
    buf = LineBuffer(100)
    buf.feed(b"Hello there\r\nabc def\r\n.\r\nso on\r\nQUIT\r\nlorem ipsum")
    buf.skip_text(RESYNC_WORD_LENGTHS)
    assert buf.pop_line() == b"."
    buf.skip_text(RESYNC_WORD_LENGTHS)
    assert buf.pop_line() == b"QUIT"
    buf.skip_text(RESYNC_WORD_LENGTHS)
    assert buf.pop_line() is None and len(buf) == len(b"lorem ipsum")
    assert (buf.bare_lf, buf.bare_cr, buf.truncated) == (0, 0, 0)
