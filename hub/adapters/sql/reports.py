"""The pathway report's reads from the ledger database, on a read-only connection.

Reads only: PostgreSQL sessions are opened with `default_transaction_read_only` (a replica URL,
`HUB_REPORT_DB_URL`, may be given instead of the ledger's own) and SQLite is opened `mode=ro`,
so a report can never write, and it takes no write lock the pipeline would wait on. Rows carry
codes and times; alert and bundle ids are read only to count distinct alerts and join outcomes
to referrals, and never leave `hub.operations.reports`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from hub.adapters.sql.engine import _CONNECTION_ERRORS, _describe, _normalise_url, _reason
from hub.adapters.sql.report_live import assemble_report, report_sql
from hub.adapters.sql.report_summary import last_watermark, read_rows
from hub.adapters.sql.report_summary_reads import (
    complete_values,
    summary_partials,
    summary_values,
)
from hub.adapters.sql.tables import (
    alerts_table,
    as_utc,
    rejections_table,
)
from hub.errors import LedgerUnavailable
from hub.operations.reports.measures import (
    GroupBy,
    LedgerExtract,
    RejectionRow,
    Report,
    build_report,
)
from hub.operations.reports.summary import Partials, partials_of, report_from, summarise


class SqlReportReader:
    """Reads a period's `LedgerExtract`: alerts identified in [start, end), their new referrals
    and those referrals' first outcome of each status (whenever it came), and the alerts
    rejected in [start, end). An unreachable database raises `LedgerUnavailable`."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self._url = _normalise_url(url)
        self._where = _describe(self._url)
        self._engine = _read_only_engine(self._url, timeout=timeout)

    def extract(self, start: datetime, end: datetime) -> LedgerExtract:
        start, end = as_utc(start), as_utc(end)
        a = alerts_table.c
        in_period = sa.and_(a.received_at >= start, a.received_at < end)
        with self._reading() as conn:
            # The same reads the summary refresh makes (hub.adapters.sql.report_summary).
            alerts, referrals = read_rows(conn, in_period)
            rejections = _rejections(conn, start, end)
        return LedgerExtract(alerts=alerts, referrals=referrals, rejections=rejections)

    def report(self, start: datetime, end: datetime, group_by: GroupBy) -> Report:
        """The exact report for [start, end). Once `hub report refresh` has run: alerts received
        before its watermark from the summary tables, the rest live (hub.adapters.sql.
        report_summary). Before any refresh, all live: aggregated in PostgreSQL (hub.adapters.
        sql.report_live), or through `extract` and hub.operations.reports.measures on SQLite
        (same definitions, same tests)."""
        start, end = as_utc(start), as_utc(end)
        with self._reading() as conn:
            watermark = last_watermark(conn)
            if watermark is not None:
                return _summary_report(conn, start, end, group_by, watermark)
        if self._url.get_backend_name() == "sqlite":
            return build_report(
                self.extract(start, end), group_by=group_by, period_from=start, period_to=end
            )
        with self._reading() as conn:
            rows = conn.execute(sa.text(report_sql(group_by)), {"start": start, "end": end}).all()
            rejections = _rejections(conn, start, end)
        return assemble_report(rows, rejections, group_by=group_by, start=start, end=end)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                if conn.dialect.name == "postgresql":
                    # One snapshot for every statement of a report (a refresh may commit in
                    # between); no JIT: compiling costs more than it saves on these scans.
                    conn = conn.execution_options(isolation_level="REPEATABLE READ")
                    conn.execute(sa.text("SET LOCAL jit = off"))
                    conn.execute(sa.text("SET LOCAL work_mem = '64MB'"))
                yield conn
        except _CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(
                f"report database unavailable at {self._where}: {_reason(exc)}"
            ) from exc


def _summary_report(
    conn: sa.Connection, start: datetime, end: datetime, group_by: GroupBy, watermark: datetime
) -> Report:
    split = min(max(start, watermark), end)
    partials = summary_partials(conn, start, split, group_by) if split > start else Partials()
    if end > split:
        a = alerts_table.c
        alerts, referrals = read_rows(conn, sa.and_(a.received_at >= split, a.received_at < end))
        alert_rows, referral_rows = summarise(alerts, referrals)
        partials.add(partials_of(alert_rows, referral_rows, group_by))
    complete_values(partials, lambda needed: summary_values(conn, start, split, needed))
    return report_from(
        partials, _rejections(conn, start, end), group_by=group_by, period_from=start, period_to=end
    )


def _rejections(conn: sa.Connection, start: datetime, end: datetime) -> list[RejectionRow]:
    j = rejections_table.c
    return [
        RejectionRow(site=row.organisation_code, problem_paths=tuple(row.problem_paths))
        for row in conn.execute(
            sa.select(j.organisation_code, j.problem_paths).where(j.at >= start, j.at < end)
        )
    ]


def _read_only_engine(url: URL, *, timeout: float) -> Engine:
    if url.get_backend_name() == "sqlite":
        path = url.database or ""

        def connect() -> sqlite3.Connection:
            # mode=ro: the report can neither write nor create the file.
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)

        return sa.create_engine("sqlite://", creator=connect)
    given = url.query.get("options", ())
    given = (given,) if isinstance(given, str) else given
    options = " ".join(
        [
            *given,
            "-c default_transaction_read_only=on",
            f"-c statement_timeout={int(timeout * 1000)}",
        ]
    )
    return sa.create_engine(
        url.difference_update_query(["options"]),
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(2, math.ceil(timeout)), "options": options},
    )
