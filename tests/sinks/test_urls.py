"""Sink URLs and [[sinks.syslog]] tables: defaults, options, and one-line errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.errors import ConfigError
from sensor.sinks.syslog import parse_sink_url, spec_from_table


@pytest.mark.parametrize(("url", "scheme", "host", "port"), [
    ("udp://siem", "udp", "siem", 514),
    ("tcp://siem", "tcp", "siem", 514),
    ("tls://siem", "tls", "siem", 6514),
    ("tcp+tls://siem", "tls", "siem", 6514),
    ("relp://siem", "relp", "siem", 2514),
    ("TCP://SIEM.example:1514", "tcp", "siem.example", 1514),
    ("udp://[2001:db8::1]:5140", "udp", "2001:db8::1", 5140),
    ("relp://10.0.0.1:20514/", "relp", "10.0.0.1", 20514),
])
def test_default_ports_and_hosts(url: str, scheme: str, host: str, port: int) -> None:
    spec = parse_sink_url(url)
    assert (spec.scheme, spec.host, spec.port, spec.path) == (scheme, host, port, "")
    assert spec.url == url
    assert spec.framing == "octet" and spec.queue_size == 10000 and spec.verify_hostname


def test_unix_path() -> None:
    spec = parse_sink_url("unix:///dev/log")
    assert (spec.scheme, spec.path, spec.name) == ("unix", "/dev/log", "unix:///dev/log")


def test_query_options_fill_the_spec() -> None:
    spec = parse_sink_url("tls://siem:6514?framing=lf&format=cef&ca=/etc/ca.pem&cert=/c.pem"
                          "&key=/k.pem&verify=0&tls_min=1.3&queue=5000&server_name=siem.example"
                          "&flush_timeout=2.5")
    assert (spec.framing, spec.format, spec.ca_file, spec.cert_file, spec.key_file) == (
        "lf", "cef", "/etc/ca.pem", "/c.pem", "/k.pem")
    assert (spec.verify_hostname, spec.tls_min, spec.queue_size) == (False, "1.3", 5000)
    assert (spec.server_name, spec.flush_timeout_s) == ("siem.example", 2.5)
    assert spec.name == "tls://siem:6514"  # no file names or options in summaries
    assert parse_sink_url("udp://h?max_datagram=1024").max_datagram == 1024
    assert parse_sink_url("udp://[::1]").name == "udp://[::1]:514"


@pytest.mark.parametrize(("url", "says"), [
    ("siem:514", "expected a URL"),
    ("http://siem", "unknown scheme 'http'"),
    ("tcp://:514", "expected a host"),
    ("tcp://siem:0", "port from 1 to 65535, got 0"),
    ("tcp://siem:70000", "port from 1 to 65535"),
    ("tcp://siem:x", "port from 1 to 65535"),
    ("tcp://user:pw@siem", "passwords are not supported"),
    ("tcp://siem/path", "no path after the host"),
    ("tcp://siem#frag", "no #fragment"),
    ("unix://dev/log", "unix:///ABSOLUTE/PATH"),
    ("tcp://siem?colour=red", "unknown option 'colour'"),
    ("tcp://siem?framing=lf&framing=octet", "given twice"),
    ("tcp://siem?framing=nul", "expected \"octet\" or \"lf\", got 'nul'"),
    ("udp://siem?framing=lf", "only applies to tcp:// and tls:// sinks, not udp://"),
    ("tcp://siem?ca=/x", "only applies to tls:// sinks, not tcp://"),
    ("tcp://siem?max_datagram=1000", "only applies to udp://"),
    ("udp://siem?max_datagram=100", "integer from 480 to 65507, got '100'"),
    ("tcp://siem?queue=0", "integer from 1 to 10000000, got '0'"),
    ("tcp://siem?queue=-5", "integer from 1 to 10000000"),
    ("tls://siem?verify=maybe", "a boolean"),
    ("tls://siem?tls_min=1.0", "\"1.2\" or \"1.3\", got '1.0'"),
    ("tls://siem?cert=/c.pem", "needs both cert and key"),
    ("tcp://siem?format=xml", "one of rfc5424, rfc3164, json, cef, leef, ecs"),
    ("tcp://siem?flush_timeout=nan", "seconds from 0 to 3600"),
])
def test_bad_urls_give_one_line(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sink_url(url, "--syslog")
    text = str(caught.value)
    assert text.startswith("--syslog: ")
    assert says in text
    assert "\n" not in text


def test_table() -> None:
    spec = spec_from_table({"url": "tcp://siem:1514", "framing": "lf", "queue_size": 50,
                            "format": "leef", "flush_timeout_s": 1}, "sensor.toml: sinks.syslog[0]")
    assert (spec.port, spec.framing, spec.queue_size, spec.format, spec.flush_timeout_s) == (
        1514, "lf", 50, "leef", 1.0)
    tls = spec_from_table({"url": "tls://siem", "verify_hostname": False, "ca_file": "/ca"}, "t")
    assert (tls.verify_hostname, tls.ca_file) == (False, "/ca")


@pytest.mark.parametrize(("table", "says"), [
    ({"url": "tcp://siem", "colour": 1}, "sinks.syslog[0].colour: unknown key"),
    ({"framing": "lf"}, "sinks.syslog[0].url: expected a sink URL string"),
    ({"url": "ftp://siem"}, "sinks.syslog[0].url: 'ftp://siem': unknown scheme"),
    ({"url": "tcp://siem", "queue_size": 0}, "sinks.syslog[0].queue_size: expected an integer"),
    ({"url": "tcp://siem", "queue_size": True}, "queue_size: expected an integer"),
    ({"url": "tls://siem", "verify_hostname": "no way"}, "verify_hostname: expected a boolean"),
    ({"url": "udp://siem", "ca_file": "/ca"}, "ca_file: only applies to tls://"),
])
def test_bad_tables(table: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        spec_from_table(table, "sensor.toml: sinks.syslog[0]")
    assert says in str(caught.value)
    assert str(caught.value).startswith("sensor.toml: sinks.syslog[0]")


@given(st.text(max_size=80) | st.from_regex(
    r"(udp|tcp|tls|relp|unix|tcp\+tls)://[^?#]{0,20}(\?[a-z_]{0,12}=[^&]{0,8}(&[a-z_]{0,12}=.{0,5})?)?",
    fullmatch=True))
def test_any_string_parses_or_gives_one_config_error_line(url: str) -> None:
    try:
        spec = parse_sink_url(url)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert spec.scheme in ("udp", "tcp", "tls", "relp", "unix")
    assert spec.path if spec.scheme == "unix" else 1 <= spec.port <= 65535
