"""The pathway report's summary tables: `hub report refresh` fills them incrementally from the
ledger, and the report reader aggregates them (counts by code and flag, interval histograms).

The refresh is the only writer; it never touches the ledger's own tables. Each refresh
re-summarises every alert touched since the last watermark less a margin (received, updated,
a new or delivered or overdue referral, an outcome whose time falls after it), all of an
alert's rows together in one transaction per chunk, then records the new watermark: running it
twice changes nothing the second time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.adapters.sql.engine import _build_engine, _create_tables, _normalise_url
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
from hub.operations.reports.measures import AlertRow, GroupBy, ReferralRow
from hub.operations.reports.summary import (
    AlertSummary,
    Partials,
    ReferralSummary,
    bucket,
    buckets_needed,
    summarise,
)

CHUNK = 5000  # alerts a transaction; also bounds the bound parameters of one IN list


@dataclass(frozen=True, slots=True)
class RefreshResult:
    watermark: datetime
    previous: datetime | None
    full: bool
    alerts: int  # alerts (re)summarised


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
        sa.select(w.watermark).order_by(w.watermark.desc(), w.id.desc()).limit(1)
    ).scalar_one_or_none()
    return value


class SqlReportRefresher:
    """Fills the summary tables from the ledger (a writable connection to the ledger's own
    database, not the report replica)."""

    def __init__(self, url: str, *, timeout: float = 600.0) -> None:
        self._engine = _build_engine(_normalise_url(url), timeout=timeout)
        _create_tables(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    def refresh(
        self, *, now: datetime, margin: timedelta = timedelta(hours=1), full: bool = False
    ) -> RefreshResult:
        """Summarise what changed since the last watermark less `margin` (everything when
        `full` or on the first run), up to `now`, the new watermark."""
        started = datetime.now(UTC)
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

_FUNNEL_COLUMN = {
    GroupBy.SITE: "organisation_code",
    GroupBy.PATHWAY: "pathway",
    GroupBy.URGENCY: "urgency",
    GroupBy.CONSENT: "consent_status",
    GroupBy.VULNERABILITY: "vulnerabilities",
}


def summary_partials(
    conn: sa.Connection, start: datetime, end: datetime, group_by: GroupBy
) -> Partials:
    """The summary's counts for alerts received in [start, end), in the database: a handful
    of GROUP BYs over the narrow tables, then only the values of the buckets a percentile
    needs."""
    p = Partials()
    ra, rr = report_alerts_table, report_referrals_table
    span = {"start": start, "end": end}
    alerts_in = "FROM hub_report_alerts WHERE received_at >= :start AND received_at < :end"
    refs_in = "FROM hub_report_referrals WHERE received_at >= :start AND received_at < :end"

    def rows(sql: str) -> Any:
        return conn.execute(sa.text(sql).bindparams(**span)).all()

    assert ra.name in alerts_in and rr.name in refs_in
    if group_by is GroupBy.SERVICE:
        for endpoint, mask, n in rows(
            f"SELECT endpoint, endpoint_stages, COUNT(*) {refs_in} "
            "AND endpoint_stages IS NOT NULL GROUP BY endpoint, endpoint_stages"
        ):
            p.funnel[(endpoint, mask)] += n
    else:
        column = _FUNNEL_COLUMN[group_by]
        for key, mask, n in rows(
            f"SELECT {column}, stages, COUNT(*) {alerts_in} GROUP BY {column}, stages"
        ):
            p.funnel[(key, mask)] += n
    for has_referral, mask, n in rows(
        f"SELECT has_referral, stages, COUNT(*) {alerts_in} GROUP BY has_referral, stages"
    ):
        p.total[(bool(has_referral), mask)] += n
    for site, pathway, urgency, consent, n in rows(
        f"SELECT organisation_code, pathway, urgency, consent_status, COUNT(*) {alerts_in} "
        "GROUP BY organisation_code, pathway, urgency, consent_status"
    ):
        p.mix[(site, pathway, urgency, consent)] += n
    for site, mask, n in rows(
        f"SELECT organisation_code, vulnerabilities, COUNT(*) {alerts_in} "
        "GROUP BY organisation_code, vulnerabilities"
    ):
        p.vulnerability_mix[(site, mask)] += n
    for endpoint, late, n in rows(
        f"SELECT endpoint, late, COUNT(*) {refs_in} AND due GROUP BY endpoint, late"
    ):
        p.overdue[(endpoint, bool(late))] += n
    histograms = " UNION ALL ".join(
        f"SELECT urgency, '{i}', {i}_bucket, COUNT(*) {refs_in} AND {i}_bucket IS NOT NULL "
        f"GROUP BY urgency, {i}_bucket"
        for i in REPORT_INTERVALS
    )
    for urgency, interval, b, n in rows(histograms):
        p.histogram[(urgency, interval, b)] += n
    return p


def summary_values(
    conn: sa.Connection,
    start: datetime,
    end: datetime,
    needed: set[tuple[str, str, int]],
) -> dict[tuple[str, str, int], list[int]]:
    """The µs values of the summary's referrals in the `needed` (urgency, interval, bucket)s."""
    values: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    by_interval: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for urgency, interval, b in needed:
        by_interval[interval].add((urgency, b))
    rr = report_referrals_table.c
    for interval, pairs in by_interval.items():
        us, bucket_column = rr[f"{interval}_us"], rr[f"{interval}_bucket"]
        wanted = sa.or_(*[sa.and_(rr.urgency == u, bucket_column == b) for u, b in sorted(pairs)])
        for urgency, b, value in conn.execute(
            sa.select(rr.urgency, bucket_column, us).where(
                rr.received_at >= start, rr.received_at < end, wanted
            )
        ):
            values[(urgency, interval, b)].append(value)
    return values


def complete_values(p: Partials, fetch: Any) -> None:
    """Fill `p.values` for the buckets its percentiles need: `fetch(needed)` gives the
    summary's values there; the tail's own values in those buckets are already in `p`."""
    needed = buckets_needed(p.histogram)
    tail = {k: v for k, v in p.values.items() if k in needed}
    fetched = fetch(needed)
    p.values = {k: list(fetched.get(k, ())) + tail.get(k, []) for k in needed}
