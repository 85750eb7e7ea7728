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
    from sensor.sinks.fanout import SyslogFanout
    from sensor.smtp.limits import SmtpLimits
    from sensor.tcp.reassembler import TcpLimits

_GC_YOUNG_THRESHOLD = 500_000  # net container allocations between young collections (default
# 700). Each young collection walks every young object, and session records live for the
# 5 s linger: the rarer the walk, the more of them are gone before it (3% of a run at 100k).
_SUMMARY_ALERTS = 50  # (host, kind) pairs listed in the closing alert table, at most
FORMATS = ("rfc5424", "rfc3164", "json", "cef", "leef", "ecs")  # sensor.sinks.formats.FORMATS,
# named here so that the command line does not import the sinks when none is asked for


_LAZY_COMMANDS = {  # subcommands that live beside their stage, imported only when invoked
    "simulate": ("sensor.simulate.cli", "simulate"),
    "config": ("sensor.detect.cli", "config_cmd"),
    "evaluate": ("sensor.detect.cli", "evaluate_cmd"),
    "train": ("sensor.detect.cli", "train_cmd"),
    "inspect": ("sensor.detect.cli", "inspect_cmd"),
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
    cluster: ClusterInput | None = None,
    parquet_dir: str | None = None,
) -> int:
    """Run the pipeline over the frames a source gives, writing every requested output.

    With `parallel`, forked workers analyse shares of the flows of its files instead (`frames_for`
    is not used) and this process merges their records; with `cluster`, tasks on a Dask cluster
    do, one per file. `parquet_dir` also writes sessions, connections and alerts as Parquet.
    Returns the number of alerts raised (0 when detection was not asked for). After a stop
    signal (`shutdown`), the connections still open are flushed through detection and the
    outputs, and a line says how many.
    """
    from sensor.capture.bpf import build_filter
    from sensor.config import load_config
    from sensor.output.jsonl import JsonlSink
    from sensor.output.privacy import Privacy
    from sensor.output.summary import render_alerts, render_summary, stats_dict

    _tune_gc()
    cfg = load_config(config_path)
    syslog = _syslog_fanout(cfg, syslog_urls, syslog_format, syslog_sessions)
    detect = (bool(alerts_path) or fail_on_alert or bool(host_scores_path) or bool(syslog)
              or bool(parquet_dir))
    # SMTP sessions feed the session log, detection, the summary and --stats; when none of them
    # is asked for (a quiet run writing connection records only), the run stops after reassembly.
    smtp = bool(sessions_path) or detect or not quiet or bool(stats_path)
    privacy = Privacy.from_config(cfg.privacy)  # [privacy]: applied to every output below
    if detect and not quiet:
        for line in cfg.assumed:
            click.echo(f"sensor: assumed {line}", err=True)
    expr = bpf if bpf is not None else build_filter(ports, cfg.decode.max_vlan_tags)
    if no_model and (model_path or host_scores_path):
        raise click.UsageError("--no-model cannot go with --model or --host-scores")
    scorer, model_name = (None, "")
    if detect and not no_model:
        scorer, model_name = _open_model(model_path, quiet)
    alert_sink = JsonlSink(alerts_path) if alerts_path else None
    scores_sink = JsonlSink(host_scores_path) if host_scores_path else None
    conn_sink = JsonlSink(conns_path) if conns_path else None
    sess_sink = JsonlSink(sessions_path) if sessions_path else None
    parquet = None
    if parquet_dir:
        from sensor.output.parquet import ParquetSink

        parquet = ParquetSink(parquet_dir)
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
    parquet_conn, parquet_session = _parquet_outs(parquet, privacy)
    if parallel is not None or cluster is not None:
        from sensor.parallel import Outputs, run_parallel

        outs = Outputs(
            conn_line=conn_sink.write_line if conn_sink is not None else None,
            session_line=sess_sink.write_line if sess_sink is not None else None,
            conn=_fan_out(([detector.on_conn] if detector is not None else [])
                          + ([parquet_conn] if parquet_conn is not None else [])),
            session=_fan_out(([detector.on_session] if detector is not None else [])
                             + ([syslog_session] if syslog_session is not None else [])
                             + ([parquet_session] if parquet_session is not None else [])),
            smtp=smtp,
            smtp_limits=cfg.smtp,
            decode_limits=cfg.decode,
            privacy=privacy,
        )
        sys.stdout.flush()  # forked workers must not inherit (and repeat) buffered output
        sys.stderr.flush()
        try:
            if cluster is not None:
                from sensor.cluster.run import run_cluster

                result = run_cluster(cluster, expr, ports, outs, limits_from_config(cfg))
            else:
                assert parallel is not None
                result = run_parallel(parallel, expr, ports, outs, limits_from_config(cfg))
        finally:
            det_stats = detector.finish() if detector is not None else None
            _write_host_scores(detector, scores_sink, privacy)
            for sink in (conn_sink, sess_sink, alert_sink, parquet):
                if sink is not None:
                    sink.close()
            if syslog is not None:
                syslog.close()
        cap, tcp, totals = result.capture_stats, result.tcp_stats, result.totals
        shutdown.flushed = result.flushed
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
            parquet_conn,
            parquet_session,
        )
        if parquet is not None:
            parquet.close()
    sinks = syslog.stats() if syslog is not None else None
    if stats_path:
        stats_sink = JsonlSink(stats_path)
        counters = stats_dict(cap, tcp, totals, det_stats, sinks)
        if shutdown.signum:  # the input was cut short: say where the counters come from
            counters["stopped_by"] = {"signal": shutdown.name, "flushed": shutdown.flushed}
        stats_sink.write(counters)
        stats_sink.close()
    if not quiet:
        to_stderr = "-" in (sessions_path, conns_path, stats_path, alerts_path, host_scores_path)
        render_summary(cap, tcp, totals, errors, to_stderr, det_stats, sinks)
        if latest:
            render_alerts(list(latest.values()), to_stderr)
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


def _open_model(path: str | None, quiet: bool) -> tuple[Any, str]:
    """The scorer of the model asked for, or of the bundled one (None when it is absent).

    A model with scoring tables (the default detectors) scores in this process with numpy
    alone; any other is loaded through skops and scikit-learn in a child process, so that their
    import does not hold up the packet loop."""
    from sensor.detect import tables
    from sensor.detect.model import bundled_model, peek_card
    from sensor.detect.scoring import ChildScorer, LocalScorer

    name = path or ""
    if path is None:
        path = bundled_model()
        if path is None:
            if not quiet:
                click.echo("sensor: note: no bundled model found: rules only", err=True)
            return None, ""
        name = f"bundled ({path})"
    found = tables.read(path, peek_card(path))
    return (ChildScorer(path) if found is None else LocalScorer(found)), name


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


@main.command()
@click.option("-i", "--interface", "iface", required=True, help="Interface to capture on.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds (default: run until SIGINT/SIGTERM).")  # fmt: skip
@_output_options
def live(iface: str, duration: float | None, **opts: Any) -> None:
    """Analyse live traffic on an interface (libpcap, BPF filter in the kernel)."""
    from sensor.capture.live import LiveSource

    holder: list[LiveSource] = []
    shutdown = Shutdown()

    def frames_for(pipe: Pipeline, expr: str) -> Iterator[Frame]:
        source = LiveSource(iface, bpf=expr)
        holder.append(source)
        shutdown.add_hook(lambda _signum: source.stop())
        if duration is not None:
            timer = threading.Timer(duration, source.stop)
            timer.daemon = True
            timer.start()
        return source.frames(pipe.capture_stats)

    shutdown.install()
    try:
        alerts = _execute(frames_for, errors=[], progress=False, shutdown=shutdown, **opts)
    except Aborted as exc:
        _abort(exc)
    finally:
        shutdown.restore()
        for source in holder:
            received, dropped, if_dropped = source.stats()
            click.echo(
                f"sensor: {iface}: {received} packets received by the filter, "
                f"{dropped} dropped by the kernel, {if_dropped} by the interface",
                err=True,
            )
            source.close()
    if alerts and opts["fail_on_alert"]:
        sys.exit(1)


