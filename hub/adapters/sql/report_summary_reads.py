"""The pathway report's summary tables, read: counts by code and flag and interval histograms
aggregated in the database over the alerts received before the refresh watermark
(hub/adapters/sql/report_summary.py fills them). Read only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.adapters.sql.tables import REPORT_INTERVALS, report_referrals_table
from hub.operations.reports.measures import GroupBy
from hub.operations.reports.summary import Partials, buckets_needed

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
    """The summary's counts for alerts received in [start, end), in the database. On
    PostgreSQL one scan of each table (GROUPING SETS: one hash aggregate a count); SQLite has
    no GROUPING SETS, so there each count is its own GROUP BY (same sets, same rows)."""
    p = Partials()
    funnel = None if group_by is GroupBy.SERVICE else _FUNNEL_COLUMN[group_by]
    alert_sets = {
        "total": ("has_referral", "stages"),
        "mix": ("organisation_code", "pathway", "urgency", "consent_status"),
        "vulnerability_mix": ("organisation_code", "vulnerabilities"),
    }
    if funnel is not None:
        alert_sets["funnel"] = (funnel, "stages")
    referral_sets = {
        "overdue": ("endpoint", "due", "late"),
        **{i: ("urgency", f"{i}_bucket") for i in REPORT_INTERVALS},
    }
    if funnel is None:
        referral_sets["funnel"] = ("endpoint", "endpoint_stages")
    for name, key, n in _grouped(conn, "hub_report_alerts", alert_sets, start, end):
        if name == "funnel":
            p.funnel[(key[0], key[1])] += n
        elif name == "total":
            p.total[(bool(key[0]), key[1])] += n
        elif name == "mix":
            p.mix[(key[0], key[1], key[2], key[3])] += n
        else:
            p.vulnerability_mix[(key[0], key[1])] += n
    for name, key, n in _grouped(conn, "hub_report_referrals", referral_sets, start, end):
        if name == "funnel":
            if key[1] is not None:  # the alert's first referral to that endpoint
                p.funnel[(key[0], key[1])] += n
        elif name == "overdue":
            if key[1]:
                p.overdue[(key[0], bool(key[2]))] += n
        elif key[1] is not None:  # an interval's bucket, for referrals that reached its end
            p.histogram[(key[0], name, key[1])] += n
    return p


def _grouped(
    conn: sa.Connection,
    table: str,
    sets: dict[str, tuple[str, ...]],
    start: datetime,
    end: datetime,
) -> Iterable[tuple[str, tuple[Any, ...], int]]:
    """(set name, its columns' values, count) for each group of each grouping set."""
    span = {"start": start, "end": end}
    where = f"FROM {table} WHERE received_at >= :start AND received_at < :end"
    if conn.dialect.name != "postgresql":
        for name, own in sets.items():
            listed = ", ".join(own)
            sql = f"SELECT {listed}, COUNT(*) {where} GROUP BY {listed}"
            for row in conn.execute(sa.text(sql).bindparams(**span)):
                yield name, tuple(row[:-1]), row[-1]
        return
    columns = list(dict.fromkeys(c for cs in sets.values() for c in cs))
    # GROUPING(…) has a bit set, leftmost column highest, for each column a set leaves out.
    which = {
        sum(1 << (len(columns) - 1 - k) for k, c in enumerate(columns) if c not in cs): name
        for name, cs in sets.items()
    }
    listed = ", ".join(columns)
    grouping_sets = ", ".join(f"({', '.join(cs)})" for cs in sets.values())
    sql = (
        f"SELECT GROUPING({listed}), {listed}, COUNT(*) {where} "
        f"GROUP BY GROUPING SETS ({grouping_sets})"
    )
    for row in conn.execute(sa.text(sql).bindparams(**span)):
        name = which[row[0]]
        values = dict(zip(columns, row[1:-1], strict=True))
        yield name, tuple(values[c] for c in sets[name]), row[-1]


def summary_values(
    conn: sa.Connection,
    start: datetime,
    end: datetime,
    needed: set[tuple[str, str, int]],
) -> dict[tuple[str, str, int], list[int]]:
    """The µs values of the summary's referrals in the `needed` (urgency, interval, bucket)s,
    in one scan."""
    values: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    if not needed:
        return values
    rr = report_referrals_table.c
    wanted = sa.or_(
        *[
            sa.and_(rr.urgency == u, rr[f"{interval}_bucket"] == b)
            for u, interval, b in sorted(needed)
        ]
    )
    columns = [c for i in REPORT_INTERVALS for c in (rr[f"{i}_bucket"], rr[f"{i}_us"])]
    for row in conn.execute(
        sa.select(rr.urgency, *columns).where(rr.received_at >= start, rr.received_at < end, wanted)
    ):
        for k, interval in enumerate(REPORT_INTERVALS):
            key = (row[0], interval, row[1 + 2 * k])
            if key in needed:
                values[key].append(row[2 + 2 * k])
    return values


def complete_values(p: Partials, fetch: Any) -> None:
    """Fill `p.values` for the buckets its percentiles need: `fetch(needed)` gives the
    summary's values there; the tail's own values in those buckets are already in `p`."""
    needed = buckets_needed(p.histogram)
    tail = {k: v for k, v in p.values.items() if k in needed}
    fetched = fetch(needed)
    p.values = {k: list(fetched.get(k, ())) + tail.get(k, []) for k in needed}
