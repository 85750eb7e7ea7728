"""The `sensor config` and `sensor evaluate` commands (registered by sensor.cli)."""

from __future__ import annotations

import json

import click

from sensor.config import Config, default_text, load_config
from sensor.detect.evaluate import Evaluation, Label, ModeResult
from sensor.errors import CaptureError, OutputError


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


def render_modes(modes: dict[str, ModeResult], threshold: float | None) -> str:
    """Host-level figures per mode as a plain-text table."""
    rows = [("mode", "precision", "recall", "ROC AUC", "PR AUC", "FP hosts",
             "time to detect (median, max)")]
    for m in modes.values():
        rows.append((m.mode, f"{m.precision:.3f}", f"{m.recall:.3f}",
                     "-" if m.roc_auc is None else f"{m.roc_auc:.3f}",
                     "-" if m.pr_auc is None else f"{m.pr_auc:.3f}",
                     str(len(m.false_positive_hosts)), _ttd(list(m.ttd_s.values()))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    for m in modes.values():
        if m.false_positive_hosts:
            lines.append(f"{m.mode}: false-positive hosts: {', '.join(m.false_positive_hosts)}")
    if threshold is not None:
        lines.append(f"model threshold: {threshold:.4f}")
    return "\n".join(lines)


def _mode_dict(m: ModeResult) -> dict[str, object]:
    return {"precision": m.precision, "recall": m.recall, "roc_auc": m.roc_auc,
            "pr_auc": m.pr_auc, "detected": m.detected,
            "false_positive_hosts": m.false_positive_hosts, "ttd_s": m.ttd_s}


def plot(path: str, modes: dict[str, ModeResult], labels: dict[str, Label],
         host_scores: list[dict[str, object]], threshold: float, title: str) -> None:
    """ROC curves per mode and the benign/malicious model-score distributions, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (roc_ax, dist_ax) = plt.subplots(1, 2, figsize=(12, 5))
    for m in modes.values():
        if m.roc_auc is not None:
            roc_ax.plot(m.curve[0], m.curve[1], drawstyle="steps-post",
                        label=f"{m.mode} (AUC {m.roc_auc:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_ax.set(xlabel="false-positive rate (benign hosts)", ylabel="true-positive rate "
               "(malicious hosts)", title="ROC per detection mode", xlim=(0, 1), ylim=(0, 1.02))
    roc_ax.legend(loc="lower right")
    scores = {str(h["host"]): float(str(h["score"])) for h in host_scores}
    benign = [scores.get(ip, 0.0) for ip, lab in labels.items() if not lab.malicious]
    malicious = [scores.get(ip, 0.0) for ip, lab in labels.items() if lab.malicious]
    values = benign + malicious
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    bins = [lo + (hi - lo) * i / 30 for i in range(31)] if hi > lo else 10
    dist_ax.hist(benign, bins=bins, alpha=0.6, label=f"benign hosts ({len(benign)})")
    dist_ax.hist(malicious, bins=bins, alpha=0.6, label=f"malicious hosts ({len(malicious)})")
    if threshold != float("inf"):
        dist_ax.axvline(threshold, color="black", linestyle="--", label="alert threshold")
    dist_ax.set(xlabel="highest model score of the host (higher: more anomalous)",
                ylabel="hosts", title="Model scores by label")
    dist_ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the plot: {exc.strerror}") from None
    finally:
        plt.close(fig)


@click.command("evaluate")
@click.option("--labels", "labels_path", required=True, metavar="CSV",
              help="Host labels: ip,label,kind,attack_start (as `sensor simulate` writes).")
@click.option("--config", "config_path", metavar="FILE", help="Sensor configuration (TOML).")
@click.option("--model", "model_path", metavar="FILE",
              help="Trained host model [default: the bundled models/default.skops].")
@click.option("--no-model", is_flag=True, help="Rules only.")
@click.option("--json", "json_path", metavar="FILE|-", help="Write the figures as one JSON "
              "object ('-': instead of the tables).")
@click.option("--plot", "plot_path", metavar="FILE.png",
              help="Draw the ROC curves and the benign/malicious score distributions.")
@click.option("--ports", default="25,587", show_default=True, help="SMTP server ports.")
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=False))
def evaluate_cmd(labels_path: str, config_path: str | None, model_path: str | None,
                 no_model: bool, json_path: str | None, plot_path: str | None, ports: str,
                 pcaps: tuple[str, ...]) -> None:
    """Rules, model and both on labelled captures: per-kind recall, host-level precision,
    recall, ROC AUC, PR AUC, false-positive hosts and time to detect."""
    from sensor.cli import _parse_ports
    from sensor.detect.evaluate import host_level, read_labels, run_detection, score_alerts

    cfg = load_config(config_path)
    _say_assumed(cfg)
    labels = read_labels(labels_path)
    model = None
    if not no_model:
        from sensor.detect.card import bundled_model
        from sensor.detect.model import load

        path = model_path or bundled_model()
        if path is not None:
            model = load(path)
    port_list = _parse_ports(click.get_current_context(), None, ports)  # type: ignore[arg-type]
    scores: list[dict[str, object]] = []
    alerts, _ = run_detection(pcaps, cfg, model, scores, port_list)
    ev = score_alerts(labels, [a for a in alerts if a.kind != "anomalous_host"])
    threshold = model.threshold if model is not None else float("inf")
    modes = host_level(labels, alerts, scores, threshold)
    if model is None:
        modes = {"rules": modes["rules"]}
    figures = {**to_dict(ev), "modes": {k: _mode_dict(m) for k, m in modes.items()},
               "model_threshold": None if model is None else threshold}
    if json_path == "-":
        click.echo(json.dumps(figures))
    else:
        click.echo(render(ev))
        click.echo(render_modes(modes, None if model is None else threshold))
        if json_path:
            try:
                with open(json_path, "w", encoding="utf-8") as fh:
                    json.dump(figures, fh)
                    fh.write("\n")
            except OSError as exc:
                raise OutputError(f"{json_path}: cannot write: {exc.strerror}") from None
    if plot_path:
        plot(plot_path, modes, labels, scores, threshold,
             f"sensor evaluate: {', '.join(p.rsplit('/', 1)[-1] for p in pcaps)}")


@click.command("train")
@click.argument("pcaps", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, metavar="MODEL",
              help="Model file to write (skops archive).")
@click.option("--config", "config_path", metavar="FILE", help="Sensor configuration (TOML).")
@click.option("--from-sessions", "logs", multiple=True, metavar="LOG",
              help="Train from session and connection logs that `analyze --sessions/--conns` "
                   "wrote (repeatable), instead of captures.")
@click.option("--target-fpr", type=float, default=1e-4, show_default=True,
              help="Share of training host-windows allowed over the alert threshold.")
@click.option("--contamination", type=float, default=0.0, show_default=True,
              help="Share of training host-windows assumed to be attacks: the most anomalous "
                   "share is left out and the model refitted on the rest.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed: the same inputs and seed give the same model.")
@click.option("--detector", type=click.Choice(["iforest", "iforest-per-role", "lof", "hbos", "tail",
                                               "tail-per-role"]),
              default="tail-per-role", show_default=True,
              help="Outlier detector of the pipeline.")
@click.option("--ports", default="25,587", show_default=True,
              help="SMTP server ports to analyse in captures.")
@click.option("--cluster", default=None, metavar="tcp://HOST:PORT|local[:N]",
              help="Analyse the captures on a Dask cluster, as one rotated archive (connections "
                   "stitched across files); see docs/scaling.md.")
def train_cmd(pcaps: tuple[str, ...], output: str, config_path: str | None,
              logs: tuple[str, ...], target_fpr: float, contamination: float, seed: int,
              detector: str, ports: str, cluster: str | None) -> None:
    """Learn the site's normal from historical captures (or logs) and write a model file."""
    import shlex
    import sys
    import time

    from sensor.cli import _parse_ports
    from sensor.detect import model as host_model
    from sensor.detect import train as collect

    if bool(pcaps) == bool(logs):
        raise click.UsageError("give capture files or --from-sessions LOG..., not both")
    if cluster is not None and logs:
        raise click.UsageError("--cluster reads captures, not --from-sessions logs")
    cfg = load_config(config_path)
    began = time.perf_counter()
    command = "sensor train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    if pcaps:
        port_list = _parse_ports(click.get_current_context(), None, ports)  # type: ignore[arg-type]
        if cluster is not None:
            from sensor.cli import _parse_cluster
            from sensor.cluster.train import from_archive

            address = _parse_cluster(click.get_current_context(), None, cluster)  # type: ignore[arg-type]
            assert address is not None
            got = from_archive(address, list(pcaps), cfg, port_list, command)
        else:
            got = collect.from_captures(list(pcaps), cfg, port_list, command, progress=True)
        inputs = f"{len(pcaps)} capture files, {got.packets:,} packets"
    else:
        from sensor.output.readers import ReadStats, iter_logged_records
        from sensor.pipeline import limits_from_config

        bad: list[str] = []

        def on_error(path: str, problem: str) -> None:
            bad.append(path)
            click.echo(f"sensor: error: {path}: {problem}", err=True)

        read = ReadStats()
        got = collect.from_records(
            iter_logged_records(list(logs), on_error, read, limits=limits_from_config(cfg)),
            list(logs), cfg, command)
        if read.files_failed >= len(logs):
            raise CaptureError("--from-sessions: no log could be read")
        if not read.conns:
            click.echo("sensor: warning: no connection records among the logs (give the "
                       "`analyze --conns` log too): connection features stay at zero",
                       err=True)
        inputs = f"{len(logs)} logs, {got.records:,} records"
    w = cfg.windows
    model = host_model.fit(got.data, detector=detector, seed=seed, target_fpr=target_fpr,
                           contamination=contamination,
                           windows={"short": w.short_s, "medium": w.medium_s, "long": w.long_s})
    host_model.save(model, output)
    from sensor.detect.alerts import iso_time

    t = model.card["training"]
    hosts = sum(t["hosts_per_role"].values())
    click.echo(
        f"trained {output}: {inputs}; {iso_time(t['span'][0])} .. {iso_time(t['span'][1])}; "
        f"{hosts} hosts ("
        + ", ".join(f"{n} {r}" for r, n in t["hosts_per_role"].items() if n)
        + f"); {t['host_windows']:,} host-windows"
        + (f" ({t['host_windows_trimmed']:,} trimmed)" if t["host_windows_trimmed"] else "")
        + f"; threshold {model.threshold:.4f} at target FPR {target_fpr:g}; "
        f"{time.perf_counter() - began:.1f} s")


@click.command("inspect")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the card as JSON.")
@click.option("--verify", is_flag=True,
              help="Also load the model through skops and check its rows (slower).")
def inspect_cmd(model_path: str, as_json: bool, verify: bool) -> None:
    """Print a model's card: features, versions, training data, threshold, command."""
    from sensor.detect.card import peek_card
    from sensor.detect.model import card_text, load

    card = load(model_path).card if verify else peek_card(model_path)
    click.echo(json.dumps(card, indent=2) if as_json else card_text(card, model_path))
