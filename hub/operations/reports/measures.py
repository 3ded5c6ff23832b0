"""Exact pathway figures from the ledger's coded rows: funnel, timeliness, overdue, case mix,
rejections and variation between groups. Pure: rows and the period come in as arguments.

The unit of the funnel is the person identified (one alert): a stage counts the alerts with at
least one referral, within the group, that reached it. For `--by service` a group holds each
alert's referral to that service, so there the count is also one per referral. Outputs never
carry an alert id: the ids in the rows are used to count distinct alerts and are then dropped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from hub.operations.reports.stats import percentile


class GroupBy(StrEnum):
    SITE = "site"
    SERVICE = "service"
    VULNERABILITY = "vulnerability"
    PATHWAY = "pathway"
    URGENCY = "urgency"
    CONSENT = "consent"


# Funnel stages after referral, each an outcome status a service sends back.
OUTCOME_STAGES = (
    "accepted",
    "screened",
    "assessed",
    "referred_on",
    "attended",
    "did_not_attend",
    "declined",
    "closed",
)
STAGES = ("identified", "referred", *OUTCOME_STAGES)
FINAL_OUTCOMES = frozenset({"attended", "did_not_attend", "declined", "closed"})
# Rates drawn as funnel plots: (name, numerator stage, denominator stage).
RATES = (
    ("referred_of_identified", "referred", "identified"),
    ("accepted_of_referred", "accepted", "referred"),
    ("assessed_of_referred", "assessed", "referred"),
    ("attended_of_referred", "attended", "referred"),
)
INTERVALS = ("to_delivery", "to_acceptance", "to_assessment", "to_final_outcome")
NO_VULNERABILITY = "none_recorded"


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    site: str  # the source organisation code
    source_kind: str
    pathway: str
    urgency: str
    consent_status: str
    received_at: datetime
    vulnerability_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReferralRow:
    """A `new` referral (follow-ups are not pathway steps), with the first time each outcome
    status came back for it."""

    alert_id: str
    service: str  # the endpoint name
    delivered_at: datetime | None
    due_at: datetime | None
    overdue_at: datetime | None
    first_outcome_at: dict[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RejectionRow:
    site: str
    problem_paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LedgerExtract:
    """What a report reads: alerts identified in the period, their new referrals (with outcomes
    whenever they came), and the alerts rejected in the period."""

    alerts: Sequence[AlertRow]
    referrals: Sequence[ReferralRow]
    rejections: Sequence[RejectionRow]


@dataclass(frozen=True, slots=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        return None if self.denominator == 0 else self.numerator / self.denominator


@dataclass(frozen=True, slots=True)
class Timing:
    urgency: str
    interval: str
    n: int
    median_hours: float | None
    p90_hours: float | None


@dataclass(frozen=True, slots=True)
class Report:
    period_from: datetime
    period_to: datetime
    group_by: GroupBy
    funnel: dict[str, dict[str, int]]  # group → stage → alerts
    total: dict[str, int]
    timeliness: list[Timing]
    overdue: dict[str, Ratio]  # service → overdue ÷ referrals with a service level
    case_mix: dict[str, dict[str, Counter[str]]]  # site → dimension → code → alerts
    rejections: dict[str, Counter[str]]  # site → field path → rejections ("$count": all)


def build_report(
    extract: LedgerExtract, *, group_by: GroupBy, period_from: datetime, period_to: datetime
) -> Report:
    alerts = {a.alert_id: a for a in extract.alerts}
    referrals = [r for r in extract.referrals if r.alert_id in alerts]
    stage_sets: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    total_sets: dict[str, set[str]] = defaultdict(set)

    def mark(group: str, stage: str, alert_id: str) -> None:
        stage_sets[group][stage].add(alert_id)
        total_sets[stage].add(alert_id)

    if group_by is GroupBy.SERVICE:
        for r in referrals:
            mark(r.service, "identified", r.alert_id)
            for stage in _stages_reached(r):
                mark(r.service, stage, r.alert_id)
    else:
        for a in alerts.values():
            for group in _groups_of(a, group_by):
                mark(group, "identified", a.alert_id)
        for r in referrals:
            reached = _stages_reached(r)
            for group in _groups_of(alerts[r.alert_id], group_by):
                for stage in reached:
                    mark(group, stage, r.alert_id)

    funnel = {
        group: {stage: len(stages.get(stage, ())) for stage in STAGES}
        for group, stages in sorted(stage_sets.items())
    }
    total = {stage: len(total_sets.get(stage, ())) for stage in STAGES}
    return Report(
        period_from=period_from,
        period_to=period_to,
        group_by=group_by,
        funnel=funnel,
        total=total,
        timeliness=_timeliness(alerts, referrals),
        overdue=_overdue(referrals),
        case_mix=_case_mix(alerts.values()),
        rejections=rejections_by_site(extract.rejections),
    )


def _groups_of(alert: AlertRow, group_by: GroupBy) -> tuple[str, ...]:
    if group_by is GroupBy.SITE:
        return (alert.site,)
    if group_by is GroupBy.PATHWAY:
        return (alert.pathway,)
    if group_by is GroupBy.URGENCY:
        return (alert.urgency,)
    if group_by is GroupBy.CONSENT:
        return (alert.consent_status,)
    if group_by is GroupBy.VULNERABILITY:  # an alert with several types counts in each
        return alert.vulnerability_types or (NO_VULNERABILITY,)
    raise ValueError(f"not an alert grouping: {group_by}")


def _stages_reached(referral: ReferralRow) -> list[str]:
    """A referral reaches `referred` when delivered, and each outcome stage when that status
    came back for it (stages are not inferred from later ones)."""
    reached = ["referred"] if referral.delivered_at is not None else []
    return reached + [s for s in OUTCOME_STAGES if s in referral.first_outcome_at]


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def _timeliness(alerts: dict[str, AlertRow], referrals: Iterable[ReferralRow]) -> list[Timing]:
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in referrals:
        alert = alerts[r.alert_id]
        ends = {
            "to_delivery": r.delivered_at,
            "to_acceptance": r.first_outcome_at.get("accepted"),
            "to_assessment": r.first_outcome_at.get("assessed"),
            "to_final_outcome": min(
                (at for s, at in r.first_outcome_at.items() if s in FINAL_OUTCOMES), default=None
            ),
        }
        for interval, end in ends.items():
            if end is not None:
                samples[(alert.urgency, interval)].append(_hours(alert.received_at, end))
    urgencies = sorted({a.urgency for a in alerts.values()})
    return [
        Timing(
            urgency=u,
            interval=i,
            n=len(samples[(u, i)]),
            median_hours=percentile(samples[(u, i)], 50),
            p90_hours=percentile(samples[(u, i)], 90),
        )
        for u in urgencies
        for i in INTERVALS
    ]


def _overdue(referrals: Iterable[ReferralRow]) -> dict[str, Ratio]:
    due: Counter[str] = Counter()
    late: Counter[str] = Counter()
    for r in referrals:
        if r.due_at is None:
            continue
        due[r.service] += 1
        if r.overdue_at is not None:
            late[r.service] += 1
    return {s: Ratio(late[s], due[s]) for s in sorted(due)}


def _case_mix(alerts: Iterable[AlertRow]) -> dict[str, dict[str, Counter[str]]]:
    mix: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {k: Counter() for k in ("vulnerability", "pathway", "urgency", "consent")}
    )
    for a in alerts:
        site = mix[a.site]
        site["vulnerability"].update(a.vulnerability_types or (NO_VULNERABILITY,))
        site["pathway"][a.pathway] += 1
        site["urgency"][a.urgency] += 1
        site["consent"][a.consent_status] += 1
    return dict(sorted(mix.items()))


def rejections_by_site(rows: Iterable[RejectionRow]) -> dict[str, Counter[str]]:
    by_site: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_site[row.site]["$count"] += 1
        by_site[row.site].update(set(row.problem_paths))
    return dict(sorted(by_site.items()))


def rates_of(stages: dict[str, int]) -> dict[str, Ratio]:
    return {name: Ratio(stages[num], stages[den]) for name, num, den in RATES}
