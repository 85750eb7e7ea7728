"""The `sensor` command line: wires the stages together; all terminal rendering lives here."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from sensor import __version__
from sensor.errors import SensorError


class _Group(click.Group):
    """Turns every SensorError into one line on stderr and its exit code, never a traceback."""

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


def _parse_ports(value: str) -> tuple[int, ...]:
    ports: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise click.BadParameter(f"expected comma-separated TCP ports 1-65535, got {value!r}")
        ports.append(int(part))
    return tuple(ports)


def _progress(frames: Iterator[tuple[float, int, bytes]]) -> Iterator[tuple[float, int, bytes]]:
    """Pass frames through while showing a packet counter on an interactive terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("reading packets") as status:
        for n, fr in enumerate(frames, 1):
            if not n & 0xFFFF:
                status.update(f"reading packets: {n:,}")
            yield fr


@main.command()
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "--sessions", "sessions_path", metavar="FILE|-", help="Write SMTP sessions as JSON lines."
)
@click.option(
    "--conns", "conns_path", metavar="FILE|-", help="Write TCP connection records as JSON lines."
)
@click.option(
    "--ports", default="25", show_default=True, help="SMTP server ports to analyse (e.g. 25,587)."
)
@click.option("--bpf", default=None, help="BPF filter overriding the one built from --ports.")
@click.option("--quiet", "-q", is_flag=True, help="No summary table.")
@click.option(
    "--stats", "stats_path", metavar="FILE|-", help="Write the run's counters as one JSON object."
)
def analyze(
    pcaps: tuple[str, ...],
    sessions_path: str | None,
    conns_path: str | None,
    ports: str,
    bpf: str | None,
    quiet: bool,
    stats_path: str | None,
) -> None:
    """Analyse capture files (pcap, pcapng, optionally gzip-compressed)."""
    from sensor.capture.bpf import build_filter
    from sensor.capture.source import open_files
    from sensor.output.jsonl import JsonlSink, record_to_dict
    from sensor.output.summary import render_summary, stats_dict
    from sensor.pipeline import Pipeline
    from sensor.smtp.schema import session_to_dict

    port_list = _parse_ports(ports)
    expr = bpf if bpf is not None else build_filter(port_list)
    conn_sink = JsonlSink(conns_path) if conns_path else None
    sess_sink = JsonlSink(sessions_path) if sessions_path else None
    errors: list[tuple[str, str]] = []

    def on_error(path: str, reason: str) -> None:
        errors.append((path, reason))
        click.echo(f"sensor: error: {path}: {reason}", err=True)

    pipe = Pipeline(
        ports=port_list,
        on_conn=(lambda r: conn_sink.write(record_to_dict(r))) if conn_sink else None,
        on_session=(lambda s: sess_sink.write(session_to_dict(s))) if sess_sink else None,
    )
    frames = open_files(pcaps, expr, pipe.capture_stats, on_error)
    if sys.stderr.isatty() and not quiet:
        frames = _progress(frames)
    try:
        pipe.run(frames)
    finally:
        totals = pipe.finish()
        for sink in (conn_sink, sess_sink):
            if sink is not None:
                sink.close()
    if stats_path:
        stats_sink = JsonlSink(stats_path)
        stats_sink.write(stats_dict(pipe.capture_stats, pipe.tcp_stats, totals))
        stats_sink.close()
    if not quiet:
        to_stderr = "-" in (sessions_path, conns_path, stats_path)
        render_summary(pipe.capture_stats, pipe.tcp_stats, totals, errors, to_stderr)
    if errors:
        sys.exit(2)


def _register() -> None:
    """Attach the subcommands that live beside their stage."""
    from sensor.simulate.cli import simulate

    main.add_command(simulate)


_register()
