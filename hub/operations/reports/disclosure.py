"""Small-number suppression, and the published form of a report that every output renders.

Counts from 1 to 7 become `*`; other counts are rounded to the nearest 5 (0 stays 0), as NHS
Digital does for Hospital Episode Statistics. Rates are computed from the exact numbers but
withheld (None) when their numerator or denominator would be shown as `*`; times are withheld
when fewer than 8 referrals give them. `exact=True` shows exact counts (audited by the caller).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.log import bounded, scrub_text
from hub.operations.reports.measures import RATES, STAGES, GroupBy, Ratio, Report, rates_of
from hub.operations.reports.stats import control_limits, flag

SUPPRESSED = "*"
SMALL = range(1, 8)

Count = int | str


# An operator's reason is free text kept in the audit log: cut to this, after scrubbing.
AUDIT_REASON_CHARS = 200


def exact_audit_reason(
    reason: str | None, *, period_from: datetime, period_to: datetime, group_by: GroupBy
) -> str:
    """The audit log's reason for an exact report: the operator's words, scrubbed of anything
    that looks like personal data (hub.log.scrub_text, what every log line gets) and bounded,
    then the period and grouping (added after scrubbing: its dates are not personal data)."""
    text = " ".join(bounded(reason or "", 4 * AUDIT_REASON_CHARS).split())
    why = bounded(scrub_text(text), AUDIT_REASON_CHARS)
    return f"{why or 'report --exact'} ({period_from:%Y-%m-%d}..{period_to:%Y-%m-%d} by {group_by})"


def shown(count: int, *, exact: bool) -> Count:
    """A count as published: exact, or `*` for 1–7, else rounded to the nearest 5."""
    if count < 0:
        raise ValueError("a count is never negative")
    if exact or count == 0:
        return count
    if count in SMALL:
        return SUPPRESSED
    return 5 * ((count + 2) // 5)


def withheld(count: int, *, exact: bool) -> bool:
    return not exact and count in SMALL


def shown_rate(ratio: Ratio, *, exact: bool) -> float | None:
    if withheld(ratio.numerator, exact=exact) or withheld(ratio.denominator, exact=exact):
        return None
    value = ratio.value
    return None if value is None else round(value, 4)


def _hours(value: float | None, n: int, *, exact: bool) -> float | None:
    if value is None or withheld(n, exact=exact):
        return None
    return round(value, 2)


def publish(report: Report, *, exact: bool = False) -> dict[str, Any]:
    """The report as every output shows it: JSON-able, aggregate only, suppressed unless
    `exact`."""

    def counts(stages: dict[str, int]) -> dict[str, Count]:
        return {stage: shown(stages[stage], exact=exact) for stage in STAGES}

    return {
        "period": {"from": report.period_from.isoformat(), "to": report.period_to.isoformat()},
        "grouped_by": str(report.group_by),
        "suppressed": not exact,
        "stages": list(STAGES),
        "funnel": [{"group": group, **counts(stages)} for group, stages in report.funnel.items()],
        "total": counts(report.total),
        "timeliness": [
            {
                "urgency": t.urgency,
                "interval": t.interval,
                "n": shown(t.n, exact=exact),
                "median_hours": _hours(t.median_hours, t.n, exact=exact),
                "p90_hours": _hours(t.p90_hours, t.n, exact=exact),
            }
            for t in report.timeliness
        ],
        "overdue": [
            {
                "service": service,
                "with_service_level": shown(r.denominator, exact=exact),
                "overdue": shown(r.numerator, exact=exact),
                "share": shown_rate(r, exact=exact),
            }
            for service, r in report.overdue.items()
        ],
        "case_mix": [
            {
                "site": site,
                **{
                    dimension: {code: shown(n, exact=exact) for code, n in sorted(codes.items())}
                    for dimension, codes in dims.items()
                },
            }
            for site, dims in report.case_mix.items()
        ],
        "rejections": [
            {
                "site": site,
                "rejected": shown(paths["$count"], exact=exact),
                "by_field_path": {
                    p: shown(n, exact=exact) for p, n in sorted(paths.items()) if p != "$count"
                },
            }
            for site, paths in report.rejections.items()
        ],
        "variation": _variation(report, exact=exact),
    }


def _variation(report: Report, *, exact: bool) -> list[dict[str, Any]]:
    """One funnel plot per rate: each group's rate against its size, with control limits
    around the overall rate. Limits are drawn at the size as published (rounded unless exact),
    so they do not give the exact size away; the flag compares the exact rate."""
    overall = rates_of(report.total)
    plots: list[dict[str, Any]] = []
    for name, numerator, denominator in RATES:
        national = overall[name]
        p = national.value
        points: list[dict[str, Any]] = []
        for group, stages in report.funnel.items():
            ratio = rates_of(stages)[name]
            rate = shown_rate(ratio, exact=exact)
            if rate is None or p is None or ratio.value is None:
                points.append({"group": group, "n": shown(ratio.denominator, exact=exact)})
                continue
            n = shown(ratio.denominator, exact=exact)
            assert isinstance(n, int)
            limits = control_limits(p, n)
            points.append(
                {
                    "group": group,
                    "n": n,
                    "rate": rate,
                    "lower95": round(limits.lower95, 4),
                    "upper95": round(limits.upper95, 4),
                    "lower998": round(limits.lower998, 4),
                    "upper998": round(limits.upper998, 4),
                    "flag": flag(ratio.value, control_limits(p, ratio.denominator)),
                }
            )
        plots.append(
            {
                "rate": name,
                "numerator": numerator,
                "denominator": denominator,
                "overall": shown_rate(national, exact=exact),
                "points": points,
            }
        )
    return plots
