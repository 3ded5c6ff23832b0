"""The pathway report's reads from the ledger database, on a read-only connection.

Reads only: PostgreSQL sessions are opened with `default_transaction_read_only` (a replica URL,
`HUB_REPORT_DB_URL`, may be given instead of the ledger's own) and SQLite is opened `mode=ro`,
so a report can never write, and it takes no write lock the pipeline would wait on. Rows carry
codes and times; alert and bundle ids are read only to count distinct alerts and join outcomes
to referrals, and never leave `hub.reporting`.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from hub.adapters.ledger import (
    _CONNECTION_ERRORS,
    _describe,
    _normalise_url,
    _reason,
    alert_vulnerabilities_table,
    alerts_table,
    as_utc,
    outcomes_table,
    referrals_table,
    rejections_table,
)
from hub.errors import LedgerUnavailable
from hub.reporting.measures import AlertRow, LedgerExtract, ReferralRow, RejectionRow


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
        a, r, o = alerts_table.c, referrals_table.c, outcomes_table.c
        v, j = alert_vulnerabilities_table.c, rejections_table.c
        in_period = sa.and_(a.received_at >= start, a.received_at < end)
        with self._reading() as conn:
            types: dict[str, list[str]] = defaultdict(list)
            for alert_id, kind in conn.execute(
                sa.select(v.alert_id, v.type)
                .join(alerts_table, a.alert_id == v.alert_id)
                .where(in_period)
                .order_by(v.alert_id, v.type)
            ):
                types[alert_id].append(kind)
            alerts = [
                AlertRow(
                    alert_id=row.alert_id,
                    site=row.organisation_code,
                    source_kind=row.source_kind,
                    pathway=row.pathway,
                    urgency=row.urgency,
                    consent_status=row.consent_status,
                    received_at=row.received_at,
                    vulnerability_types=tuple(types.get(row.alert_id, ())),
                )
                for row in conn.execute(
                    sa.select(
                        a.alert_id,
                        a.organisation_code,
                        a.source_kind,
                        a.pathway,
                        a.urgency,
                        a.consent_status,
                        a.received_at,
                    ).where(in_period)
                )
            ]
            firsts: dict[str, dict[str, datetime]] = defaultdict(dict)
            for bundle_id, status, at in conn.execute(
                sa.select(o.bundle_id, o.status, sa.func.min(o.at))
                .join(referrals_table, r.bundle_id == o.bundle_id)
                .join(alerts_table, a.alert_id == r.alert_id)
                .where(in_period, r.kind == "new")
                .group_by(o.bundle_id, o.status)
            ):
                firsts[bundle_id][status] = _utc(at)
            referrals = [
                ReferralRow(
                    alert_id=row.alert_id,
                    service=row.endpoint,
                    delivered_at=row.delivered_at,
                    due_at=row.due_at,
                    overdue_at=row.overdue_at,
                    first_outcome_at=firsts.get(row.bundle_id, {}),
                )
                for row in conn.execute(
                    sa.select(
                        r.bundle_id, r.alert_id, r.endpoint, r.delivered_at, r.due_at, r.overdue_at
                    )
                    .join(alerts_table, a.alert_id == r.alert_id)
                    .where(in_period, r.kind == "new")
                )
            ]
            rejections = [
                RejectionRow(site=row.organisation_code, problem_paths=tuple(row.problem_paths))
                for row in conn.execute(
                    sa.select(j.organisation_code, j.problem_paths).where(j.at >= start, j.at < end)
                )
            ]
        return LedgerExtract(alerts=alerts, referrals=referrals, rejections=rejections)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except _CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(
                f"report database unavailable at {self._where}: {_reason(exc)}"
            ) from exc


def _utc(value: datetime | str) -> datetime:
    """MIN() over a timestamp: SQLite may hand back its stored text, PostgreSQL a datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
