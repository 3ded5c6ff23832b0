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


def echo(text: object = "", *, err: bool = False) -> None:
    """The one way the `hub` commands print: one line, neutralised (hub.security.terminal), since
    almost everything printed (ids, headers, errors, routing keys) was written by someone
    outside. A line break inside `text` is printed as `\\u000a`, never as a new line."""
    from hub.security.terminal import neutralise

    click.echo(neutralise(str(text)), err=err)


def echo_json(value: object) -> None:
    """JSON for scripts: json.dumps escapes controls inside strings; neutralise catches the
    rest (DEL, C1, bidi and format characters) and keeps the layout's own line breaks."""
    import json

    from hub.security.terminal import neutralise

    click.echo(neutralise(json.dumps(value, indent=2, default=str), keep_newlines=True))
