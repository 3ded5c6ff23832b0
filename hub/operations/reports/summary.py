"""The pathway report from summary rows: one per alert and one per new referral, holding only
codes, bit flags and whole-microsecond intervals, and the report rebuilt from their counts.
Pure: no clock, no database. Same definitions as hub.operations.reports.measures (the tests
hold the two equal on every figure).

Counts are `Partials`: Counters keyed by codes and flags, so the part of a report read from the
summary tables (aggregated in the database) and the tail read live since the last refresh
(summarised here) add up. Percentiles come from a histogram of each interval in fine
logarithmic buckets (64 a doubling) and then only the values in the buckets that hold the
ranks needed: exact (Hyndman and Fan type 7, as stats.percentile) without sorting every value.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.messages import VulnerabilityType
from hub.operations.reports.measures import (
    FINAL_OUTCOMES,
    INTERVALS,
    NO_VULNERABILITY,
    OUTCOME_STAGES,
    STAGES,
    AlertRow,
    GroupBy,
    Ratio,
    ReferralRow,
    RejectionRow,
    Report,
    Timing,
    rejections_by_site,
)

# Bit i of a stage mask: STAGES[1:][i] reached (`referred` is bit 0). Identified is the row.
STAGE_BITS = {stage: 1 << i for i, stage in enumerate(STAGES[1:])}
# Bit i of a vulnerability mask: VULNERABILITY_CODES[i]. Append only: stored masks keep meaning.
VULNERABILITY_CODES = tuple(v.value for v in VulnerabilityType)
_VULNERABILITY_BIT = {code: 1 << i for i, code in enumerate(VULNERABILITY_CODES)}
BUCKETS_PER_DOUBLING = 64


@dataclass(frozen=True, slots=True)
class AlertSummary:
    alert_id: str
    received_at: datetime
    site: str
    pathway: str
    urgency: str
    consent_status: str
    vulnerabilities: int  # mask over VULNERABILITY_CODES
    stages: int  # mask over STAGE_BITS: reached by at least one of its new referrals
    has_referral: bool


@dataclass(frozen=True, slots=True)
class ReferralSummary:
    alert_id: str
    position: int  # the referral's place among its alert's new referrals
    received_at: datetime  # the alert's identification
    endpoint: str
    urgency: str
    stages: int
    # On the alert's first referral to this endpoint only: the stages any of them reached.
    endpoint_stages: int | None
    due: bool
    late: bool
    micros: dict[str, int] = field(default_factory=dict)  # interval → µs, when it has ended


def bucket(micros: int) -> int:
    """A fine logarithmic bucket, monotone in `micros` (negative intervals included)."""
    if micros < 0:
        return -1 - bucket(-micros)
    return int(BUCKETS_PER_DOUBLING * math.log2(1 + micros))


def vulnerability_mask(types: Iterable[str]) -> int:
    mask = 0
    for code in types:
        if code not in _VULNERABILITY_BIT:
            raise ValueError(f"vulnerability code outside the vocabulary: {code!r}")
        mask |= _VULNERABILITY_BIT[code]
    return mask


def vulnerability_codes(mask: int) -> tuple[str, ...]:
    codes = tuple(c for c, bit in _VULNERABILITY_BIT.items() if mask & bit)
    return codes or (NO_VULNERABILITY,)


def stages_of(mask: int) -> list[str]:
    return [stage for stage, bit in STAGE_BITS.items() if mask & bit]


def _micros(start: datetime, end: datetime) -> int:
    return (end - start) // timedelta(microseconds=1)


def summarise(
    alerts: Sequence[AlertRow], referrals: Sequence[ReferralRow]
) -> tuple[list[AlertSummary], list[ReferralSummary]]:
    """Summary rows for these alerts and their new referrals (in the order given)."""
    by_alert: dict[str, list[ReferralRow]] = defaultdict(list)
    for r in referrals:
        by_alert[r.alert_id].append(r)
    alert_rows, referral_rows = [], []
    for a in alerts:
        own = by_alert.get(a.alert_id, [])
        masks = [_stage_mask(r) for r in own]
        per_endpoint: dict[str, int] = defaultdict(int)
        for r, mask in zip(own, masks, strict=True):
            per_endpoint[r.service] |= mask
        seen: set[str] = set()
        for position, (r, mask) in enumerate(zip(own, masks, strict=True)):
            first = r.service not in seen
            seen.add(r.service)
            referral_rows.append(
                ReferralSummary(
                    alert_id=a.alert_id,
                    position=position,
                    received_at=a.received_at,
                    endpoint=r.service,
                    urgency=a.urgency,
                    stages=mask,
                    endpoint_stages=per_endpoint[r.service] if first else None,
                    due=r.due_at is not None,
                    late=r.due_at is not None and r.overdue_at is not None,
                    micros={
                        name: _micros(a.received_at, end)
                        for name, end in _interval_ends(r).items()
                        if end is not None
                    },
                )
            )
        stages = 0
        for mask in masks:
            stages |= mask
        alert_rows.append(
            AlertSummary(
                alert_id=a.alert_id,
                received_at=a.received_at,
                site=a.site,
                pathway=a.pathway,
                urgency=a.urgency,
                consent_status=a.consent_status,
                vulnerabilities=vulnerability_mask(a.vulnerability_types),
                stages=stages,
                has_referral=bool(own),
            )
        )
    return alert_rows, referral_rows


def _stage_mask(r: ReferralRow) -> int:
    mask = STAGE_BITS["referred"] if r.delivered_at is not None else 0
    for stage in OUTCOME_STAGES:
        if stage in r.first_outcome_at:
            mask |= STAGE_BITS[stage]
    return mask


def _interval_ends(r: ReferralRow) -> dict[str, datetime | None]:
    return {
        "to_delivery": r.delivered_at,
        "to_acceptance": r.first_outcome_at.get("accepted"),
        "to_assessment": r.first_outcome_at.get("assessed"),
        "to_final_outcome": min(
            (at for s, at in r.first_outcome_at.items() if s in FINAL_OUTCOMES), default=None
        ),
    }


@dataclass(slots=True)
class Partials:
    """Counts a report is built from; two Partials over disjoint alerts add up."""

    funnel: Counter[tuple[str | int, int]] = field(default_factory=Counter)  # (group, stages)
    total: Counter[tuple[bool, int]] = field(default_factory=Counter)  # (has referral, stages)
    mix: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    vulnerability_mix: Counter[tuple[str, int]] = field(default_factory=Counter)
    overdue: Counter[tuple[str, bool]] = field(default_factory=Counter)  # due referrals
    histogram: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    # (urgency, interval, bucket) → the µs values in it; only buckets a percentile needs.
    values: dict[tuple[str, str, int], list[int]] = field(default_factory=dict)

    def add(self, other: Partials) -> None:
        self.funnel.update(other.funnel)
        self.total.update(other.total)
        self.mix.update(other.mix)
        self.vulnerability_mix.update(other.vulnerability_mix)
        self.overdue.update(other.overdue)
        self.histogram.update(other.histogram)
        for key, values in other.values.items():
            self.values.setdefault(key, []).extend(values)


def funnel_key(a: AlertSummary, group_by: GroupBy) -> str | int:
    if group_by is GroupBy.SITE:
        return a.site
    if group_by is GroupBy.PATHWAY:
        return a.pathway
    if group_by is GroupBy.URGENCY:
        return a.urgency
    if group_by is GroupBy.CONSENT:
        return a.consent_status
    if group_by is GroupBy.VULNERABILITY:
        return a.vulnerabilities
    raise ValueError(f"not an alert grouping: {group_by}")


def partials_of(
    alerts: Iterable[AlertSummary], referrals: Iterable[ReferralSummary], group_by: GroupBy
) -> Partials:
    """The counts of these rows, every value kept (for the live tail, which is small)."""
    p = Partials()
    for a in alerts:
        if group_by is not GroupBy.SERVICE:
            p.funnel[(funnel_key(a, group_by), a.stages)] += 1
        p.total[(a.has_referral, a.stages)] += 1
        p.mix[(a.site, a.pathway, a.urgency, a.consent_status)] += 1
        p.vulnerability_mix[(a.site, a.vulnerabilities)] += 1
    for r in referrals:
        if group_by is GroupBy.SERVICE and r.endpoint_stages is not None:
            p.funnel[(r.endpoint, r.endpoint_stages)] += 1
        if r.due:
            p.overdue[(r.endpoint, r.late)] += 1
        for interval, micros in r.micros.items():
            key = (r.urgency, interval, bucket(micros))
            p.histogram[key] += 1
            p.values.setdefault(key, []).append(micros)
    return p


def _ranks(n: int, pct: float) -> tuple[int, int, float]:
    position = (n - 1) * pct / 100
    low = math.floor(position)
    return low, min(low + 1, n - 1), position - low


PERCENTILES = (50, 90)


def buckets_needed(histogram: Mapping[tuple[str, str, int], int]) -> set[tuple[str, str, int]]:
    """The buckets that hold the ranks the medians and 90th percentiles need."""
    needed = set()
    for (urgency, interval), counts in _by_series(histogram).items():
        n = sum(counts.values())
        for pct in PERCENTILES:
            low, high, _ = _ranks(n, pct)
            for rank in (low, high):
                needed.add((urgency, interval, _locate(counts, rank)[0]))
    return needed


def _by_series(
    histogram: Mapping[tuple[str, str, int], int],
) -> dict[tuple[str, str], dict[int, int]]:
    series: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for (urgency, interval, b), count in histogram.items():
        if count:
            series[(urgency, interval)][b] = count
    return series


def _locate(counts: Mapping[int, int], rank: int) -> tuple[int, int]:
    """(bucket, rank within it) of the 0-based `rank` in ascending order."""
    before = 0
    for b in sorted(counts):
        if rank < before + counts[b]:
            return b, rank - before
        before += counts[b]
    raise ValueError("rank beyond the histogram")


def _hours(micros: int) -> float:
    return timedelta(microseconds=micros).total_seconds() / 3600


def percentile_hours(
    counts: Mapping[int, int], values: Mapping[int, Sequence[int]], pct: float
) -> float | None:
    """The type 7 percentile, in hours, of the values a histogram counts, from the values of
    the buckets holding the two ranks it interpolates between. None for no values."""
    n = sum(counts.values())
    if n == 0:
        return None
    low, high, fraction = _ranks(n, pct)
    at = []
    for rank in (low, high):
        b, within = _locate(counts, rank)
        held = sorted(values[b])
        if len(held) != counts[b]:
            raise ValueError("a bucket's values do not match its count")
        at.append(_hours(held[within]))
    return at[0] + (at[1] - at[0]) * fraction


def report_from(
    p: Partials,
    rejections: Sequence[RejectionRow],
    *,
    group_by: GroupBy,
    period_from: datetime,
    period_to: datetime,
) -> Report:
    funnel: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STAGES, 0))
    for (key, mask), count in p.funnel.items():
        groups = vulnerability_codes(int(key)) if group_by is GroupBy.VULNERABILITY else (key,)
        for group in groups:
            row = funnel[str(group)]
            row["identified"] += count
            for stage in stages_of(mask):
                row[stage] += count
    total = dict.fromkeys(STAGES, 0)
    for (has_referral, mask), count in p.total.items():
        if group_by is GroupBy.SERVICE and not has_referral:
            continue  # by service, the people counted are those referred somewhere
        total["identified"] += count
        for stage in stages_of(mask):
            total[stage] += count
    mix: dict[str, dict[str, Counter[str]]] = defaultdict(
        lambda: {k: Counter() for k in ("vulnerability", "pathway", "urgency", "consent")}
    )
    for (site, pathway, urgency, consent), count in p.mix.items():
        mix[site]["pathway"][pathway] += count
        mix[site]["urgency"][urgency] += count
        mix[site]["consent"][consent] += count
    for (site, mask), count in p.vulnerability_mix.items():
        for code in vulnerability_codes(mask):
            mix[site]["vulnerability"][code] += count
    due: Counter[str] = Counter()
    late: Counter[str] = Counter()
    for (service, is_late), count in p.overdue.items():
        due[service] += count
        if is_late:
            late[service] += count
    series = _by_series(p.histogram)
    values: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
    for (urgency, interval, b), held in p.values.items():
        values[(urgency, interval)][b] = held
    urgencies = sorted({u for _, _, u, _ in p.mix})
    timeliness = []
    for u in urgencies:
        for i in INTERVALS:
            counts = series.get((u, i), {})
            timeliness.append(
                Timing(
                    urgency=u,
                    interval=i,
                    n=sum(counts.values()),
                    median_hours=percentile_hours(counts, values.get((u, i), {}), 50),
                    p90_hours=percentile_hours(counts, values.get((u, i), {}), 90),
                )
            )
    return Report(
        period_from=period_from,
        period_to=period_to,
        group_by=group_by,
        funnel=dict(sorted(funnel.items())),
        total=total,
        timeliness=timeliness,
        overdue={s: Ratio(late[s], due[s]) for s in sorted(due)},
        case_mix=dict(sorted(mix.items())),
        rejections=rejections_by_site(rejections),
    )
