"""Scenario files are validated: every mistake is one line naming the file, the key and the
expected form, with exit code 2 and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sensor.errors import ConfigError
from sensor.simulate.cli import simulate as simulate_cmd
from sensor.simulate.scenario import builtin_names, load_scenario, parse_duration, parse_scenario
from sensor.simulate.spec import ActorKind, TimingModel

BAD = [
    ('[[actor]]\nkind = "spambot"\ncolour = 3\n', "actor[0].colour: unknown key"),
    ('[[actor]]\nkind = "spambot"\ncount = "many"\n',
     "actor[0].count: expected an integer >= 1, got 'many'"),
    ('[[actor]]\nkind = "spambot"\ntls = 1.5\n', "actor[0].tls: expected a probability"),
    ('[[actor]]\nkind = "spambot"\n[actor.timing]\nmodel = "wavy"\n',
     "actor[0].timing.model: expected one of 'poisson'"),
    ('[[actor]]\nkind = "spambot"\nrcpts = [5, 1]\n', "actor[0].rcpts: expected [min, max]"),
    ('[[actor]]\ncount = 2\n', "actor[0].kind: missing"),
    ('[site]\nhome_net = ["10.0.0.0/33"]\n', "site.home_net: expected an address or CIDR"),
    ('[site]\nmx = "mx.example"\n', "site.mx: expected an IP address"),
    ('[scenario]\nduration = "soon"\n', "scenario.duration: expected a duration"),
    ('[scenario]\ninclude = ["nope"]\n', "scenario.include: expected built-in scenario names"),
    ('[weather]\nsunny = true\n', "weather: unknown key"),
    ("x = [", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_scenario_is_one_line_naming_file_and_key(tmp_path: Path, text: str,
                                                      message: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    result = CliRunner().invoke(simulate_cmd, [str(path), "-o", str(tmp_path / "x.pcap")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: {path}: ") and message in lines[0]
    assert "Traceback" not in result.output


def test_every_built_in_scenario_loads() -> None:
    for name in builtin_names():
        sc = load_scenario(name)
        assert sc.actors and sc.duration_s > 0


def test_kind_defaults_apply_and_user_values_override() -> None:
    sc = parse_scenario('[[actor]]\nkind = "spambot"\ncount = 3\n[actor.timing]\n'
                        'rate_per_hour = 50\n', "t.toml")
    actor = sc.actors[0]
    assert actor.kind is ActorKind.SPAMBOT and actor.count == 3
    assert actor.timing.model is TimingModel.BURST and actor.timing.rate_per_hour == 50
    assert actor.refused > 0 and actor.reject_5xx > 0


def test_include_merges_built_ins_and_renames_clashing_actors() -> None:
    sc = parse_scenario('[scenario]\ninclude = ["harvest", "harvest"]\n', "t.toml")
    assert [a.name for a in sc.actors] == ["harvester", "harvester#2"]


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("30m", 1800), ("600s", 600),
                                               ("1h30m", 5400), (90, 90)])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_unknown_scenario_name_lists_built_ins() -> None:
    with pytest.raises(ConfigError, match="built-ins: benign"):
        load_scenario("no-such-scenario")
