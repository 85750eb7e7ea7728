"""The `sensor` command line: wires the stages together; all terminal rendering lives here."""

from __future__ import annotations

import gc
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from sensor import __version__
from sensor.errors import SensorError
from sensor.pipeline import Frame, Pipeline, RunTotals, limits_from_config, no_streams
from sensor.records import Alert, CaptureStats, TcpStats
from sensor.service.signals import Aborted, Shutdown

if TYPE_CHECKING:
    from sensor.cluster.run import ClusterInput
    from sensor.config import Config
    from sensor.decode.packet import DecodeLimits
    from sensor.detect.detector import Detector, DetectorStats
    from sensor.output.jsonl import JsonlSink
    from sensor.output.parquet import ParquetSink
    from sensor.output.privacy import Privacy
    from sensor.parallel import ParallelInput
    from sensor.service.livefanout import LiveInput
    from sensor.service.runtime import LiveService
    from sensor.service.stats import LiveStatus
    from sensor.sinks.fanout import SyslogFanout
    from sensor.smtp.limits import SmtpLimits
    from sensor.stream.publisher import Publisher
    from sensor.tcp.reassembler import TcpLimits

_GC_YOUNG_THRESHOLD = 4_000_000  # net container allocations between young collections (default
# 700). Each young collection walks every young object still alive, and a connection's objects
# live for its 5 s linger: the rarer the walk, the more of them are gone before it. At 500,000,
# a live sensor at 150,000 packets/s collected every second or so, walking that second's
# connections each time: 4.6% of its CPU. A run leaves next to no cyclic garbage (two objects
# per host scored at its end), so rarer walks cost no memory.
_SUMMARY_ALERTS = 50  # (host, kind) pairs listed in the closing alert table, at most
FORMATS = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")  # sensor.sinks.formats.FORMATS,
# named here so that the command line does not import the sinks when none is asked for


_LAZY_COMMANDS = {  # subcommands that live beside their stage, imported only when invoked
    "simulate": ("sensor.simulate.cli", "simulate"),
    "config": ("sensor.detect.cli", "config_cmd"),
    "evaluate": ("sensor.detect.cli", "evaluate_cmd"),
    "train": ("sensor.detect.cli", "train_cmd"),
    "inspect": ("sensor.detect.cli", "inspect_cmd"),
    "detect": ("sensor.stream.cli", "detect_cmd"),
}


class _Group(click.Group):
    """Turns every SensorError into one line on stderr and its exit code, never a traceback.

    The subcommands of `_LAZY_COMMANDS` are imported when used (or listed), so `sensor analyze`
    does not pay for the simulator's and the evaluator's imports.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = _LAZY_COMMANDS.get(cmd_name)
        if lazy is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module = importlib.import_module(lazy[0])
        cmd: click.Command = getattr(module, lazy[1])
        self.add_command(cmd, cmd_name)
        return cmd

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SensorError as exc:
            click.echo(f"sensor: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sensor")
def main() -> None:
    """Passive SMTP (port 25) sensor: sessions, per-host behaviour and mail-abuse alerts."""


def _parse_ports(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """Click callback: '25,587' -> (25, 587), or a usage error naming the option."""
    ports: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise click.BadParameter(f"expected comma-separated TCP ports 1-65535, got {value!r}")
        ports.append(int(part))
    return tuple(ports)


def _progress(frames: Iterator[Frame]) -> Iterator[Frame]:
    """Pass frames through while showing a packet counter on an interactive terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("reading packets") as status:
        for n, fr in enumerate(frames, 1):
            if not n & 0xFFFF:
                status.update(f"reading packets: {n:,}")
            yield fr


def _output_options(fn: Callable[..., None]) -> Callable[..., None]:
    """The options every analysing command shares (outputs, ports, filter, summary)."""
    opts = [
        click.option("--alerts", "alerts_path", metavar="FILE|-",
                     help="Run the detection rules and write alerts as JSON lines."),
        click.option("--config", "config_path", metavar="FILE", type=click.Path(),
                     help="Site configuration (TOML); see `sensor config --dump`."),
        click.option("--fail-on-alert", is_flag=True,
                     help="Exit with status 1 when any alert was raised (implies detection)."),
        click.option("--sessions", "sessions_path", metavar="FILE|-",
                     help="Write SMTP sessions as JSON lines."),
        click.option("--conns", "conns_path", metavar="FILE|-",
                     help="Write TCP connection records as JSON lines."),
        click.option("--ports", default="25,587", show_default=True, callback=_parse_ports,
                     help="SMTP server ports to analyse: relay and submission (RFC 6409)."),
        click.option("--bpf", default=None,
                     help="BPF filter replacing the one built from --ports."),
        click.option("--quiet", "-q", is_flag=True,
                     help="No summary table. With only --conns, SMTP is then not parsed."),
        click.option("--stats", "stats_path", metavar="FILE|-",
                     help="Write the run's counters as one JSON object."),
        click.option("--model", "model_path", metavar="FILE", type=click.Path(),
                     help="Trained host model (`sensor train`) scoring host windows with the "
                          "rules [default: the bundled models/default.skops]."),
        click.option("--no-model", is_flag=True, help="Rules only: no model scoring."),
        click.option("--host-scores", "host_scores_path", metavar="FILE|-",
                     help="Write one JSON line per host: its highest model score, role, the "
                          "rule kinds raised and the features that stood out (implies "
                          "detection)."),
        click.option("--syslog", "syslog_urls", multiple=True, metavar="URL",
                     help="Send alerts to a syslog collector (repeatable; implies detection): "
                          "udp://HOST:514, tcp://HOST:514[?framing=lf], tls://HOST:6514[?ca=F], "
                          "relp://HOST:2514 or unix:///dev/log; see docs/siem.md."),
        click.option("--format", "syslog_format", type=click.Choice(FORMATS), default=None,
                     help="Message format of the --syslog destinations [default: the "
                          "config's syslog.format, rfc5424]."),
        click.option("--syslog-sessions", is_flag=True,
                     help="Also send one syslog message per SMTP session."),
        click.option("--publish", "publish_url", metavar="URL",
                     help="Append every session and connection record to a Redis stream for "
                          "`sensor detect`: redis://HOST:6379/0?stream=NAME[&maxlen=N]"
                          "[&queue=N]; see docs/scaling.md."),
    ]  # fmt: skip
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _execute(
    frames_for: Callable[[Pipeline, str], Iterator[Frame]],
    *,
    alerts_path: str | None,
    config_path: str | None,
    fail_on_alert: bool,
    sessions_path: str | None,
    conns_path: str | None,
    ports: tuple[int, ...],
    bpf: str | None,
    quiet: bool,
    stats_path: str | None,
    model_path: str | None,
    no_model: bool,
    host_scores_path: str | None,
    syslog_urls: tuple[str, ...],
    syslog_format: str | None,
    syslog_sessions: bool,
    errors: list[tuple[str, str]],
    progress: bool,
    shutdown: Shutdown,
    parallel: ParallelInput | None = None,
    cfg: Config | None = None,
    prepare: Callable[[str], None] | None = None,
    service: LiveService | None = None,
    publish_url: str | None = None,
    live_clock: bool = False,
    live: LiveInput | None = None,
    capture_extra: Callable[[], dict[str, Any]] | None = None,
    status: LiveStatus | None = None,
    cluster: ClusterInput | None = None,
    parquet_dir: str | None = None,
) -> int:
    """Run the pipeline over the frames a source gives, writing every requested output.

    With `parallel`, forked workers analyse shares of the flows of its files instead (`frames_for`
    is not used) and this process merges their records; with `live`, forked workers capture
    fanout shares of its interfaces likewise; with `cluster`, tasks on a Dask
    cluster do, one per file. `parquet_dir` also writes sessions, connections and alerts as
    Parquet. `capture_extra()` gives counters to add to --stats
    and the summary once the run is over (the live interfaces' kernel counters). Returns the
    number of alerts raised (0 when detection was not asked for). After a stop signal
    (`shutdown`), the connections still open are flushed through detection and the outputs, and
    a line says how many.
    `cfg` is the configuration already loaded from `config_path`; `prepare(bpf)` runs once the
    outputs are open, before the model and any thread start (live: open every capture handle,
    drop privileges); `service` learns the outputs and detector (SIGHUP).
    """
    from sensor.capture.bpf import build_filter
    from sensor.config import load_config
    from sensor.output.jsonl import JsonlSink
    from sensor.output.privacy import Privacy
    from sensor.output.summary import render_alerts, render_summary, stats_dict

    cfg = load_config(config_path) if cfg is None else cfg
    syslog = _syslog_fanout(cfg, syslog_urls, syslog_format, syslog_sessions)
    publisher = _publisher(cfg, publish_url, live_clock) if publish_url else None
    # After the sinks' imports (redis-py: some 30k objects), so that they are frozen too rather
    # than counted towards, and walked by, the first young collection of the run.
    _tune_gc()
    detect = (bool(alerts_path) or fail_on_alert or bool(host_scores_path) or bool(syslog)
              or bool(parquet_dir))
    # SMTP sessions feed the session log, detection, the summary and --stats; when none of them
    # is asked for (a quiet run writing connection records only), the run stops after reassembly.
    smtp = bool(sessions_path) or detect or not quiet or bool(stats_path) or bool(publisher)
    privacy = Privacy.from_config(cfg.privacy)  # [privacy]: applied to every output below
    if detect and not quiet:
        for line in cfg.assumed:
            click.echo(f"sensor: assumed {line}", err=True)
    expr = bpf if bpf is not None else build_filter(ports, cfg.decode.max_vlan_tags)
    if no_model and (model_path or host_scores_path):
        raise click.UsageError("--no-model cannot go with --model or --host-scores")
    alert_sink = JsonlSink(alerts_path) if alerts_path else None
    scores_sink = JsonlSink(host_scores_path) if host_scores_path else None
    conn_sink = JsonlSink(conns_path) if conns_path else None
    sess_sink = JsonlSink(sessions_path) if sessions_path else None
    parquet = None
    if parquet_dir:
        from sensor.output.parquet import ParquetSink

        parquet = ParquetSink(parquet_dir)
    stats_sink = JsonlSink(stats_path) if stats_path else None  # opened before privileges go
    if prepare is not None:
        prepare(expr)
    scorer, model_name = (None, "")
    if detect and not no_model:
        scorer, model_name = _open_model(model_path, quiet, cfg=cfg)
    latest: dict[tuple[str, str], Alert] = {}  # newest alert per (host, kind), for the summary

    if detect:  # the detection stage's imports are paid for only when it runs
        from sensor.detect.alerts import alert_to_dict
        from sensor.detect.detector import Detector

    def on_alert(a: Alert) -> None:
        if privacy.enabled:  # once, before any output; detection has used the raw values
            a = privacy.alert(a)
        if alert_sink is not None:
            alert_sink.write(alert_to_dict(a))
        if parquet is not None:
            parquet.alert(alert_to_dict(a))
        if syslog is not None:
            syslog.alert(a)
        if (a.host, a.kind) in latest or len(latest) < _SUMMARY_ALERTS:
            latest[(a.host, a.kind)] = a

    detector = Detector(cfg, on_alert, scorer, model_name) if detect else None
    if service is not None:
        service.attach((alert_sink, scores_sink, conn_sink, sess_sink, stats_sink), detector)
    if status is not None:  # what a live run's stats and metrics read
        status.detector, status.syslog = detector, syslog
    if detector is not None and detector.stage is not None and scores_sink is not None:
        detector.stage.explain_all = True  # every host's line names what stood out
    syslog_session: Callable[[Any], None] | None = None
    if syslog is not None and syslog.sessions:
        from sensor.smtp.schema import session_to_dict

        fan = syslog
        priv_session = privacy.session if privacy.enabled else None

        def syslog_session(s: Any) -> None:
            d = session_to_dict(s)
            fan.session(d if priv_session is None else priv_session(d))

    if syslog is not None:  # its threads start once nothing can stop the run before it begins
        syslog.start()
    if publisher is not None:
        publisher.start()
    parquet_conn, parquet_session = _parquet_outs(parquet, privacy)
    extra: dict[str, Any] = {}
    if parallel is not None or live is not None or cluster is not None:
        from sensor.parallel import Outputs, run_parallel

        outs = Outputs(
            conn_line=conn_sink.write_line if conn_sink is not None else None,
            session_line=sess_sink.write_line if sess_sink is not None else None,
            conn=_fan_out([out for out in (detector.on_conn if detector is not None else None,
                                           publisher.conn if publisher is not None else None,
                                           parquet_conn) if out is not None]),
            session=_fan_out(([detector.on_session] if detector is not None else [])
                             + ([syslog_session] if syslog_session is not None else [])
                             + ([publisher.session] if publisher is not None else [])
                             + ([parquet_session] if parquet_session is not None else [])),
            smtp=smtp,
            smtp_limits=cfg.smtp,
            decode_limits=cfg.decode,
            privacy=privacy,
        )
        sys.stdout.flush()  # forked workers must not inherit (and repeat) buffered output
        sys.stderr.flush()
        try:
            if live is not None:
                from sensor.service.livefanout import run_live_fanout

                done = run_live_fanout(live, expr, ports, outs, limits_from_config(cfg))
                extra = {"interfaces": done.interfaces, "workers": done.workers}
                counted = (done.capture_stats, done.tcp_stats, done.totals, done.flushed)
            elif cluster is not None:
                from sensor.cluster.run import run_cluster

                res = run_cluster(cluster, expr, ports, outs, limits_from_config(cfg))
                counted = (res.capture_stats, res.tcp_stats, res.totals, res.flushed)
            else:
                assert parallel is not None
                res = run_parallel(parallel, expr, ports, outs, limits_from_config(cfg))
                counted = (res.capture_stats, res.tcp_stats, res.totals, res.flushed)
        finally:
            det_stats = detector.finish() if detector is not None else None
            _write_host_scores(detector, scores_sink, privacy)
            for sink in (conn_sink, sess_sink, alert_sink, parquet):
                if sink is not None:
                    sink.close()
            if syslog is not None:
                syslog.close()
            if publisher is not None:
                publisher.close()
        cap, tcp, totals, shutdown.flushed = counted
    else:
        cap, tcp, totals, det_stats = _run_in_process(
            shutdown,
            frames_for,
            expr,
            ports,
            conn_sink,
            sess_sink,
            alert_sink,
            detector,
            progress and not quiet,
            smtp,
            limits_from_config(cfg),
            cfg.smtp,
            cfg.decode,
            scores_sink,
            privacy,
            syslog,
            syslog_session,
            publisher,
            status,
            parquet_conn,
            parquet_session,
        )
        if parquet is not None:
            parquet.close()
    sinks = syslog.stats() if syslog is not None else None
    if publisher is not None:
        sinks = {**(sinks or {}), f"publish {publisher.name}": publisher.stats.as_dict()}
    if capture_extra is not None:
        extra.update(capture_extra())
    if "interfaces" in extra:  # every interface's kernel counters, added up
        rows = extra["interfaces"].values()
        extra["interfaces_total"] = {k: sum(r[k] for r in rows)
                                     for k in ("received", "dropped", "if_dropped")}  # fmt: skip
    if stats_sink is not None:
        counters = stats_dict(cap, tcp, totals, det_stats, sinks)
        counters.update(extra)
        if shutdown.signum:  # the input was cut short: say where the counters come from
            counters["stopped_by"] = {"signal": shutdown.name, "flushed": shutdown.flushed}
        stats_sink.write(counters)
        stats_sink.close()
    if not quiet:
        to_stderr = "-" in (sessions_path, conns_path, stats_path, alerts_path, host_scores_path)
        render_summary(cap, tcp, totals, errors, to_stderr, det_stats, sinks, extra)
        if latest:
            render_alerts(list(latest.values()), to_stderr)
    for name, row in extra.get("interfaces", {}).items():
        click.echo(f"sensor: {name}: {row['received']} packets received by the filter, "
                   f"{row['dropped']} dropped by the kernel, {row['if_dropped']} by the interface",
                   err=True)  # fmt: skip
    if shutdown.signum:
        click.echo(
            f"sensor: {shutdown.name}: stopped reading; {shutdown.flushed} open connections "
            "flushed because of the signal",
            err=True,
        )
    return det_stats.alerts if det_stats is not None else 0


def _run_in_process(
    shutdown: Shutdown,
    frames_for: Callable[[Pipeline, str], Iterator[Frame]],
    expr: str,
    ports: tuple[int, ...],
    conn_sink: JsonlSink | None,
    sess_sink: JsonlSink | None,
    alert_sink: JsonlSink | None,
    detector: Detector | None,
    progress: bool,
    smtp: bool,
    limits: TcpLimits,
    smtp_limits: SmtpLimits | None = None,
    decode_limits: DecodeLimits | None = None,
    scores_sink: JsonlSink | None = None,
    privacy: Privacy | None = None,
    syslog: SyslogFanout | None = None,
    syslog_session: Callable[[Any], None] | None = None,
    publisher: Publisher | None = None,
    status: LiveStatus | None = None,
    parquet_conn: Callable[[Any], None] | None = None,
    parquet_session: Callable[[Any], None] | None = None,
) -> tuple[CaptureStats, TcpStats, RunTotals, DetectorStats | None]:
    """One Pipeline in this process: the single-core path."""
    from sensor.output.jsonl import conn_to_dict
    from sensor.smtp.schema import session_to_dict

    conn_outs: list[Callable[[Any], None]] = []
    sess_outs: list[Callable[[Any], None]] = []
    priv = privacy if privacy is not None and privacy.enabled else None
    if conn_sink is not None:
        if priv is None:
            conn_outs.append(lambda r: conn_sink.write(conn_to_dict(r)))
        else:
            conn_outs.append(lambda r: conn_sink.write(priv.conn(conn_to_dict(r))))
    if sess_sink is not None:
        if priv is None:
            sess_outs.append(lambda s: sess_sink.write(session_to_dict(s)))
        else:
            sess_outs.append(lambda s: sess_sink.write(priv.session(session_to_dict(s))))
    if detector is not None:
        conn_outs.append(detector.on_conn)
        sess_outs.append(detector.on_session)
    if syslog_session is not None:
        sess_outs.append(syslog_session)
    if publisher is not None:  # in the order the pipeline emits them, after detection
        conn_outs.append(publisher.conn)
        sess_outs.append(publisher.session)
    if parquet_conn is not None:
        conn_outs.append(parquet_conn)
    if parquet_session is not None:
        sess_outs.append(parquet_session)
    pipe = Pipeline(
        ports=ports,
        on_conn=_fan_out(conn_outs),
        on_session=_fan_out(sess_outs),
        tcp_limits=limits,
        handlers=None if smtp else no_streams,
        smtp_limits=smtp_limits,
        decode_limits=decode_limits,
    )
    if status is not None:
        status.pipeline = pipe
    frames = frames_for(pipe, expr)
    if progress and sys.stderr.isatty():
        frames = _progress(frames)
    try:
        pipe.run(frames)
    finally:
        before = pipe.totals.connections
        totals = pipe.finish()
        if shutdown.signum:
            shutdown.flushed = totals.connections - before
        det_stats = detector.finish() if detector is not None else None
        _write_host_scores(detector, scores_sink, privacy)
        for sink in (conn_sink, sess_sink, alert_sink):
            if sink is not None:
                sink.close()
        if syslog is not None:
            syslog.close()  # after the last alert, for at most its flush timeout
        if publisher is not None:
            publisher.close()  # after the last record, for at most its flush timeout
    return pipe.capture_stats, pipe.tcp_stats, totals, det_stats


def _parquet_outs(
    parquet: ParquetSink | None, privacy: Privacy
) -> tuple[Callable[[Any], None] | None, Callable[[Any], None] | None]:
    """Callbacks giving connection records and sessions to the Parquet sink, as the JSON logs
    show them ([privacy] applied); (None, None) without --parquet."""
    if parquet is None:
        return None, None
    from sensor.output.jsonl import conn_to_dict
    from sensor.smtp.schema import session_to_dict

    sink = parquet
    if not privacy.enabled:
        return (lambda r: sink.conn(conn_to_dict(r)),
                lambda s: sink.session(session_to_dict(s)))  # fmt: skip
    return (lambda r: sink.conn(privacy.conn(conn_to_dict(r))),
            lambda s: sink.session(privacy.session(session_to_dict(s))))  # fmt: skip


def _syslog_fanout(cfg: Config, urls: tuple[str, ...], fmt: str | None,
                   sessions: bool) -> SyslogFanout | None:
    """The run's syslog destinations ([[sinks.syslog]] in the config, then --syslog URLs), or
    None when there is none. A URL that names no format gets --format, else the config's
    [syslog] format (as do the tables that name none). Their threads are not started yet."""
    from dataclasses import replace

    specs = list(cfg.sinks)
    if not specs and not urls:
        if sessions:
            raise click.UsageError("--syslog-sessions needs a --syslog URL (or [[sinks.syslog]] "
                                   "in the config)")
        return None
    from urllib.parse import parse_qsl, urlsplit

    from sensor.sinks.fanout import SyslogFanout
    from sensor.sinks.syslog import parse_sink_url

    for url in urls:
        spec = parse_sink_url(url, "--syslog")
        named = any(k == "format" for k, _ in parse_qsl(urlsplit(url).query))
        specs.append(spec if named else replace(spec, format=fmt or cfg.syslog.format))

    def warn(text: str) -> None:
        click.echo(f"sensor: warning: {text}", err=True)

    syslog_cfg = replace(cfg.syslog, sessions=cfg.syslog.sessions or sessions)
    return SyslogFanout(specs, syslog_cfg, warn)


def _publisher(cfg: Config, url: str, live_clock: bool) -> Publisher:
    """The --publish destination (its thread not started yet). The entries carry the config's
    sensor name, or this machine's name when the config keeps the packaged default."""
    import socket
    import time

    from sensor.stream.publisher import Publisher
    from sensor.stream.redis_streams import RedisTransport
    from sensor.stream.urls import parse_stream_url

    try:
        spec = parse_stream_url(url, "--publish")
    except SensorError as exc:
        raise click.BadParameter(str(exc).removeprefix("--publish: "),
                                 param_hint="--publish") from None
    name = cfg.site.sensor if cfg.site.sensor != "port25-sensor" else socket.gethostname()

    def warn(text: str) -> None:
        click.echo(f"sensor: warning: {text}", err=True)

    return Publisher(RedisTransport(spec), name, spec.name, spec.queue_size,
                     time.time if live_clock else None, warn)


def _open_model(path: str | None, quiet: bool, in_process: bool = False,
                cfg: Config | None = None) -> tuple[Any, str]:
    """The scorer of the model asked for, or of the bundled one (None when it is absent).

    The model is read (its scoring tables with numpy, or through skops and scikit-learn for a
    detector without them) and scores in a child process, on the other core: this process only
    checks its card, so that none of those imports holds up the packet loop. `in_process`
    scores here instead, synchronously, so that when the alerts leave depends on packet time
    alone (`sensor detect`, whose commits and replays after a restart count on it)."""
    from sensor.detect.card import bundled_model, peek_card
    from sensor.detect.scoring import ChildScorer, LocalScorer

    name = path or ""
    if path is None:
        path = bundled_model()
        if path is None:
            if not quiet:
                click.echo("sensor: note: no bundled model found: rules only", err=True)
            return None, ""
        name = f"bundled ({path})"
    card = peek_card(path)
    if in_process:
        from sensor.detect import tables
        from sensor.detect.model import load

        found = tables.read(path, card)
        return LocalScorer(load(path) if found is None else found), name
    explain = None
    if cfg is not None:  # the child explains the rows over the threshold
        w = cfg.windows
        explain = ({"short": float(w.short_s), "medium": float(w.medium_s),
                    "long": float(w.long_s)}, cfg.model.top_features)
    return ChildScorer(path, card, explain), name


def _write_host_scores(
    detector: Detector | None, sink: JsonlSink | None, privacy: Privacy | None = None
) -> None:
    """One JSON line per host the model scored (written once detection has finished)."""
    if sink is None:
        return
    transform = privacy.host_score if privacy is not None and privacy.enabled else None
    try:
        if detector is not None:
            for line in detector.host_scores():
                sink.write(line if transform is None else transform(line))
    finally:
        sink.close()


def _tune_gc() -> None:
    """Collect cyclic garbage less often during a run.

    The packet loop allocates millions of short-lived, acyclic tuples and bytes; with the default
    young-generation threshold (700) about a fifth of the run went to collections that found
    nothing. Objects alive at start-up are frozen out of the collector's sight.
    """
    gc.freeze()
    gc.set_threshold(_GC_YOUNG_THRESHOLD, 50, 100)


def _fan_out(outs: list[Callable[[Any], None]]) -> Callable[[Any], None] | None:
    """One callback calling each of `outs` in turn (None when there is nothing to call)."""
    if not outs:
        return None
    if len(outs) == 1:
        return outs[0]

    def call_all(rec: Any) -> None:
        for out in outs:
            out(rec)

    return call_all


def _parse_workers(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """Click callback: 'auto' -> one per core (capped), 'N' -> N, else a usage error."""
    from sensor.parallel import resolve_workers

    try:
        return resolve_workers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_cluster(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: local, local:N or a scheduler address, else a usage error."""
    if value is None:
        return None
    from sensor.cluster.run import parse_address

    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _note(line: str) -> None:
    """One line on stderr (the cluster's dashboard link and progress)."""
    click.echo(line, err=True)


def _abort(exc: Aborted) -> None:
    """A second stop signal cut the flush short: say so, exit with the signal's code."""
    import signal

    name = signal.Signals(exc.signum).name
    click.echo(f"sensor: second {name}: flush abandoned, outputs may be incomplete", err=True)
    sys.exit(128 + exc.signum)


@main.command()
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--workers", default="1", show_default=True, callback=_parse_workers,
              metavar="N|auto",
              help="Processes sharing the flows (auto: one per core, at most 8).")  # fmt: skip
@click.option("--cluster", default=None, callback=_parse_cluster,
              metavar="tcp://HOST:PORT|local[:N]",
              help="Analyse the files on a Dask cluster, one task per file (local[:N]: start N "
                   "worker processes here); see docs/scaling.md.")
@click.option("--parquet", "parquet_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Also write sessions, connections and alerts as Parquet, partitioned by day "
                   "(implies detection); see docs/scaling.md.")
@click.option("--stream-wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="How long stdin ('-') and FIFOs may take to send their first bytes before "
                   "they are skipped  [default: 10].")  # fmt: skip
@_output_options
def analyze(pcaps: tuple[str, ...], workers: int, cluster: str | None, parquet_dir: str | None,
            stream_wait: float | None, **opts: Any) -> None:
    """Analyse capture files (pcap, pcapng, optionally gzip-compressed); '-' reads stdin.

    SIGINT or SIGTERM stops the reading: open connections are flushed, the summary printed, and
    the exit code is 130 or 143.
    """
    from sensor.capture.source import open_files
    from sensor.capture.stream import STREAM_WAIT_S, is_stream

    errors: list[tuple[str, str]] = []
    wait = STREAM_WAIT_S if stream_wait is None else stream_wait

    def on_error(path: str, reason: str) -> None:
        errors.append((path, reason))
        click.echo(f"sensor: error: {path}: {reason}", err=True)

    shutdown = Shutdown()
    shutdown.install()
    try:
        parallel = None
        on_cluster = None
        if cluster is not None:
            if workers > 1:
                raise click.UsageError("--cluster and --workers cannot go together")
            from sensor.cluster.run import ClusterInput

            on_cluster = ClusterInput(cluster, pcaps, on_error, _note, shutdown.stop)
        elif workers > 1 and any(is_stream(p) for p in pcaps):
            click.echo(
                "sensor: note: stdin and FIFOs can be read only once: one process reads "
                "everything (--workers ignored)",
                err=True,
            )
        elif workers > 1:  # else the single-process path, unchanged
            from sensor.parallel import ParallelInput

            parallel = ParallelInput(pcaps, workers, on_error, shutdown)
        alerts = _execute(
            lambda pipe, expr: open_files(
                pcaps, expr, pipe.capture_stats, on_error, stop=shutdown.stop, stream_wait=wait
            ),
            errors=errors,
            progress=True,
            parallel=parallel,
            cluster=on_cluster,
            parquet_dir=parquet_dir,
            shutdown=shutdown,
            **opts,
        )
    except Aborted as exc:
        _abort(exc)
    finally:
        shutdown.restore()
    if shutdown.signum:
        sys.exit(shutdown.exit_code)
    if errors:
        sys.exit(2)
    if alerts and opts["fail_on_alert"]:
        sys.exit(1)


def _parse_workers_opt(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """`_parse_workers` for an option whose absence (None) leaves the choice to the config."""
    return None if value is None else _parse_workers(ctx, param, value)


def _parse_cpus_opt(ctx: click.Context, param: click.Parameter,
                    value: str | None) -> tuple[int, ...] | None:  # fmt: skip
    """--cpus as core numbers (sensor.service.affinity); None leaves the choice to the config."""
    from sensor.service.affinity import parse_cpus

    if value is None:
        return None
    try:
        return parse_cpus(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


# --------------------------------------------------------------------------------------------
# live: what the running service tells its operator (periodic stats lines, Prometheus, loss)


def _live_report_options(fn: Callable[..., None]) -> Callable[..., None]:
    """--stats-interval, --stats-log and --metrics of the live command."""
    opts = [
        click.option("--stats-interval", type=click.FloatRange(min=0), default=None,
                     metavar="SECONDS",
                     help="Period of the stats lines and of the capture-loss check (0: off) "
                          "[default: live.stats_interval_s, 60]."),
        click.option("--stats-log", metavar="FILE|-",
                     help="Append one JSON line of counters (totals, deltas, capture-loss "
                          "estimate) every --stats-interval."),
        click.option("--metrics", metavar="HOST:PORT",
                     help="Serve Prometheus metrics on http://HOST:PORT/metrics."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


class _LiveReport:
    """The live run's StatsReporter and metrics server: the stats log is opened with the other
    outputs, before privileges are dropped; the threads start after (capabilities are per
    thread); closed after the capture (the stats log then gets a last line for the partial
    interval)."""

    def __init__(self, interval: float, log_path: str | None, listen: str | None,
                 cfg: Config) -> None:
        from sensor.service.stats import StatsReporter, open_stats_log

        self._interval = interval
        self._listen = listen
        self._cfg = cfg
        self._server: Any = None
        self._reporter: StatsReporter | None = None
        self._log = open_stats_log(log_path) if interval > 0 else None

    def start(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Serve the metrics and start the periodic stats lines, reading `snapshot`."""
        from sensor.service.stats import StatsReporter

        if self._listen is not None:
            from sensor.service.metrics import start_metrics_server

            self._server = start_metrics_server(self._listen, snapshot)
        if self._interval > 0:
            self._reporter = StatsReporter(
                snapshot, self._interval, self._log, self._cfg.capture.loss_warn_percent,
                lambda text: click.echo(f"sensor: warning: {text}", err=True))
            self._reporter.start()

    def close(self) -> None:
        """Write the last stats line, close the log, stop serving metrics."""
        if self._reporter is not None:
            self._reporter.stop(final=True)
        if self._log is not None and self._log is not sys.stdout:
            self._log.close()
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@main.command()
@click.option("-i", "--interface", "ifaces", multiple=True,
              help="Interface to capture on (repeatable: several interfaces in one run) "
                   "[default: the config's live.interfaces].")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: run until SIGINT/SIGTERM).")
@click.option("--workers", default=None, callback=_parse_workers_opt, metavar="N|auto",
              help="Capture processes per interface, sharing its flows through a kernel "
                   "PACKET_FANOUT_HASH group (auto: one per core, at most 8) [default: the "
                   "config's live.workers, 1].")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=None,
              help="Bytes kept per packet (SMTP payload beyond it is lost: keep the default) "
                   "[default: live.snaplen, 262144].")
@click.option("--buffer-mb", type=click.IntRange(1, 4096), default=None,
              help="Kernel ring buffer per capture process, in MiB (absorbs bursts) [default: "
                   "live.buffer_mb, 64].")
@click.option("--promisc/--no-promisc", default=None,
              help="Put the interface in promiscuous mode (a span port needs it) [default: "
                   "live.promisc, on].")
@click.option("--cpus", default=None, callback=_parse_cpus_opt, metavar="LIST",
              help="Cores the capture processes run on, e.g. 0,2-3: one process on the whole "
                   "list, worker i on its i-th core; '' not pinned [default: live.cpus, ''].")
@click.option("--user", default=None, metavar="NAME",
              help="Run as NAME once the capture is open, with no capability left [default: "
                   "the config's live.user; '': nobody when started as root, else the current "
                   "user]. Naming the current user (root) keeps the uid.")
@click.option("--check-interface", "check_iface", default=None, metavar="IFACE",
              help="Check IFACE for capture (offloads, promiscuous mode, MTU, link) and say "
                   "what to change; exit 0 fine, 1 something to change, 2 no such interface.")
@_live_report_options
@_output_options
def live(ifaces: tuple[str, ...], duration: float | None, workers: int | None,
         snaplen: int | None, buffer_mb: int | None, promisc: bool | None,
         cpus: tuple[int, ...] | None, user: str | None, check_iface: str | None,
         stats_interval: float | None, stats_log: str | None, metrics: str | None,
         **opts: Any) -> None:  # fmt: skip
    """Analyse live traffic on interfaces (libpcap, BPF filter in the kernel).

    With --workers N, or several -i, each interface is read by N processes joined in one kernel
    fanout group (both directions of a connection reach the same process); this process merges
    their records and runs detection and every output once. A worker that dies is restarted
    on the same capture handle, and the loss is counted in --stats and the summary.

    With `--config FILE`, its [live] section gives the interfaces, workers, capture settings,
    user and outputs that no option names, so a service runs with `--config` alone. SIGTERM or
    SIGINT is the normal way to stop: open connections and sessions are flushed, pending alerts
    delivered, the summary written, and the exit code is 0. SIGHUP reopens the output files
    (logrotate) and reloads the rules and suppression from the config file.
    """
    from sensor.capture.live import LiveSource
    from sensor.config import load_config
    from sensor.parallel import resolve_workers
    from sensor.service.affinity import check_cpus, others, pin, pinned_to
    from sensor.service.memory import HeapTrimmer, Reservation, reserve
    from sensor.service.runtime import LiveService, live_settings
    from sensor.service.stats import LiveStatus

    if check_iface is not None:
        from sensor.service.ifcheck import check_interface, render_check

        report = check_interface(check_iface)
        click.echo(render_check(report))
        sys.exit(report.exit_code)
    cfg = load_config(opts["config_path"])
    ifaces, user = live_settings(cfg, ifaces, user, opts)
    if not ifaces:
        raise click.UsageError("no interface: -i IFACE, or [live] interfaces in the config")
    n_workers = workers if workers is not None else (
        cfg.live.workers or resolve_workers("auto"))
    snap = snaplen if snaplen is not None else cfg.live.snaplen
    buffer_bytes = (buffer_mb if buffer_mb is not None else cfg.live.buffer_mb) << 20
    promiscuous = cfg.live.promisc if promisc is None else promisc
    cores = cfg.live.cpus if cpus is None else cpus
    check_cpus(cores, "live.cpus" if cpus is None else "--cpus")
    interval = float(cfg.live.stats_interval_s) if stats_interval is None else stats_interval
    if interval <= 0 and stats_log is not None:
        raise click.UsageError("--stats-log needs a --stats-interval above 0")
    if metrics is not None:  # checked before anything opens (the server starts after the drop)
        from sensor.service.metrics import parse_listen

        parse_listen(metrics)
    holder: list[LiveSource] = []
    shutdown = Shutdown()
    service = LiveService(opts["config_path"], cfg, user,
                          lambda text: click.echo(f"sensor: warning: {text}", err=True))
    where = ", ".join(ifaces)
    status = LiveStatus()  # what the stats lines and the metrics read
    fan_snapshot: list[Callable[[], dict[str, Any]]] = []  # the fanout parent's, once running
    live_report = _LiveReport(interval, stats_log, metrics, cfg)  # log opened before the drop
    trimmer = HeapTrimmer(cfg.live.heap_trim_s)
    reserved = [Reservation()]  # this process's, once made (one worker; else each worker's)

    def snapshot() -> dict[str, Any]:
        base = status.snapshot()
        if fan_snapshot:
            out = fan_snapshot[0]()
            for key in ("detect", "sinks"):  # the parent's detector and sinks
                if key in base:
                    out[key] = base[key]
            base = out
        base["process"].update(trimmer.stats())
        base["process"].update(reserved[0].stats())
        base["process"]["cpus"] = pinned_to()  # a fanout parent's: the cores not listed
        return base

    fanout = None
    if n_workers > 1 or len(ifaces) > 1:
        from sensor.service.livefanout import LiveInput, open_handles

        def event(line: str) -> None:
            click.echo(f"sensor: {line}", err=True)

        fanout = LiveInput(ifaces, n_workers, shutdown, snaplen=snap, promisc=promiscuous,
                           buffer_bytes=buffer_bytes, duration=duration, on_event=event,
                           heap_trim_s=cfg.live.heap_trim_s,
                           reserve_bytes=(cfg.live.reserve_mb << 20) // (n_workers * len(ifaces)),
                           cpus=cores,
                           on_wake=service.tick, on_snapshot=fan_snapshot.append)  # fmt: skip

    def prepare(expr: str) -> None:  # every capture handle is opened, then privileges go
        if fanout is not None:
            fanout.handles = open_handles(fanout, expr)
        else:
            source = LiveSource(ifaces[0], bpf=expr, snaplen=snap, promisc=promiscuous,
                                buffer_bytes=buffer_bytes)  # fmt: skip
            source.on_wake = service.tick
            holder.append(source)
            status.sources.append(source)
        did = service.drop()
        if not opts["quiet"]:
            click.echo(f"sensor: {did}", err=True)
        # The processes forked from here on (the model's, the fanout workers) start on the
        # cores not listed; a capture process then moves to its own (frames_for, the workers).
        pin(others(cores))
        live_report.start(snapshot)  # threads start once privileges are gone (per-thread caps)
        trimmer.start()
        if fanout is not None:
            shutdown.add_hook(lambda _signum: service.stopping(f"stopping ({shutdown.name})"))
            service.ready(f"capturing on {where} ({n_workers} workers each)")

    def frames_for(pipe: Pipeline, expr: str) -> Iterator[Frame]:
        source = holder[0]
        shutdown.add_hook(lambda _signum: source.stop())
        shutdown.add_hook(lambda _signum: service.stopping(f"stopping ({shutdown.name})"))
        if duration is not None:
            timer = threading.Timer(duration, source.stop)
            timer.daemon = True
            timer.start()
        # After the model's process is forked (it would share, copy-on-write, every page; and
        # it keeps the cores not listed)
        pin(cores)
        reserved[0] = reserve(cfg.live.reserve_mb << 20)
        trimmer.keep_bytes = reserved[0].malloc_bytes
        service.ready(f"capturing on {where}")
        cap, totals = pipe.capture_stats, pipe.totals
        service.describe = lambda: (f"capturing on {where}: {cap.packets} packets, "
                                    f"{totals.connections} connections, "
                                    f"{totals.sessions} sessions")
        return source.frames(pipe.capture_stats)

    def interfaces() -> dict[str, Any]:
        out: dict[str, dict[str, int]] = {}
        for source in holder:
            received, dropped, if_dropped = source.stats()
            out[source.iface] = {"received": received, "dropped": dropped,
                                 "if_dropped": if_dropped}  # fmt: skip
        return {"interfaces": out}

    shutdown.install()
    service.install()
    try:
        alerts = _execute(frames_for, errors=[], progress=False, shutdown=shutdown, cfg=cfg,
                          prepare=prepare, service=service, live_clock=True, live=fanout,
                          capture_extra=interfaces if fanout is None else None, status=status,
                          **opts)  # fmt: skip
    except Aborted as exc:
        _abort(exc)
    finally:
        if not shutdown.signum:
            service.stopping("stopping")
        shutdown.restore()
        service.close()
        live_report.close()
        trimmer.stop()
        for source in holder:
            source.close()
    if alerts and opts["fail_on_alert"]:
        sys.exit(1)
