"""`hub report`: the L&D pathway report for a period, as a table, CSV, JSON or a self-contained
HTML file. Aggregates only, small numbers suppressed unless `--exact` (an operator's, audited
in the failed store's audit log before anything is shown). Reads on a read-only connection,
from HUB_REPORT_DB_URL when set (a replica), else the ledger's database.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from hub.cli.options import as_option, config_option, echo, echo_json
from hub.errors import ConfigError, TransientError
from hub.operations.reports.measures import GroupBy
from hub.operations.reports.period import month_period


def period_of(start: str | None, end: str | None, month: str | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC: `--month YYYY-MM`, or `--from DAY` and `--to DAY` (both days
    included)."""
    try:
        if month is not None:
            if start or end:
                raise click.UsageError("give --month, or --from and --to, not both")
            return month_period(month)
        if not (start and end):
            raise click.UsageError("give --month YYYY-MM, or --from DAY and --to DAY")
        begin = date.fromisoformat(start)
        last = date.fromisoformat(end)
    except ValueError:
        raise click.UsageError("dates are YYYY-MM-DD, a month YYYY-MM") from None
    if last < begin:
        raise click.UsageError("--to is before --from")
    return (
        datetime(begin.year, begin.month, begin.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
    )


@click.group("report", invoke_without_command=True)
@click.option("--from", "start", metavar="DAY", help="first day (YYYY-MM-DD, UTC)")
@click.option("--to", "end", metavar="DAY", help="last day, included")
@click.option("--month", metavar="YYYY-MM", help="a calendar month")
@click.option(
    "--by",
    "group_by",
    type=click.Choice([g.value for g in GroupBy]),
    default="site",
    show_default=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write a self-contained HTML report (charts inline) to FILE",
)
@click.option(
    "--fhir",
    "fhir_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write the figures as a FHIR R4 Bundle of MeasureReports to FILE",
)
@click.option("--exact", is_flag=True, help="exact counts, no suppression (audited; needs --as)")
@click.option("--reason", default=None, help="why exact counts are needed, for the audit log")
@config_option
@as_option
@click.pass_context
def report(
    ctx: click.Context,
    start: str | None,
    end: str | None,
    month: str | None,
    group_by: str,
    fmt: str,
    html_file: Path | None,
    fhir_file: Path | None,
    exact: bool,
    reason: str | None,
    config_dir: Path,
    operator: str | None,
) -> None:
    """The L&D pathway report: funnel, timeliness, overdue, case mix, rejections and variation
    between groups (funnel plots), per site, service, vulnerability, pathway, urgency or
    consent. Counts of 1-7 show as *, others round to the nearest 5, unless --exact.
    `hub report refresh` brings the summary tables the report reads up to date."""
    if ctx.invoked_subcommand is not None:
        return
    from hub.adapters.sql.failed_store import SqlFailedStore
    from hub.adapters.sql.reports import SqlReportReader
    from hub.operations.reports.disclosure import exact_audit_reason, publish
    from hub.operations.reports.render import table_lines, to_csv
    from hub.settings.load import load_settings, operator_name, report_db_url

    period_from, period_to = period_of(start, end, month)
    grouping = GroupBy(group_by)
    by = None
    if exact:
        by = (operator or "").strip() or operator_name()
        if not by:
            raise click.UsageError("exact counts need an operator name: --as NAME or HUB_OPERATOR")
    try:
        settings = load_settings(config_dir)
        if by is not None:
            # Audited first, in the ledger's own database: if the audit cannot be written,
            # nothing exact is shown.
            store = SqlFailedStore(settings.db_url)
            try:
                store.audit(
                    "report_exact",
                    [0],
                    by=by,
                    reason=exact_audit_reason(
                        reason, period_from=period_from, period_to=period_to, group_by=grouping
                    ),
                    at=datetime.now(UTC),
                )
            finally:
                store.close()
        reader = SqlReportReader(report_db_url() or settings.db_url)
        try:
            exact_report = reader.report(period_from, period_to, grouping)
        finally:
            reader.close()
    except ConfigError as exc:
        echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"cannot reach the database: {exc.message}", err=True)
        sys.exit(3)
    published = publish(exact_report, exact=exact)
    if html_file is not None:
        from hub.operations.reports.html import render_html

        html_file.write_text(render_html(published), encoding="utf-8")
    if fhir_file is not None:
        import json

        from hub.operations.reports.fhir_export import measure_report_bundle

        bundle = measure_report_bundle(published, generated_at=datetime.now(UTC))
        fhir_file.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    if fmt == "json":
        echo_json(published)
    elif fmt == "csv":
        for line in to_csv(published).splitlines():
            echo(line)
    else:
        for line in table_lines(published):
            echo(line)


@report.command("refresh")
@click.option("--full", is_flag=True, help="re-summarise every alert, not only those changed")
@click.option(
    "--margin-hours",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="also re-summarise alerts touched this long before the last watermark "
    "(writes committed after their time stamp, clocks of other hub processes)",
)
@config_option
def refresh(full: bool, margin_hours: float, config_dir: Path) -> None:
    """Bring the report's summary tables up to date (incremental; run it from cron, e.g.
    every 5 minutes). Writes to the ledger's database, never to the report replica."""
    from hub.adapters.sql.report_summary import SqlReportRefresher
    from hub.settings.load import load_settings

    try:
        settings = load_settings(config_dir)
        refresher = SqlReportRefresher(settings.db_url)
        try:
            result = refresher.refresh(
                now=datetime.now(UTC), margin=timedelta(hours=margin_hours), full=full
            )
        finally:
            refresher.close()
    except ConfigError as exc:
        echo(str(exc), err=True)
        sys.exit(2)
    except TransientError as exc:
        echo(f"cannot reach the database: {exc.message}", err=True)
        sys.exit(3)
    if result.skipped:
        echo("another report refresh is running (a hub's own, or another host's); skipped")
        return
    assert result.watermark is not None
    kind = "full" if result.full else "incremental"
    echo(
        f"report summary refreshed ({kind}): {result.alerts} alerts summarised, "
        f"watermark {result.watermark.isoformat()}"
    )
