"""The [live] section: what `sensor live --config F` runs with, validated at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sensor.cli import main
from sensor.config import LiveConfig, load_config, parse_config
from sensor.errors import ConfigError


def test_defaults_name_no_interface_and_one_worker() -> None:
    assert load_config(None).live == LiveConfig()


def test_a_full_section_is_read() -> None:
    live = parse_config(
        '[live]\ninterfaces = ["eth1", "eth2"]\nworkers = "auto"\nuser = "port25-sensor"\n'
        'sessions = "/var/log/s.jsonl"\nstats_interval_s = 10\nsnaplen = 1600\n'
        'buffer_mb = 256\npromisc = false\n', "sensor.toml").live
    assert live.interfaces == ("eth1", "eth2") and live.workers == 0  # 0: auto
    assert (live.user, live.sessions, live.stats_interval_s) == ("port25-sensor",
                                                                 "/var/log/s.jsonl", 10)
    assert (live.snaplen, live.buffer_mb, live.promisc) == (1600, 256, False)
    assert parse_config("[live]\nworkers = 3\n", "t.toml").live.workers == 3
    assert parse_config('[live]\ncpus = "2,0-1"\n', "t.toml").live.cpus == (2, 0, 1)
    assert parse_config('[live]\ncpus = ""\n', "t.toml").live.cpus == ()


@pytest.mark.parametrize(("text", "message"), [
    ("[live]\ninterfaces = \"eth1\"\n",
     "sensor.toml: live.interfaces: expected a list of strings, got \"eth1\""),
    ("[live]\ninterfaces = [\"eth 1\"]\n",
     "sensor.toml: live.interfaces[0]: expected an interface name like \"eth1\", got \"eth 1\""),
    ("[live]\ninterfaces = [\"a-very-long-name0\"]\n",
     "sensor.toml: live.interfaces[0]: expected an interface name"),
    ("[live]\nworkers = 0\n",
     "sensor.toml: live.workers: expected an integer >= 1 or \"auto\", got 0"),
    ("[live]\nworkers = \"many\"\n",
     "sensor.toml: live.workers: expected an integer >= 1 or \"auto\", got \"many\""),
    ("[live]\nuser = \"no body\"\n", "sensor.toml: live.user: expected a user name"),
    ("[live]\nbuffer_mb = 0\n", "sensor.toml: live.buffer_mb: expected an integer > 0, got 0"),
    ("[live]\npromisc = \"yes\"\n", "sensor.toml: live.promisc: expected true or false"),
    ("[live]\ninterface = \"eth1\"\n", "sensor.toml: live.interface: unknown key"),
    ("[live]\ncpus = \"0,0\"\n",
     "sensor.toml: live.cpus: expected a list of cores like \"0,2-3\" (\"\": not pinned), "
     "got \"0,0\""),
    ("[live]\ncpus = [0]\n", "sensor.toml: live.cpus: expected a string, got a list"),
])  # fmt: skip
def test_invalid_live_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "sensor.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_live_without_any_interface_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "sensor.toml"
    cfg.write_text("[live]\nsessions = \"s.jsonl\"\n")
    result = CliRunner().invoke(main, ["live", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "no interface: -i IFACE, or [live] interfaces in the config" in result.output
