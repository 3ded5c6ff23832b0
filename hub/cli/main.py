"""The `hub` command: `hub demo` (embedded, no services needed), `hub run --config DIR`, and the
operator's commands `hub failed list|show|replay|discard` and `hub trace` (docs/operations.md).

A thin shell: the logic lives in hub.operations; adapters come from hub.bootstrap."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from hub.cli.operators import operator
from hub.cli.options import as_option, config_option, echo, echo_json
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
    from hub.settings.load import load_settings

    try:
        settings = load_settings(config_dir)
    except ConfigError as exc:
        echo(str(exc), err=True)
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
        echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"cannot start: {exc.message}", err=True)
        sys.exit(3)
    stop.wait()
    log.info("hub_stopping")
    hub.stop()


@main.command()
@click.option("--verbose", is_flag=True, help="also print the hub's JSON log lines")
def demo(verbose: bool) -> None:
    """Run the whole hub in one process on kombu's in-memory transport, an SQLite ledger and a
    pretend NHS trust, publish a handful of alerts and print each one's journey."""
    from hub.cli.demo import run_demo

    sys.exit(run_demo(verbose=verbose))


# -- operations: hub failed …, hub trace ---------------------------------------------------

_config_option = config_option
_as_option = as_option


@contextmanager
def _operations(config_dir: Path) -> Iterator[Any]:
    """The ledger, failed-message store and publisher for one command; operator errors and an
    unreachable database end the command with a message, not a traceback."""
    from hub.bootstrap import operations_adapters
    from hub.operations.failed import OperationRefused
    from hub.settings.load import load_settings

    try:
        settings = load_settings(config_dir)
        configure_logging(level=settings.log_level)  # JSON lines on stderr, never stdout
        ledger, store, publisher = operations_adapters(settings)
    except ConfigError as exc:
        echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"cannot reach the database: {exc.message}", err=True)
        sys.exit(3)
    try:
        yield ledger, store, publisher
    except OperationRefused as exc:
        echo(f"refused: {exc}", err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"failed: {exc.message}", err=True)
        sys.exit(3)
    finally:
        publisher.close()
        store.close()
        ledger.close()


def _operator(given: str | None) -> str:
    from hub.settings.load import operator_name

    name = (given or "").strip() or operator_name()
    if not name:
        raise click.UsageError("say who you are: --as NAME or HUB_OPERATOR")
    return name


def _now() -> datetime:
    return datetime.now(UTC)


_echo_json = echo_json


@main.group()
def failed() -> None:
    """Dead-lettered messages parked in the failed-message store."""


@failed.command("list")
@_config_option
@click.option("--group", help="only this group (key or key prefix)")
@click.option("--stage", type=click.Choice(["intake", "deliver", "outcome"]))
@click.option("--endpoint", help="only this endpoint")
@click.option("--since", help="failed since: ISO time or an age such as 30m, 6h, 2d")
@click.option(
    "--state", type=click.Choice(["failed", "replayed", "discarded", "all"]), default="failed"
)
@click.option("--groups", "as_groups", is_flag=True, help="one line per group, with counts")
@click.option("--json", "as_json", is_flag=True)
def failed_list(
    config_dir: Path,
    group: str | None,
    stage: str | None,
    endpoint: str | None,
    since: str | None,
    state: str,
    as_groups: bool,
    as_json: bool,
) -> None:
    """List parked messages (no personal data: ids, codes and scrubbed errors)."""
    from hub.operations.failed import parse_since, summary
    from hub.records import FailedState

    with _operations(config_dir) as (_, store, _p):
        if as_groups:
            groups = store.groups()
            if as_json:
                _echo_json([_fields(g) for g in groups])
                return
            echo(f"{'GROUP':12}  {'FAILED':>6}  {'TOTAL':>5}  STAGE/ENDPOINT  ERROR")
            for g in groups:
                where = f"{g.stage}/{g.endpoint or '-'}"
                echo(
                    f"{g.group_key[:12]}  {g.count:>6}  {g.total:>5}  {where}  "
                    f"{g.error_class}: {_scrubbed(g.sample_error)[:80]}"
                )
            return
        rows = store.list(
            group=group,
            stage=stage,
            endpoint=endpoint,
            since=parse_since(since, now=_now()) if since else None,
            state=None if state == "all" else FailedState(state),
        )
        views = [summary(m) for m in rows]
        if as_json:
            _echo_json(views)
            return
        for v in views:
            echo(
                f"#{v['id']:<5} {v['state']:9} {v['last_failure'][:19]}  {v['stage']}/"
                f"{v['endpoint'] or '-'}  {v['error_class']}"
                f"{' ' + str(v['http_status']) if v['http_status'] else ''}  "
                f"alert {v['alert_id'] or '?'}  group {v['group']}  {v['error'][:80]}"
            )
        echo(f"{len(views)} message(s)")


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def _scrubbed(text: str) -> str:
    from hub.log import scrub_text

    return scrub_text(text)


@failed.command("show")
@_config_option
@click.argument("failed_id", type=int)
@click.option("--reveal", is_flag=True, help="show personal data (audited)")
@_as_option
def failed_show(config_dir: Path, failed_id: int, reveal: bool, operator: str | None) -> None:
    """Everything about one parked message; personal data masked unless --reveal."""
    from hub.operations.failed import show

    by = _operator(operator) if reveal else None
    with _operations(config_dir) as (_, store, _p):
        _echo_json(show(store, failed_id, reveal=reveal, by=by, now=_now()))


def _bulk_action(
    verb: str,
    act: Callable[[Any, Any, list[int], str], Any],
    *,
    config_dir: Path,
    ids: tuple[int, ...],
    group: str | None,
    yes: bool,
    operator: str | None,
    reason: str,
) -> None:
    from hub.operations.failed import OperationRefused, select_ids

    by = _operator(operator)
    if not reason.strip():
        raise click.UsageError("--reason must say why")
    with _operations(config_dir) as (_, store, publisher):
        chosen = select_ids(store, ids=ids, group=group)
        if not chosen:
            raise OperationRefused(f"nothing to {verb}: no failed message in that group")
        if (group or len(chosen) > 1) and not yes:
            echo(f"{verb} {len(chosen)} message(s): {', '.join(map(str, chosen[:20]))}")
            if not click.confirm("go ahead?", default=False):
                echo("nothing done")
                return
        result = act(store, publisher, chosen, by)
        echo(f"{verb}ed {len(result.done)} message(s)")
        for failed_id, why in result.skipped.items():
            echo(f"  skipped #{failed_id}: {why}")


@failed.command("replay")
@_config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--group", help="every still-failed message of this group")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.option("--yes", is_flag=True, help="do not ask before a bulk replay")
@_as_option
def failed_replay(
    config_dir: Path,
    ids: tuple[int, ...],
    group: str | None,
    reason: str,
    yes: bool,
    operator: str | None,
) -> None:
    """Send messages back to the queue they failed on, as first sent (ids kept, so a
    referral that did arrive is not duplicated)."""
    from hub.operations.failed import replay

    _bulk_action(
        "replay",
        lambda store, publisher, chosen, by: replay(
            store, publisher, chosen, by=by, reason=reason, now=_now()
        ),
        config_dir=config_dir,
        ids=ids,
        group=group,
        yes=yes,
        operator=operator,
        reason=reason,
    )


@failed.command("discard")
@_config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--group", help="every still-failed message of this group")
@click.option("--reason", required=True, help="why (kept in the audit log)")
@click.option("--yes", is_flag=True, help="do not ask before a bulk discard")
@_as_option
def failed_discard(
    config_dir: Path,
    ids: tuple[int, ...],
    group: str | None,
    reason: str,
    yes: bool,
    operator: str | None,
) -> None:
    """Give up on messages (they are kept, marked discarded, with who and why)."""
    from hub.operations.failed import discard

    _bulk_action(
        "discard",
        lambda store, _publisher, chosen, by: discard(
            store, chosen, by=by, reason=reason, now=_now()
        ),
        config_dir=config_dir,
        ids=ids,
        group=group,
        yes=yes,
        operator=operator,
        reason=reason,
    )


@main.command("trace")
@_config_option
@click.argument("any_id")
@click.option("--json", "as_json", is_flag=True)
def trace_command(config_dir: Path, any_id: str, as_json: bool) -> None:
    """The journey of a referral by alert id, custody/case reference, Bundle id or
    X-Request-Id."""
    from hub.operations.trace import trace

    with _operations(config_dir) as (ledger, store, _p):
        traces = trace(ledger, any_id, store=store)
    if not traces:
        echo(f"nothing known by {any_id}", err=True)
        sys.exit(1)
    if as_json:
        _echo_json(traces)
        return
    for t in traces:
        for line in _trace_lines(t):
            echo(line)


def _trace_lines(t: dict[str, Any]) -> list[str]:
    lines = [f"alert {t['alert_id']}  {t['current']}"]
    if "source" in t:
        src = t["source"]
        lines.append(
            f"  from {src['kind']} {src['organisation_code']} ref {src['reference']}; "
            f"{t['pathway']}, {t['urgency']}; consent {t['consent_status']}"
            f"{' (share with justice)' if t['share_with_justice'] else ''}; "
            f"rules {', '.join(t['rules']) or '-'}"
        )
    for e in t["events"]:
        detail = json.dumps(e["detail"], sort_keys=True) if e["detail"] else ""
        lines.append(
            f"  {e['at'][:23]}  {e['stage']:8} {e['event']:24} {e['endpoint'] or ''} {detail}"
        )
    for r in t["referrals"]:
        what = "referral" if r["kind"] == "new" else r["kind"]
        due = f"; due {r['due_at'][:16]}" if r["due_at"] else ""
        overdue = f"; OVERDUE since {r['overdue_at'][:16]}" if r["overdue_at"] else ""
        if r["overdue_resolved_at"]:
            overdue += f" (answered {r['overdue_resolved_at'][:16]})"
        lines.append(
            f"  {what} → {r['endpoint']}: {r['state']} after {r['attempts']} attempt(s); "
            f"bundle {r['bundle_id']} request {r['request_id']}{due}{overdue}"
        )
        for a in r["attempt_log"]:
            lines.append(
                f"    {a['at'][:23]}  {a['result']:9} HTTP {a['http_status'] or '-'}  "
                f"{a['duration_ms']} ms  {a['reason_code'] or ''}"
            )
    for o in t["outcomes"]:
        lines.append(f"  outcome {o['status']:14} {o['at'][:23]}  {o['outcome_id']}")
    for m in t["failed_messages"]:
        lines.append(
            f"  parked #{m['id']} ({m['state']}): {m['stage']}/{m['endpoint'] or '-'} "
            f"{m['error_class']}"
        )
    return lines


def _register_endpoint_commands() -> None:
    from hub.cli.endpoints import endpoint

    main.add_command(endpoint)
    from hub.cli.report import report

    main.add_command(report)
    main.add_command(operator)


_register_endpoint_commands()
