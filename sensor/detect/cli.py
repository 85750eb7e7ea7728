"""The `sensor config` and `sensor evaluate` commands (registered by sensor.cli)."""

from __future__ import annotations

import json

import click

from sensor.config import Config, default_text, load_config
from sensor.detect.evaluate import Evaluation
from sensor.detect.evaluate import evaluate as run_evaluation


def _say_assumed(cfg: Config) -> None:
    for line in cfg.assumed:
        click.echo(f"sensor: assumed {line}", err=True)


@click.command("config")
@click.option("--dump", is_flag=True, help="Print the documented default configuration.")
@click.option("--check", "check_path", metavar="FILE", help="Validate a configuration file.")
def config_cmd(dump: bool, check_path: str | None) -> None:
    """Print the default configuration or validate a configuration file."""
    if dump == bool(check_path):
        raise click.UsageError("give exactly one of --dump or --check FILE")
    if dump:
        click.echo(default_text(), nl=False)
        return
    cfg = load_config(check_path)
    _say_assumed(cfg)
    enabled = sum(1 for r in cfg.rules.values() if r.enabled)
    click.echo(f"{check_path}: ok ({enabled} rules enabled, home_net "
               f"{', '.join(str(n) for n in cfg.site.home_net)})")


def _ttd(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    s = sorted(seconds)
    return f"{s[len(s) // 2]:.0f} s (max {s[-1]:.0f} s)"


def render(ev: Evaluation) -> str:
    """The evaluation as a plain-text table."""
    rows = [("kind", "hosts", "detected", "recall", "time to detect (median, max)")]
    for kind in sorted(ev.kinds):
        r = ev.kinds[kind]
        rows.append((kind, str(len(r.hosts)), str(len(r.detected)), f"{r.recall:.2f}",
                     _ttd(list(r.ttd_s.values()))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    fps = ", ".join(f"{h} ({'/'.join(k)})" for h, k in sorted(ev.false_positive_hosts.items()))
    lines.append(f"false-positive hosts: {len(ev.false_positive_hosts)} of {ev.benign_hosts} "
                 f"benign" + (f": {fps}" if fps else ""))
    if ev.unlabelled_hosts:
        other = ", ".join(f"{h} ({'/'.join(k)})" for h, k in sorted(ev.unlabelled_hosts.items()))
        lines.append(f"alerted hosts not in the labels: {other}")
    lines.append(f"alerts: {ev.alerts}")
    return "\n".join(lines)


def to_dict(ev: Evaluation) -> dict[str, object]:
    """The evaluation as plain JSON types."""
    return {
        "kinds": {k: {"hosts": r.hosts, "detected": r.detected, "recall": r.recall,
                      "ttd_s": r.ttd_s} for k, r in sorted(ev.kinds.items())},
        "false_positive_hosts": ev.false_positive_hosts,
        "unlabelled_hosts": ev.unlabelled_hosts, "benign_hosts": ev.benign_hosts,
        "alerts": ev.alerts}


@click.command("evaluate")
@click.option("--labels", "labels_path", required=True, metavar="CSV",
              help="Host labels: ip,label,kind,attack_start (as `sensor simulate` writes).")
@click.option("--config", "config_path", metavar="FILE", help="Sensor configuration (TOML).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=False))
def evaluate_cmd(labels_path: str, config_path: str | None, as_json: bool,
                 pcaps: tuple[str, ...]) -> None:
    """Per-kind recall, false-positive hosts and time to detect on labelled captures."""
    cfg = load_config(config_path)
    _say_assumed(cfg)
    ev = run_evaluation(labels_path, pcaps, cfg)
    click.echo(json.dumps(to_dict(ev)) if as_json else render(ev))
