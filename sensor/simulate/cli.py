"""The `sensor simulate` command: labelled synthetic SMTP captures from scenarios."""

from __future__ import annotations

import click

from sensor.errors import SensorError
from sensor.simulate.engine import simulate as run_simulation
from sensor.simulate.scenario import builtin_names, load_scenario, parse_duration, parse_start


class _Fail(click.ClickException):
    """A one-line usage, configuration or output error (exit code 2, as DESIGN.md says)."""

    exit_code = 2


def _parse(value: str | None, parser: object, option: str) -> float | None:
    if value is None:
        return None
    assert callable(parser)
    try:
        result = parser(value)
    except Exception as exc:  # the parsers raise one private exception type carrying the hint
        raise click.BadParameter(f"expected {exc}, got {value!r}", param_hint=option) from None
    assert isinstance(result, float)
    return result


@click.command("simulate")
@click.argument("scenarios", nargs=-1)
@click.option("-o", "--output", "output", metavar="OUT.pcap",
              help="Capture to write; OUT.labels.csv and OUT.truth.json are written beside it.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same seed gives the same bytes.")
@click.option("--duration", metavar="1h|30m|600s",
              help="Packet-time length of the capture (default: the scenarios' own).")
@click.option("--start", metavar="ISO8601|EPOCH",
              help="Packet time of the capture start (default: the scenario's).")
@click.option("--list", "list_only", is_flag=True, help="List the built-in scenarios and exit.")
def simulate(scenarios: tuple[str, ...], output: str | None, seed: int, duration: str | None,
             start: str | None, list_only: bool) -> None:
    """Write labelled synthetic port-25 traffic for SCENARIO... (built-in names or TOML files).

    Several scenarios are merged into one capture. Labels: one row per address with
    ip,label,kind,attack_start,attack_end,role. The abused open relay is our own server: it is
    labelled malicious (kind open_relay, role victim) because the sensor must alert on it.
    """
    if list_only:
        for name in builtin_names():
            sc = load_scenario(name)
            click.echo(f"{name:<16} {sc.description}")
        return
    if not scenarios:
        raise click.UsageError("give at least one SCENARIO (see --list)")
    if not output:
        raise click.UsageError("missing option -o/--output OUT.pcap")
    duration_s = _parse(duration, parse_duration, "--duration")
    start_epoch = _parse(start, parse_start, "--start")
    try:
        loaded = [load_scenario(s) for s in scenarios]
        result = run_simulation(loaded, output, seed=seed, duration_s=duration_s,
                                start_epoch=start_epoch)
    except SensorError as exc:
        raise _Fail(str(exc)) from None
    click.echo(f"wrote {result.pcap}: {result.packets} packets, {result.sessions} sessions; "
               f"labels {result.labels}; truth {result.truth}")
