"""The `sensor detect` command: the central detector of many sensors (registered by sensor.cli)."""

from __future__ import annotations

import socket
import sys
from typing import Any

import click

from sensor.errors import SensorError


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """Click callback: 'I/N' with 0 <= I < N -> (I, N)."""
    index, sep, count = value.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise click.BadParameter(f"expected I/N with 0 <= I < N (e.g. 0/4), got {value!r}")
    return int(index), int(count)


@click.command("detect")
@click.option("--from", "from_url", required=True, metavar="URL",
              help="The stream and consumer group: redis://HOST:6379/0?stream=NAME&group=G.")
@click.option("--consumer", default=None, metavar="NAME",
              help="This process's name in the group  [default: the host name].")
@click.option("--shard", default="0/1", show_default=True, callback=_parse_shard,
              metavar="I/N", help="Keep the hosts whose hash modulo N is I (N processes, one "
                                  "per shard, share the hosts; each has its own group G/I-of-N).")
@click.option("--config", "config_path", metavar="FILE", type=click.Path(),
              help="Site configuration (TOML); see `sensor config --dump`.")
@click.option("--model", "model_path", metavar="FILE", type=click.Path(),
              help="Trained host model [default: the bundled one].")
@click.option("--no-model", is_flag=True, help="Rules only: no model scoring.")
@click.option("--alerts", "alerts_path", metavar="FILE|-",
              help="Write alerts as JSON lines (kept in step with the commits: see "
                   "docs/scaling.md).")
@click.option("--syslog", "syslog_urls", multiple=True, metavar="URL",
              help="Send alerts to a syslog collector (repeatable), as `sensor analyze` does.")
@click.option("--format", "syslog_format", default=None,
              type=click.Choice(("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")),
              help="Message format of the --syslog destinations.")
@click.option("--host-scores", "host_scores_path", metavar="FILE|-",
              help="On exit, one JSON line per host the model scored.")
@click.option("--stats", "stats_path", metavar="FILE|-", help="On exit, the counters as JSON.")
@click.option("--until-idle", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Stop once no entry has come for this long, flushing as `analyze` does at "
                   "the end of its input (default: run until SIGTERM/SIGINT).")
@click.option("--sensor-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, metavar="SECONDS",
              help="A sensor silent this long stops holding back the others' records.")
@click.option("--commit-every", type=click.IntRange(min=1), default=5000, show_default=True,
              metavar="N", help="Records applied between commits, at most (and once a second).")
@click.option("--quiet", "-q", is_flag=True, help="No closing line.")
def detect_cmd(from_url: str, consumer: str | None, shard: tuple[int, int],
               config_path: str | None, model_path: str | None, no_model: bool,
               alerts_path: str | None, syslog_urls: tuple[str, ...], syslog_format: str | None,
               host_scores_path: str | None, stats_path: str | None, until_idle: float | None,
               sensor_timeout: float, commit_every: int, quiet: bool) -> None:
    """Run features, rules and the model over every sensor's records from a stream.

    Sensors append their records with `sensor analyze|live --publish URL`. SIGTERM or SIGINT
    stops after the current batch, committed; a restart resumes where it stopped, without loss
    or double counting (docs/scaling.md).
    """
    from sensor.cli import _open_model, _syslog_fanout, _write_host_scores
    from sensor.config import load_config
    from sensor.detect.alerts import alert_to_dict
    from sensor.detect.detector import Detector
    from sensor.output.jsonl import JsonlSink, to_json_line
    from sensor.output.privacy import Privacy
    from sensor.records import Alert
    from sensor.service.signals import Aborted, Shutdown
    from sensor.stream.detect import StreamDetector
    from sensor.stream.redis_streams import RedisTransport
    from sensor.stream.transport import TransportError
    from sensor.stream.urls import parse_stream_url

    try:
        url = parse_stream_url(from_url, "--from")
    except SensorError as exc:
        raise click.BadParameter(str(exc).removeprefix("--from: "), param_hint="--from") from None
    if not url.group:
        raise click.BadParameter(f"expected &group=NAME in {from_url!r}", param_hint="--from")
    if no_model and (model_path or host_scores_path):
        raise click.UsageError("--no-model cannot go with --model or --host-scores")
    cfg = load_config(config_path)
    privacy = Privacy.from_config(cfg.privacy)
    syslog = _syslog_fanout(cfg, syslog_urls, syslog_format, False)
    scorer, model_name = (None, "")
    if not no_model:
        scorer, model_name = _open_model(model_path, quiet, in_process=True)
    index, shards = shard
    group = url.group if shards == 1 else f"{url.group}/{index}-of-{shards}"
    name = consumer or socket.gethostname()

    def warn(text: str) -> None:
        click.echo(f"sensor: warning: {text}", err=True)

    def make_detector(emit: Any) -> Detector:
        return Detector(cfg, emit, scorer, model_name)

    transport = RedisTransport(url)
    sd = StreamDetector(transport, group, name, f"{url.stream}:checkpoint:{group}",
                        make_detector, (index, shards), sensor_timeout, commit_every, warn)
    if sd.detector.stage is not None and host_scores_path:
        sd.detector.stage.explain_all = True

    def fmt(a: Alert) -> bytes:
        return to_json_line(alert_to_dict(privacy.alert(a) if privacy.enabled else a))

    shutdown = Shutdown()
    shutdown.add_hook(lambda _signum: setattr(sd, "stopping", True))
    shutdown.install()
    try:
        try:
            transport.ping()
        except TransportError as exc:
            warn(f"{url.name}: {exc}; retrying")
        sd.start()
        if alerts_path:
            from sensor.stream.detect import AlertLog

            sd.alert_log = AlertLog(alerts_path, sd.resume_offset, warn)
            sd.format_alert = fmt
        if syslog is not None:
            fan = syslog
            syslog.start()

            def send(alerts: list[Alert]) -> None:
                for a in alerts:
                    fan.alert(privacy.alert(a) if privacy.enabled else a)

            sd.on_alerts = send
        sd.run(until_idle)
    except TransportError as exc:
        raise click.ClickException(f"{url.name}: {exc}") from None
    except Aborted as exc:  # a second signal: stop at once (the next start replays, see docs)
        click.echo("sensor: second signal: stopped without committing", err=True)
        sys.exit(128 + exc.signum)
    finally:
        shutdown.restore()
        if sd.alert_log is not None:
            sd.alert_log.close()
        if syslog is not None:
            syslog.close()
        transport.close()
    if host_scores_path:
        _write_host_scores(sd.detector, JsonlSink(host_scores_path), privacy)
    counters = sd.stats_dict()
    if syslog is not None:
        counters["sinks"] = syslog.stats()
    if stats_path:
        out = JsonlSink(stats_path)
        out.write(counters)
        out.close()
    st = sd.stats
    if not quiet:
        click.echo(f"sensor: detect {group}: {st.records} records applied ({st.replayed} "
                   f"replayed at start), {st.alerts} alerts, {st.duplicates} duplicates, "
                   f"{st.late} late, {st.other_shards} for other shards, {st.bad} bad",
                   err=True)
    if shutdown.signum:
        sys.exit(shutdown.exit_code)
