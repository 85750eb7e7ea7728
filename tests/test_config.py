"""Configuration: packaged defaults, merging, and one-line errors naming file, key, expectation."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from sensor.config import default_text, load_config, parse_config
from sensor.detect.cli import config_cmd
from sensor.errors import ConfigError


def test_defaults_load_and_say_what_they_assumed() -> None:
    cfg = load_config(None)
    assert [str(n) for n in cfg.site.home_net] == [
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    assert cfg.site.mail_servers == () and cfg.site.local_domains == frozenset()
    assert any(a.startswith("home_net: assumed RFC 1918") for a in cfg.assumed)
    assert any(a.startswith("local_domains:") for a in cfg.assumed)
    assert cfg.rules["spambot"].num("burst_mail_from") == 5.0
    assert cfg.rules["spambot"].word("burst_window") == "short"


def test_user_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[site]\nhome_net = ["10.20.0.0/16"]\nlocal_domains = ["Campus.Example."]\n'
                    "[rules.spambot]\nburst_mail_from = 10\nrefusal_ratio = 1\n")
    cfg = load_config(str(path))
    assert [str(n) for n in cfg.site.home_net] == ["10.20.0.0/16"]
    assert cfg.site.local_domains == frozenset({"campus.example"})
    assert cfg.rules["spambot"].num("burst_mail_from") == 10.0
    assert cfg.rules["spambot"].num("refusal_ratio") == 1.0  # an int where a float is expected
    assert cfg.rules["auth_bruteforce"].num("failures") == 10.0  # untouched default
    assert not any(a.startswith("home_net") for a in cfg.assumed)


@pytest.mark.parametrize(("text", "message"), [
    ("[rules.spambot]\nburst_mail_from = -1\n",
     "site.toml: rules.spambot.burst_mail_from: expected an integer > 0, got -1"),
    ("[rules.spambot]\nmsgs = 3\n", "site.toml: rules.spambot.msgs: unknown key (known: "),
    ("[nonsense]\nx = 1\n", "site.toml: nonsense: unknown key"),
    ("[rules.spambot]\nburst_mail_from = \"ten\"\n",
     'site.toml: rules.spambot.burst_mail_from: expected an integer, got "ten"'),
    ("[rules.spambot]\nenabled = 1\n",
     "site.toml: rules.spambot.enabled: expected true or false, got 1"),
    ("[rules.spambot]\nseverity = 11\n",
     "site.toml: rules.spambot.severity: expected an integer from 1 to 10, got 11"),
    ("[rules.spambot]\nburst_window = \"day\"\n",
     'site.toml: rules.spambot.burst_window: expected one of "short", "medium", "long", got "day"'),
    ("[rules.dictionary_harvest]\nunknown_ratio = 1.5\n",
     "site.toml: rules.dictionary_harvest.unknown_ratio: expected a number > 0 and <= 1, got 1.5"),
    ("[suppression]\nescalate_factor = 1\n",
     "site.toml: suppression.escalate_factor: expected a number > 1, got 1.0"),
    ("[site]\nhome_net = [\"10.0.0.0/33\"]\n",
     'site.toml: site.home_net: expected IP networks in CIDR form like "10.0.0.0/8", got '
     '"10.0.0.0/33"'),
    ("[site]\nhome_net = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n",
     'site.toml: site.home_net[1]: expected a network address (10.0.0.0/8), got "10.0.0.1/8"'),
    ("[site]\nhome_net = [\"2001:db8::1/32\"]\n",
     'site.toml: site.home_net[0]: expected a network address (2001:db8::/32), got '
     '"2001:db8::1/32"'),
    ("[site]\nmail_servers = [\"192.0.2.25\", \"192.0.2.1/24\"]\n",
     'site.toml: site.mail_servers[1]: expected a network address (192.0.2.0/24), got '
     '"192.0.2.1/24"'),
    ("[site]\nmail_servers = \"10.0.0.1\"\n",
     'site.toml: site.mail_servers: expected a list of strings, got "10.0.0.1"'),
    ("[site]\nlocal_domains = [\"a b\"]\n",
     'site.toml: site.local_domains: expected domain names like "example.org", got "a b"'),
    ("[site]\ntimezone = \"Mars/Olympus_Mons\"\n",
     'site.toml: site.timezone: expected an IANA time zone name like "Europe/Berlin", got '
     '"Mars/Olympus_Mons"'),
    ("[site]\ntimezone = \"/etc/passwd\"\n", "site.toml: site.timezone: expected an IANA"),
    ("[site]\nwork_hours = \"08-08\"\n",
     'site.toml: site.work_hours: expected two different hours "HH-HH" like "08-18" (0-24), '
     'got "08-08"'),
    ("[site]\nwork_hours = \"8am-6pm\"\n", "site.toml: site.work_hours: expected two"),
    ("[site]\nwork_hours = \"08-25\"\n", "site.toml: site.work_hours: expected two"),
    ("[site]\nwork_days = [\"Monday\"]\n",
     'site.toml: site.work_days: expected day names "mon" to "sun", got "Monday"'),
    ("[windows]\nshort_s = 900\n", "site.toml: windows: expected short_s <= medium_s <= long_s"),
    ("rules = 3\n", "site.toml: rules: expected a table, got 3"),
    ("[privacy]\ndrop = [\"email\"]\n",
     'site.toml: privacy.drop: expected field or group names (client_ip, server_ip, host, '),
    ("[privacy]\ndrop = \"subject\"\n",
     'site.toml: privacy.drop: expected a list of strings, got "subject"'),
    ("[privacy]\ndrop = [\"ips\"]\npseudonymise = [\"uid\"]\nkey_file = \"k\"\n",
     'site.toml: privacy.drop: expected fields not also in privacy.pseudonymise, got "uid"'),
    ("[privacy]\npseudonymise = [\"subject\"]\n",
     'site.toml: privacy.key_file: expected a key file (privacy.pseudonymise is not empty), '
     'got ""'),
    ("[privacy]\npseudonym_hex = 4\n",
     "site.toml: privacy.pseudonym_hex: expected an integer from 8 to 64, got 4"),
    ("[site\n", "site.toml: not valid TOML: "),
])
def test_invalid_values_name_file_key_and_expectation(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "site.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_site_working_time_is_read_once_into_hours_and_weekdays() -> None:
    site = parse_config('[site]\ntimezone = "America/New_York"\nwork_hours = "22-24"\n'
                        'work_days = ["sat", "sun", " Sun"]\n', "t.toml").site
    assert (site.timezone, site.work_start, site.work_end) == ("America/New_York", 22, 0)
    assert site.work_days == frozenset({5, 6})
    default = load_config(None).site
    assert (default.timezone, default.work_start, default.work_end) == ("UTC", 8, 18)
    assert default.work_days == frozenset(range(5))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "absent.toml"))


def test_every_default_key_is_documented_by_a_comment_block() -> None:
    text = default_text()
    parsed = tomllib.loads(text)
    assert set(parsed) == {"site", "windows", "bounds", "reassembly", "decode", "smtp",
                           "suppression", "model", "privacy", "syslog", "capture", "rules",
                           "live"}
    for name in parsed["rules"]:
        header = f"[rules.{name}]\n#"
        assert header in text, f"rules.{name} has no comment"


def test_config_dump_prints_the_packaged_defaults() -> None:
    result = CliRunner().invoke(config_cmd, ["--dump"])
    assert result.exit_code == 0
    assert result.output == default_text()
    assert parse_config(result.output, "dump").rules.keys() == load_config(None).rules.keys()


def test_config_check_validates_a_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[site]\nhome_net = ["192.0.2.0/24"]\n')
    result = CliRunner().invoke(config_cmd, ["--check", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok (11 rules enabled, home_net 192.0.2.0/24)" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[bounds]\nmax_hosts = 0\n")
    result = CliRunner().invoke(config_cmd, ["--check", str(bad)])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).endswith("bounds.max_hosts: expected an integer > 0, got 0")


def test_config_without_an_option_is_a_usage_error() -> None:
    assert CliRunner().invoke(config_cmd, []).exit_code == 2


def test_reassembly_caps_and_memcap_reach_the_tcp_limits() -> None:
    from dataclasses import asdict

    from sensor.pipeline import limits_from_config

    cfg = parse_config("[bounds]\nmemcap_mb = 64\n[reassembly]\nrexmit_segments = 4\n"
                       "max_connections = 7\nidle_timeout_s = 30\n", "t.toml")
    lim = limits_from_config(cfg)
    assert lim.memcap_bytes == 64 << 20
    assert (lim.rexmit_segments, lim.max_connections, lim.idle_timeout_s) == (4, 7, 30.0)
    for key, value in asdict(cfg.reassembly).items():  # every key is the TcpLimits field it sets
        assert getattr(lim, key) == value
    off = parse_config("[reassembly]\nrexmit_segments = 0\n", "t.toml")
    assert limits_from_config(off).rexmit_segments == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[reassembly]\nmax_connections = 0\n",
         "reassembly.max_connections: expected an integer > 0, got 0"),
        ("[reassembly]\nrexmit_segments = \"big\"\n",
         'reassembly.rexmit_segments: expected an integer, got "big"'),
        ("[bounds]\nmemcap_mb = -1\n", "bounds.memcap_mb: expected an integer > 0, got -1"),
        ("[decode]\nmax_vlan_tags = 0\n", "decode.max_vlan_tags: expected an integer > 0, got 0"),
        ("[reassembly]\nidle_timeout_s = 0\n",
         "reassembly.idle_timeout_s: expected a number > 0, got 0.0"),
        ("[reassembly]\nrexmit_segments = -1\n",
         "reassembly.rexmit_segments: expected an integer >= 0 (0: off), got -1"),
    ],
)  # fmt: skip
def test_bad_reassembly_values_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "t.toml")
    assert str(err.value) == f"t.toml: {message}"


def test_decode_limits_reach_the_decoder_and_the_default_filter(tmp_path: Path) -> None:
    """A frame with 3 VLAN tags is analysed by default and counted with max_vlan_tags = 2."""
    from capture.capture_helpers import eth, ip4_tcp, write_pcap_raw

    from sensor.capture.bpf import build_filter

    cfg = parse_config("[decode]\nmax_vlan_tags = 2\nmax_ip6_ext_headers = 3\n", "t.toml")
    assert (cfg.decode.max_vlan_tags, cfg.decode.max_ip6_ext_headers) == (2, 3)
    assert build_filter([25], 2).count("vlan and") == 2
    pcap = tmp_path / "deep.pcap"
    write_pcap_raw(pcap, [(1, 0, eth(ip4_tcp(0), vlans=[1, 2, 3]))])
    conf = tmp_path / "site.toml"
    conf.write_text("[decode]\nmax_vlan_tags = 2\n")
    for extra, deep in (([], 0), (["--config", str(conf)], 1)):
        stats = tmp_path / "st.json"
        r = subprocess.run([sys.executable, "-m", "sensor", "analyze", "-q", "--stats", str(stats),
                            *extra, str(pcap)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(stats.read_text())["capture"]["vlan_too_deep"] == deep


def test_capture_loss_warn_percent_is_a_percentage(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[capture]\nloss_warn_percent = 2.5\n")
    assert load_config(str(cfg)).capture.loss_warn_percent == 2.5
    cfg.write_text("[capture]\nloss_warn_percent = 150.0\n")
    with pytest.raises(ConfigError, match=r"capture.loss_warn_percent: expected a percentage"):
        load_config(str(cfg))
