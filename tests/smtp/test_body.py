"""MessageBody: end of data, exact unstuffed size, bare LF and long lines whatever the chunking;
the capped copy; the C scan, the compiled per-byte reading and the bytes-method reading agree
(tests/test_native.py checks that the C scan is built)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.body import NATIVE_SCAN, MessageBody

CONTENT = b"..first\r\nmid\r\n..\r\nbare\nlf\r\n...three\r\n"
UNSTUFFED = b".first\r\nmid\r\n.\r\nbare\nlf\r\n..three\r\n"
MARKER = b"\r\n.\r\n"
MODES = ("per_byte", "counting", *(("native",) if NATIVE_SCAN else ()))
"""The readings of DATA content: the compiled loop's, the bytes methods', the C scan's."""


def reading(body: MessageBody, mode: str) -> MessageBody:
    body.native = mode == "native"
    body.per_byte = mode == "per_byte"
    return body


def feed(
    chunks: list[bytes], cap: int = 1 << 20, mode: str = "per_byte"
) -> tuple[MessageBody, bytes | None]:
    """DATA content chunk by chunk; (body, bytes after the marker or None if none was seen)."""
    body = reading(MessageBody(cap, dot_stuffed=True), mode)
    for k, c in enumerate(chunks):
        end = body.feed_dot(c)
        if end >= 0:
            return body, c[end:] + b"".join(chunks[k + 1 :])
    return body, None


def facts(body: MessageBody, rest: bytes | None) -> tuple[object, ...]:
    return (body.message(), body.size, body.raw, body.stuffed, body.bare_lf, body.long_lines,
            body.truncated, rest)  # fmt: skip


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def reference(stream: bytes) -> tuple[object, ...]:
    """What the body must find, computed on the whole stream at once."""
    s = b"\r\n" + stream  # content starts at a line start
    j = s.find(MARKER)
    content, rest = (stream, None) if j < 0 else (s[2 : j + 2], s[j + 5 :])
    message = content[1:] if content.startswith(b"..") else content
    message = message.replace(b"\r\n..", b"\r\n.")
    bare = sum(1 for i, c in enumerate(content) if c == 10 and (i == 0 or content[i - 1] != 13))
    long_lines = sum(len(line) > 999 for line in content.split(b"\n"))  # 998 text octets + CR
    stuffed = (b"\r\n" + content).count(b"\r\n..")
    return (message, len(message), len(content), stuffed, bare, long_lines, False, rest)


def test_unstuffing_and_counts() -> None:
    body, rest = feed([CONTENT])
    assert rest is None
    assert body.message() == UNSTUFFED
    assert body.size == len(UNSTUFFED)
    assert body.bare_lf == 1


def test_marker_ends_the_content_and_the_rest_is_returned() -> None:
    assert facts(*feed([b".\r\nQUIT\r\n"]))[1:] == (0, 0, 0, 0, 0, False, b"QUIT\r\n")
    body, rest = feed([b"..x\r\n..\r\n.\r\nNOOP\r\n"])
    assert body.message() == b".x\r\n.\r\n" and rest == b"NOOP\r\n"
    body, rest = feed([b"a\r\n.b\r\n", b"c\r\n"])  # a dot line that is no marker is content
    assert body.stuffed == 0 and body.message() == b"a\r\n.b\r\nc\r\n" and rest is None
    body, rest = feed([b"..a\r\n"])  # a leading stuffed dot counts: content starts a line
    assert body.stuffed == 1 and body.message() == b".a\r\n"


STREAM = b"Subject: x\r\n\r\nline\r\n..dot\r\n\r\n.\r\nQUIT\r\n"


def test_marker_found_at_every_split_point() -> None:
    want = reference(STREAM)
    assert want[0] == b"Subject: x\r\n\r\nline\r\n.dot\r\n\r\n" and want[-1] == b"QUIT\r\n"
    for mode in MODES:
        for i in range(len(STREAM) + 1):
            assert facts(*feed([STREAM[:i], STREAM[i:]], mode=mode)) == want, (mode, i)
        singles = [STREAM[i : i + 1] for i in range(len(STREAM))]
        assert facts(*feed(singles, mode=mode)) == want


PIECES = [b"\r\n", b".", b"..", b"\r\n.\r\n", b"x", b"\n", b"\r", b"ab\r\n..", b"a" * 998,
          b"y" * 300]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30), st.lists(st.integers(0, 4000), max_size=8))
def test_any_chunking_gives_what_the_whole_stream_gives(
    pieces: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(pieces)
    chunks = split(stream, cuts)
    want = reference(stream)
    for mode in MODES:
        assert facts(*feed(chunks, mode=mode)) == want, mode


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6), st.integers(0, 700))
def test_random_bytes_every_reading_agrees(stream: bytes, cuts: list[int], cap: int) -> None:
    chunks = split(stream, cuts)
    fast = facts(*feed(chunks, cap, mode="per_byte"))
    for mode in MODES:
        assert fast == facts(*feed(chunks, cap, mode=mode)), mode
    want = reference(stream)
    if cap >= len(stream):
        assert fast == want
    else:  # the copy may be cut, nothing else changes
        assert fast[1:6] == want[1:6] and fast[7] == want[7]


def test_the_marker_taken_back_from_a_full_copy() -> None:
    """Content of exactly `cap` bytes, then a marker split after its dot: nothing was cut."""
    body, rest = feed([b"abcd\r\n", b".", b"\r\nQUIT\r\n"], cap=6)
    assert (body.message(), body.size, body.truncated, rest) == (b"abcd\r\n", 6, False, b"QUIT\r\n")
    body, rest = feed([b"abcd\r\n", b".\r", b"\n"], cap=5)
    assert (body.message(), body.size, body.truncated, rest) == (b"abcd\r", 6, True, b"")


def test_cap_truncates_copy_but_not_size() -> None:
    body, _ = feed([b"a" * 50, b"b" * 50], cap=60)
    assert body.truncated
    assert body.message() == b"a" * 50 + b"b" * 10
    assert body.size == 100


def test_gap_stops_the_copy_and_no_pattern_straddles_it() -> None:
    for mode in MODES:
        body = reading(MessageBody(1000, dot_stuffed=True), mode)
        assert body.feed_dot(b"x\r\n.") == -1
        body.gap()
        assert body.feed_dot(b"\r\nmore\nlines\r\n..\r\n") == -1  # no marker across the hole
        assert (body.broken, body.message(), body.bare_lf, body.stuffed) == (True, b"x\r\n.", 1, 1)
        assert body.feed_dot(b".\r\nQUIT") == 3
    raw = MessageBody(1000, dot_stuffed=False)
    raw.add(b"..x")
    raw.gap()
    raw.add(b"more")
    assert raw.broken and raw.message() == b"..x" and raw.size == 7


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(CONTENT)), max_size=6), st.integers(0, 60))
def test_head_is_a_prefix_of_the_message(cuts: list[int], n: int) -> None:
    body, _ = feed(split(CONTENT, cuts))
    head, whole = body.head(n)
    message = body.message()
    assert message.startswith(head)
    assert whole == (head == message)
    assert len(head) >= min(n, len(message)) * 3 // 4  # unstuffing drops at most 1 byte in 4


def test_the_text_line_limit_is_1000_octets_with_crlf() -> None:
    for mode in MODES:
        assert feed([b"a" * 998 + b"\r\n"], mode=mode)[0].long_lines == 0
        assert feed([b"a" * 999 + b"\r\n"], mode=mode)[0].long_lines == 1
        chunks = [b"a" * 5000, b"a" * 5000, b"\r\nshort\r\n" + b"b" * 1200]
        assert feed(chunks, mode=mode)[0].long_lines == 2
    assert MessageBody(1 << 20, dot_stuffed=False).long_lines == 0  # BDAT: not judged
