"""`hub endpoint pause|resume|list`: operators stop and restart delivery to one endpoint on a
running hub without losing anything.

The switch is a row in the ledger's database (hub.adapters.sql.switches); every running
hub polls it (every 2 s) and cancels or resumes that endpoint's consumers, so its referrals wait
in hub.deliver.<endpoint> on the broker. A pause outlives hub restarts until resumed. An endpoint
paused in hub.yaml (`paused: true`) stays paused whatever the switch says.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hub.cli.options import as_option, config_option, echo
from hub.errors import ConfigError, TransientError


@click.group()
def endpoint() -> None:
    """Pause or resume delivery to one endpoint on the running hub."""


_config = config_option
_as = as_option


@contextmanager
def _switches(config_dir: Path, name: str | None) -> Iterator[tuple[Any, Any]]:
    from hub.adapters.sql.switches import SqlEndpointSwitches
    from hub.settings.load import load_settings

    try:
        settings = load_settings(config_dir)
        if name is not None and name not in settings.endpoints:
            known = ", ".join(sorted(settings.endpoints))
            raise click.UsageError(f"no endpoint {name!r} in {config_dir}/hub.yaml ({known})")
        switches = SqlEndpointSwitches(settings.db_url)
    except ConfigError as exc:
        echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"cannot reach the database: {exc.message}", err=True)
        sys.exit(3)
    try:
        yield settings, switches
    except TransientError as exc:
        echo(f"failed: {exc.message}", err=True)
        sys.exit(3)
    finally:
        switches.close()


def _who(given: str | None) -> str:
    from hub.settings.load import operator_name

    name = (given or "").strip() or operator_name()
    if not name:
        raise click.UsageError("say who you are: --as NAME or HUB_OPERATOR")
    return name


@endpoint.command("pause")
@click.argument("name")
@click.option("--reason", default=None, help="why, for the record")
@_config
@_as
def pause(name: str, reason: str | None, config_dir: Path, operator: str | None) -> None:
    """Stop delivering to NAME; its referrals wait in hub.deliver.NAME."""
    who = _who(operator)
    with _switches(config_dir, name) as (_, switches):
        switches.set_paused(name, paused=True, at=datetime.now(UTC), by=who, reason=reason)
    echo(f"{name}: paused (running hubs stop consuming within a few seconds)")


@endpoint.command("resume")
@click.argument("name")
@_config
@_as
def resume(name: str, config_dir: Path, operator: str | None) -> None:
    """Resume delivering to NAME."""
    who = _who(operator)
    with _switches(config_dir, name) as (settings, switches):
        switches.set_paused(name, paused=False, at=datetime.now(UTC), by=who)
        if settings.endpoints[name].paused:
            echo(f"{name}: still paused by `paused: true` in hub.yaml", err=True)
            sys.exit(1)
    echo(f"{name}: resumed")


@endpoint.command("list")
@_config
def list_(config_dir: Path) -> None:
    """Every configured endpoint and whether it is paused, by whom and when."""
    with _switches(config_dir, None) as (settings, switches):
        by_name = {s.endpoint: s for s in switches.all()}
        for name, configured in sorted(settings.endpoints.items()):
            switch = by_name.get(name)
            if configured.paused:
                state = "paused (hub.yaml)"
            elif switch and switch.paused:
                state = f"paused by {switch.changed_by} at {switch.changed_at:%Y-%m-%d %H:%M:%S}"
                state += f" ({switch.reason})" if switch.reason else ""
            else:
                state = "delivering"
            echo(f"{name:24} {configured.kind:11} {state}")
