"""The `hub` command: `hub demo` (embedded, no services needed) and `hub run --config DIR`."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from hub.errors import ConfigError, TransientError
from hub.log import configure_logging, get_logger


@click.group()
def main() -> None:
    """Liaison and Diversion hub: justice alerts in, FHIR referrals out, outcomes back."""


@main.command()
@click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("config"),
    show_default=True,
    help="directory with hub.yaml, routes.yaml",
)
def run(config_dir: Path) -> None:
    """Run the hub against RabbitMQ (HUB_AMQP_URL) and the ledger (HUB_DB_URL)."""
    from hub.bootstrap import Hub
    from hub.settings import load_settings

    try:
        settings = load_settings(config_dir)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    configure_logging(level=settings.log_level)
    log = get_logger("hub.cli")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    hub = Hub(settings)
    try:
        hub.start()
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        click.echo(f"cannot start: {exc.message}", err=True)
        sys.exit(3)
    stop.wait()
    log.info("hub_stopping")
    hub.stop()


@main.command()
@click.option("--verbose", is_flag=True, help="also print the hub's JSON log lines")
def demo(verbose: bool) -> None:
    """Run the whole hub in one process on kombu's in-memory transport, an SQLite ledger and a
    pretend NHS trust, publish a handful of alerts and print each one's journey."""
    from hub.demo import run_demo

    sys.exit(run_demo(verbose=verbose))
