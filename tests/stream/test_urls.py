"""Stream URLs: our keys taken out, the rest left to redis-py, errors naming what is wrong."""

from __future__ import annotations

import pytest

from sensor.errors import ConfigError
from sensor.stream.urls import DEFAULT_MAXLEN, parse_stream_url


def test_our_keys_are_taken_out_and_the_rest_kept() -> None:
    u = parse_stream_url("redis://:pw@h:6380/2?stream=p25&maxlen=5000&group=g&queue=10&"
                         "ssl_cert_reqs=none", "--from")
    assert (u.stream, u.maxlen, u.group, u.queue_size) == ("p25", 5000, "g", 10)
    assert u.server == "redis://:pw@h:6380/2?ssl_cert_reqs=none"
    assert u.name == "redis://h:6380/2?stream=p25"  # no password in summaries
    assert parse_stream_url("redis://h/0?stream=s", "x").maxlen == DEFAULT_MAXLEN


@pytest.mark.parametrize(("url", "what"), [
    ("http://h/0?stream=s", "expected a redis://"),
    ("redis:///0?stream=s", "expected a host"),
    ("redis://h:99999/0?stream=s", "port"),
    ("redis://h/zero?stream=s", "database number"),
    ("redis://h/0", "?stream=NAME"),
    ("redis://h/0?stream=s&maxlen=0", "maxlen: expected an integer > 0"),
    ("redis://h/0?stream=s&queue=x", "queue: expected an integer > 0"),
])
def test_bad_urls_say_what_is_wrong(url: str, what: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        parse_stream_url(url, "--publish")
    assert what in str(exc.value) and str(exc.value).startswith("--publish: ")
