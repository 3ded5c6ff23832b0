"""`hub operator ...`: ops-console operator accounts."""

from __future__ import annotations

import sys

import click

from hub.cli.options import echo


@click.group()
def operator() -> None:
    """Ops-console operator accounts (`operators:` in hub.yaml)."""


@operator.command("hash-password")
def operator_hash_password() -> None:
    """Read a password from stdin (first line) and print its argon2 hash for hub.yaml."""
    from hub.security.passwords import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("an empty password cannot be hashed")
    echo(hash_password(password))
