"""The `sensor` command line: wires the stages together; all rendering to the terminal lives here."""

from __future__ import annotations

import click

from sensor import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sensor")
def main() -> None:
    """Passive SMTP (port 25) sensor: sessions, per-host behaviour and mail-abuse alerts."""
