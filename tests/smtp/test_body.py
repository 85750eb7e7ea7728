"""MessageBody: exact unstuffed size and bare-LF count whatever the chunking; the capped copy."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.smtp.body import MessageBody

CONTENT = b"..first\r\nmid\r\n..\r\nbare\nlf\r\n...three\r\n"


def feed(chunks: list[bytes], cap: int = 1 << 20) -> MessageBody:
    body = MessageBody(cap, dot_stuffed=True)
    for c in chunks:
        body.add(c)
    return body


def test_unstuffing_and_counts() -> None:
    body = feed([CONTENT])
    assert body.message() == b".first\r\nmid\r\n.\r\nbare\nlf\r\n..three\r\n"
    assert body.size == len(body.message())
    assert body.bare_lf == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(CONTENT)), max_size=6))
def test_any_chunking_gives_same_size_and_bare_lf(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [CONTENT[a:b] for a, b in zip([0, *points], [*points, len(CONTENT)], strict=True)]
    body = feed(chunks)
    assert (body.size, body.bare_lf, body.message()) == (
        len(b".first\r\nmid\r\n.\r\nbare\nlf\r\n..three\r\n"),
        1,
        b".first\r\nmid\r\n.\r\nbare\nlf\r\n..three\r\n",
    )


def test_cap_truncates_copy_but_not_size() -> None:
    body = feed([b"a" * 50, b"b" * 50], cap=60)
    assert body.truncated
    assert body.message() == b"a" * 50 + b"b" * 10
    assert body.size == 100


def test_gap_stops_the_copy() -> None:
    body = MessageBody(1000, dot_stuffed=False)
    body.add(b"..x")
    body.gap()
    body.add(b"more")
    assert body.broken and body.message() == b"..x" and body.size == 7


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(CONTENT)), max_size=6), st.integers(0, 60))
def test_head_is_a_prefix_of_the_message(cuts: list[int], n: int) -> None:
    points = sorted(set(cuts))
    chunks = [CONTENT[a:b] for a, b in zip([0, *points], [*points, len(CONTENT)], strict=True)]
    body = feed(chunks)
    head, whole = body.head(n)
    message = body.message()
    assert message.startswith(head)
    assert whole == (head == message)
    assert len(head) >= min(n, len(message)) * 3 // 4  # unstuffing drops at most 1 byte in 4


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(CONTENT)), max_size=6))
def test_plain_from_promise_gives_the_same_counts(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [CONTENT[a:b] for a, b in zip([0, *points], [*points, len(CONTENT)], strict=True)]
    want = feed(chunks)
    body = MessageBody(1 << 20, dot_stuffed=True)
    for c in chunks:
        # the largest offset the promise holds from: after the last CRLF "." in the chunk
        last = c.rfind(b"\r\n.")
        body.add(c, last + 1 if last >= 0 else 0)
    assert (body.size, body.bare_lf, body.message()) == (want.size, want.bare_lf, want.message())


def test_unstuffed_copy_when_nothing_was_stuffed() -> None:
    body = feed([b"a\r\n.b\r\n", b"c\r\n"])
    assert body.stuffed == 0 and body.message() == b"a\r\n.b\r\nc\r\n"
    body = feed([b"..a\r\n"])  # a leading stuffed dot counts: content starts at a line start
    assert body.stuffed == 1 and body.message() == b".a\r\n"


LONG = b"a" * 998


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([LONG, b"b", b"\r\n", b"\n", b"x" * 300]), max_size=12),
       st.lists(st.integers(0, 5000), max_size=6))  # fmt: skip
def test_overlong_text_lines_counted_whatever_the_chunking(
    parts: list[bytes], cuts: list[int]
) -> None:
    content = b"".join(parts)
    expected = sum(len(line) > 999 for line in content.split(b"\n"))  # 998 text octets + CR
    points = sorted({c for c in cuts if c <= len(content)})
    chunks = [content[a:b] for a, b in zip([0, *points], [*points, len(content)], strict=True)]
    assert feed(chunks).long_lines == expected


def test_the_text_line_limit_is_1000_octets_with_crlf() -> None:
    assert feed([b"a" * 998 + b"\r\n"]).long_lines == 0
    assert feed([b"a" * 999 + b"\r\n"]).long_lines == 1
    assert feed([b"a" * 5000, b"a" * 5000, b"\r\nshort\r\n" + b"b" * 1200]).long_lines == 2
    assert MessageBody(1 << 20, dot_stuffed=False).long_lines == 0  # BDAT: not judged
