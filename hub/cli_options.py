"""Click options shared by the `hub` sub-commands (operations and endpoint control)."""

from __future__ import annotations

from pathlib import Path

import click

config_option = click.option(
    "--config",
    "config_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("config"),
    show_default=True,
    help="directory with hub.yaml (HUB_DB_URL / HUB_AMQP_URL override it)",
)
as_option = click.option(
    "--as", "operator", metavar="NAME", help="who is acting (default: $HUB_OPERATOR)"
)
