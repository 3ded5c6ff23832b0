"""The pathway report's summary tables: `hub report refresh` fills them incrementally from the
ledger (hub/adapters/sql/report_summary_reads.py reads them for the report).

The refresh is the only writer; it never touches the ledger's own tables. Each refresh
re-summarises every alert touched since the last watermark less a margin (received, updated,
a new or delivered or overdue referral, an outcome whose time falls after it), all of an
alert's rows together in one transaction per chunk, then records the new watermark: running it
twice changes nothing the second time.

One refresh at a time, whoever runs it (`hub report refresh` from cron, a hub's own loop,
several hubs): on PostgreSQL each refresh first takes the transaction-level advisory lock
REFRESH_LOCK_KEY on a connection of its own, held until it ends, and a refresh that finds it
taken does nothing (`skipped`). On SQLite the database's one write lock serialises them:
a chunk's delete and insert are one write transaction (the driver begins it at the first
DELETE and waits on busy_timeout for another writer), so two refreshes take turns rather than
insert the same rows (tests/integration/test_report_summary.py runs four at once on each).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from hub.adapters.sql.engine import (
    _CONNECTION_ERRORS,
    _build_engine,
    _create_tables,
    _describe,
    _normalise_url,
    _reason,
)
from hub.adapters.sql.tables import (
    REPORT_INTERVALS,
    alert_vulnerabilities_table,
    alerts_table,
    as_utc,
    outcomes_table,
    referrals_table,
    report_alerts_table,
    report_referrals_table,
    report_refreshes_table,
)
from hub.errors import TransientError
from hub.operations.reports.measures import AlertRow, ReferralRow
from hub.operations.reports.summary import (
    AlertSummary,
    ReferralSummary,
    bucket,
    summarise,
)

CHUNK = 5000  # alerts a transaction; also bounds the bound parameters of one IN list

# pg_advisory_xact_lock's key for "a summary refresh is running" (any fixed bigint would do:
# b"hubrprt1" read as one; documented in docs/reporting.md). Nothing else in the hub takes
# advisory locks.
REFRESH_LOCK_KEY = int.from_bytes(b"hubrprt1", "big", signed=True)


@dataclass(frozen=True, slots=True)
class RefreshResult:
    watermark: datetime | None
    previous: datetime | None
    full: bool
    alerts: int  # alerts (re)summarised
    # Another refresh held the lock (PostgreSQL): this one changed nothing, and `watermark`
    # is the last one recorded (None if none yet).
    skipped: bool = False


def read_rows(
    conn: sa.Connection, where: sa.ColumnElement[bool]
) -> tuple[list[AlertRow], list[ReferralRow]]:
    """Alerts matching `where` (over hub_alerts), their new referrals and each referral's first
    outcome of each status, as the pure measures take them (referrals in bundle id order)."""
    a, r, o, v = alerts_table.c, referrals_table.c, outcomes_table.c, alert_vulnerabilities_table.c
    types: dict[str, list[str]] = defaultdict(list)
    for alert_id, kind in conn.execute(
        sa.select(v.alert_id, v.type)
        .join(alerts_table, a.alert_id == v.alert_id)
        .where(where)
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
            )
            .where(where)
            .order_by(a.alert_id)
        )
    ]
    firsts: dict[str, dict[str, datetime]] = defaultdict(dict)
    for bundle_id, status, at in conn.execute(
        sa.select(o.bundle_id, o.status, sa.func.min(o.at))
        .join(referrals_table, r.bundle_id == o.bundle_id)
        .join(alerts_table, a.alert_id == r.alert_id)
        .where(where, r.kind == "new")
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
            sa.select(r.bundle_id, r.alert_id, r.endpoint, r.delivered_at, r.due_at, r.overdue_at)
            .join(alerts_table, a.alert_id == r.alert_id)
            .where(where, r.kind == "new")
            .order_by(r.alert_id, r.bundle_id)
        )
    ]
    return alerts, referrals


def _utc(value: datetime | str) -> datetime:
    """MIN() over a timestamp: SQLite may hand back its stored text, PostgreSQL a datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def last_watermark(conn: sa.Connection) -> datetime | None:
    """The last refresh's watermark; None if there was none (or the tables are not there yet,
    as on a ledger an earlier hub made and no refresh has opened since)."""
    if not sa.inspect(conn).has_table(report_refreshes_table.name):
        return None
    w = report_refreshes_table.c
    value: datetime | None = conn.execute(
        # the latest run's: watermarks never go back (refresh takes the later of the two)
        sa.select(w.watermark).order_by(w.id.desc()).limit(1)
    ).scalar_one_or_none()
    return value


class SqlReportRefresher:
    """Fills the summary tables from the ledger (a writable connection to the ledger's own
    database, not the report replica)."""

    def __init__(self, url: str, *, timeout: float = 600.0) -> None:
        normalised = _normalise_url(url)
        self._where = _describe(normalised)
        self._engine = _build_engine(normalised, timeout=timeout)
        try:
            _create_tables(self._engine)
        except _CONNECTION_ERRORS as exc:
            self._engine.dispose()
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: sa.exc.SQLAlchemyError) -> TransientError:
        return TransientError(
            f"report summary: the database is unavailable ({self._where}): {_reason(exc)}"
        )

    def close(self) -> None:
        self._engine.dispose()

    def refresh(
        self, *, now: datetime, margin: timedelta = timedelta(hours=1), full: bool = False
    ) -> RefreshResult:
        """Summarise what changed since the last watermark less `margin` (everything when
        `full` or on the first run), up to `now`, the new watermark."""
        started = datetime.now(UTC)
        try:
            return self._refresh_alone(now=now, margin=margin, full=full, started=started)
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _refresh_alone(
        self, *, now: datetime, margin: timedelta, full: bool, started: datetime
    ) -> RefreshResult:
        with self._engine.connect() as guard:
            # The lock lives as long as this connection's transaction: to the end of the
            # refresh, or of the connection should the process die.
            if not _only_refresh(guard):
                with self._engine.connect() as conn:
                    last = last_watermark(conn)
                return RefreshResult(
                    watermark=last, previous=last, full=full, alerts=0, skipped=True
                )
            return self._refresh(now=now, margin=margin, full=full, started=started)

    def _refresh(
        self, *, now: datetime, margin: timedelta, full: bool, started: datetime
    ) -> RefreshResult:
        watermark = as_utc(now)
        with self._engine.connect() as conn:
            previous = last_watermark(conn)
        if previous is not None:
            watermark = max(watermark, previous)
        full = full or previous is None
        if full:
            ids = self._all_ids(watermark)
        else:
            assert previous is not None
            ids = self._touched_ids(previous - margin, watermark)
        for first in range(0, len(ids), CHUNK):
            chunk = ids[first : first + CHUNK]
            with self._engine.begin() as conn:
                alerts, referrals = read_rows(conn, alerts_table.c.alert_id.in_(chunk))
                alert_rows, referral_rows = summarise(alerts, referrals)
                _replace(conn, chunk, alert_rows, referral_rows)
        with self._engine.begin() as conn:
            conn.execute(
                report_refreshes_table.insert().values(
                    watermark=watermark,
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    full=full,
                    alerts=len(ids),
                )
            )
            if conn.dialect.name == "postgresql" and ids:
                # Fresh statistics for the report's planner (a first full refresh would
                # otherwise be read as if the tables were empty until autovacuum came by).
                conn.execute(sa.text("ANALYZE hub_report_alerts, hub_report_referrals"))
        return RefreshResult(watermark=watermark, previous=previous, full=full, alerts=len(ids))

    def _all_ids(self, watermark: datetime) -> list[str]:
        a = alerts_table.c
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(a.alert_id).where(a.received_at < watermark).order_by(a.alert_id)
                ).scalars()
            )

    def _touched_ids(self, since: datetime, watermark: datetime) -> list[str]:
        a, r, o = alerts_table.c, referrals_table.c, outcomes_table.c
        touched = sa.union(
            sa.select(a.alert_id).where(sa.or_(a.received_at >= since, a.updated_at >= since)),
            sa.select(r.alert_id).where(
                sa.or_(r.created_at >= since, r.delivered_at >= since, r.overdue_at >= since)
            ),
            sa.select(o.alert_id).where(o.at >= since),
        ).subquery()
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(a.alert_id)
                    .where(a.alert_id.in_(sa.select(touched.c.alert_id)))
                    .where(a.received_at < watermark)
                    .order_by(a.alert_id)
                ).scalars()
            )


def _only_refresh(guard: sa.Connection) -> bool:
    """Whether this is the only refresh running: on PostgreSQL, whether it got the advisory
    lock (held by `guard`'s transaction, which the caller keeps open); SQLite serialises the
    writes themselves."""
    if guard.dialect.name != "postgresql":
        return True
    got: bool = guard.execute(
        sa.text("SELECT pg_try_advisory_xact_lock(:key)").bindparams(key=REFRESH_LOCK_KEY)
    ).scalar_one()
    return got


def _replace(
    conn: sa.Connection,
    ids: Sequence[str],
    alerts: Iterable[AlertSummary],
    referrals: Iterable[ReferralSummary],
) -> None:
    conn.execute(report_referrals_table.delete().where(report_referrals_table.c.alert_id.in_(ids)))
    conn.execute(report_alerts_table.delete().where(report_alerts_table.c.alert_id.in_(ids)))
    alert_rows = [
        {
            "alert_id": s.alert_id,
            "received_at": s.received_at,
            "organisation_code": s.site,
            "pathway": s.pathway,
            "urgency": s.urgency,
            "consent_status": s.consent_status,
            "vulnerabilities": s.vulnerabilities,
            "stages": s.stages,
            "has_referral": s.has_referral,
        }
        for s in alerts
    ]
    referral_rows = [
        {
            "alert_id": s.alert_id,
            "position": s.position,
            "received_at": s.received_at,
            "endpoint": s.endpoint,
            "urgency": s.urgency,
            "stages": s.stages,
            "endpoint_stages": s.endpoint_stages,
            "due": s.due,
            "late": s.late,
            **{f"{i}_us": s.micros.get(i) for i in REPORT_INTERVALS},
            **{f"{i}_bucket": _bucket_or_none(s.micros.get(i)) for i in REPORT_INTERVALS},
        }
        for s in referrals
    ]
    if alert_rows:
        conn.execute(report_alerts_table.insert(), alert_rows)
    if referral_rows:
        conn.execute(report_referrals_table.insert(), referral_rows)


def _bucket_or_none(micros: int | None) -> int | None:
    return None if micros is None else bucket(micros)


# -- reading the summary: the counts of alerts received in [start, end) ---------------------
