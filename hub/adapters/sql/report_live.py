"""The pathway report aggregated in PostgreSQL, live from the ledger's tables: one statement and
the Report assembled from its rows (hub.adapters.sql.reports runs it on its read-only connection
before any summary refresh). Builds SQL text only; executes nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.operations.reports.measures import (
    FINAL_OUTCOMES,
    INTERVALS,
    NO_VULNERABILITY,
    OUTCOME_STAGES,
    STAGES,
    GroupBy,
    Ratio,
    RejectionRow,
    Report,
    Timing,
    rejections_by_site,
)

# The same definitions as hub.operations.reports.measures (which SQLite uses, and which the
# tests hold both to): one statement whose MATERIALIZED CTEs pivot each new referral's first
# outcome of each status once; percentile_cont is the same linear interpolation as stats.percentile.

_STAGE_COLUMNS = ", ".join(
    f"MIN(o.at) FILTER (WHERE o.status = '{s}') AS {s}" for s in OUTCOME_STAGES
)
_FINAL = ", ".join(f"'{s}'" for s in sorted(FINAL_OUTCOMES))
_ALERT_FLAGS = ", ".join(
    ["bool_or(delivered_at IS NOT NULL) AS referred"]
    + [f"bool_or({s} IS NOT NULL) AS {s}" for s in OUTCOME_STAGES]
)
_GROUP_COLUMN = {
    GroupBy.SITE: "c.organisation_code",
    GroupBy.PATHWAY: "c.pathway",
    GroupBy.URGENCY: "c.urgency",
    GroupBy.CONSENT: "c.consent_status",
    GroupBy.VULNERABILITY: f"COALESCE(v.type, '{NO_VULNERABILITY}')",
}
_INTERVAL_END = {
    "to_delivery": "delivered_at",
    "to_acceptance": "accepted",
    "to_assessment": "assessed",
    "to_final_outcome": "final_at",
}


def _stage_counts(flag: str) -> str:
    return ", ".join(
        ["COUNT(*) AS identified"]
        + [f"COUNT(*) FILTER (WHERE {flag}.{s}) AS {s}" for s in STAGES[1:]]
    )


def report_sql(group_by: GroupBy) -> str:
    ctes = f"""
WITH cohort AS MATERIALIZED (
  SELECT alert_id, organisation_code, pathway, urgency, consent_status, received_at
  FROM hub_alerts WHERE received_at >= :start AND received_at < :end
), ref AS MATERIALIZED (
  SELECT r.alert_id, r.endpoint, c.urgency, c.received_at, r.delivered_at,
         r.due_at IS NOT NULL AS due, r.overdue_at IS NOT NULL AS late, {_STAGE_COLUMNS},
         MIN(o.at) FILTER (WHERE o.status IN ({_FINAL})) AS final_at
  FROM hub_referrals r JOIN cohort c ON c.alert_id = r.alert_id
  LEFT JOIN hub_outcomes o ON o.bundle_id = r.bundle_id
  WHERE r.kind = 'new'
  GROUP BY r.bundle_id, r.alert_id, r.endpoint, c.urgency, c.received_at, r.delivered_at,
           r.due_at, r.overdue_at
), per_alert AS MATERIALIZED (
  SELECT alert_id, {_ALERT_FLAGS} FROM ref GROUP BY alert_id
)"""
    nulls = ", ".join(["NULL::bigint"] * (len(STAGES) - 1))
    if group_by is GroupBy.SERVICE:
        flags = ", ".join(
            [
                "COUNT(DISTINCT alert_id)",
                "COUNT(DISTINCT alert_id) FILTER (WHERE delivered_at IS NOT NULL)",
            ]
            + [f"COUNT(DISTINCT alert_id) FILTER (WHERE {s} IS NOT NULL)" for s in OUTCOME_STAGES]
        )
        funnel = (
            f"SELECT 'funnel', endpoint, NULL, {flags}, NULL::float8, NULL::float8 "
            "FROM ref GROUP BY endpoint"
        )
        total = (
            f"SELECT 'total', NULL, NULL, {_stage_counts('p')}, NULL::float8, NULL::float8 "
            "FROM cohort c JOIN per_alert p ON p.alert_id = c.alert_id"
        )
    else:
        column = _GROUP_COLUMN[group_by]
        vulns = (
            " LEFT JOIN hub_alert_vulnerabilities v ON v.alert_id = c.alert_id"
            if group_by is GroupBy.VULNERABILITY
            else ""
        )
        funnel = (
            f"SELECT 'funnel', {column}, NULL, {_stage_counts('p')}, NULL::float8, NULL::float8 "
            f"FROM cohort c LEFT JOIN per_alert p ON p.alert_id = c.alert_id{vulns} "
            f"GROUP BY {column}"
        )
        total = (
            f"SELECT 'total', NULL, NULL, {_stage_counts('p')}, NULL::float8, NULL::float8 "
            "FROM cohort c LEFT JOIN per_alert p ON p.alert_id = c.alert_id"
        )
    timings = [
        f"SELECT 'timing', urgency, '{name}', COUNT(h), {nulls}, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY h), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY h) "
        f"FROM (SELECT urgency, EXTRACT(EPOCH FROM ({end} - received_at)) / 3600.0 AS h "
        f"FROM ref WHERE {end} IS NOT NULL) t GROUP BY urgency"
        for name, end in _INTERVAL_END.items()
    ]
    overdue = (
        f"SELECT 'overdue', endpoint, NULL, COUNT(*) FILTER (WHERE due), "
        f"COUNT(*) FILTER (WHERE due AND late), {', '.join(['NULL::bigint'] * (len(STAGES) - 2))}"
        ", NULL::float8, NULL::float8 FROM ref GROUP BY endpoint "
        "HAVING COUNT(*) FILTER (WHERE due) > 0"
    )
    mix = [
        f"SELECT 'mix', organisation_code, '{dim}:' || {col}, COUNT(*), {nulls}, NULL::float8, "
        f"NULL::float8 FROM cohort GROUP BY organisation_code, {col}"
        for dim, col in (
            ("pathway", "pathway"),
            ("urgency", "urgency"),
            ("consent", "consent_status"),
        )
    ]
    mix.append(
        f"SELECT 'mix', c.organisation_code, 'vulnerability:' || COALESCE(v.type, "
        f"'{NO_VULNERABILITY}'), COUNT(*), {nulls}, NULL::float8, NULL::float8 FROM cohort c "
        "LEFT JOIN hub_alert_vulnerabilities v ON v.alert_id = c.alert_id "
        "GROUP BY c.organisation_code, COALESCE(v.type, 'none_recorded')"
    )
    urgencies = (
        f"SELECT 'urgency', urgency, NULL, {', '.join(['NULL::bigint'] * len(STAGES))}, "
        "NULL::float8, NULL::float8 FROM cohort GROUP BY urgency"
    )
    return ctes + "\n" + "\nUNION ALL ".join([funnel, total, *timings, overdue, *mix, urgencies])


def assemble_report(
    rows: Sequence[sa.Row[Any]],
    rejections: list[RejectionRow],
    *,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
) -> Report:
    funnel: dict[str, dict[str, int]] = {}
    total = dict.fromkeys(STAGES, 0)
    timings: dict[tuple[str, str], Timing] = {}
    overdue: dict[str, Ratio] = {}
    mix: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {k: Counter() for k in ("vulnerability", "pathway", "urgency", "consent")}
    )
    urgencies: set[str] = set()
    for row in rows:
        section, group, key, *rest = tuple(row)
        counts, median, p90 = rest[: len(STAGES)], rest[len(STAGES)], rest[len(STAGES) + 1]
        if section == "funnel":
            funnel[group] = {s: int(n or 0) for s, n in zip(STAGES, counts, strict=True)}
        elif section == "total":
            total = {s: int(n or 0) for s, n in zip(STAGES, counts, strict=True)}
        elif section == "timing":
            timings[(group, key)] = Timing(group, key, int(counts[0]), median, p90)
        elif section == "overdue":
            overdue[group] = Ratio(int(counts[1]), int(counts[0]))
        elif section == "mix":
            dimension, code = key.split(":", 1)
            mix[group][dimension][code] = int(counts[0])
        elif section == "urgency":
            urgencies.add(group)
    return Report(
        period_from=start,
        period_to=end,
        group_by=group_by,
        funnel=dict(sorted(funnel.items())),
        total=total,
        timeliness=[
            timings.get((u, i), Timing(u, i, 0, None, None))
            for u in sorted(urgencies)
            for i in INTERVALS
        ],
        overdue=dict(sorted(overdue.items())),
        case_mix=dict(sorted(mix.items())),
        rejections=rejections_by_site(rejections),
    )
