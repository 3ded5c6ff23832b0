"""The summary's pure core: percentiles from a histogram and the values of a few buckets are
the type 7 percentiles of the raw values; masks and buckets keep their meaning."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from hub.operations.reports.measures import AlertRow, ReferralRow
from hub.operations.reports.stats import percentile
from hub.operations.reports.summary import (
    Partials,
    bucket,
    buckets_needed,
    percentile_hours,
    stages_of,
    summarise,
    vulnerability_codes,
    vulnerability_mask,
)

pytestmark = pytest.mark.unit

HOUR = 3_600_000_000  # µs


def _from_histogram(micros: list[int], pct: float) -> float | None:
    counts = Counter(bucket(m) for m in micros)
    needed = {b for _, _, b in buckets_needed({("u", "i", b): n for b, n in counts.items()})}
    values = {b: [m for m in micros if bucket(m) == b] for b in needed}
    return percentile_hours(counts, values, pct)


def test_a_known_case_median_and_90th_from_the_histogram() -> None:
    # 0.5, 1, 2 h: median 1, 90th at position 1.8 → 1 + 0.8 × 1 = 1.8 (as test_report_reads)
    micros = [HOUR // 2, HOUR, 2 * HOUR]
    assert _from_histogram(micros, 50) == 1.0
    assert _from_histogram(micros, 90) == pytest.approx(1.8)


def test_percentiles_from_the_histogram_equal_those_of_the_sorted_values() -> None:
    rng = random.Random(7)
    for n in (1, 2, 5, 40, 3000):
        micros = [int(rng.expovariate(1 / (30 * HOUR))) - HOUR // 10 for _ in range(n)]
        hours = [m / HOUR for m in micros]
        for pct in (50, 90):
            assert _from_histogram(micros, pct) == pytest.approx(percentile(hours, pct))


def test_only_the_buckets_holding_the_needed_ranks_are_asked_for() -> None:
    micros = list(range(0, 1000 * HOUR, HOUR))  # 1000 distinct hours, many buckets
    counts = Counter(bucket(m) for m in micros)
    needed = buckets_needed({("u", "i", b): n for b, n in counts.items()})
    assert 1 <= len(needed) <= 4 < len(counts)


def test_no_values_give_no_percentile() -> None:
    assert percentile_hours({}, {}, 50) is None


def test_buckets_are_monotone_through_zero() -> None:
    points = [-10 * HOUR, -HOUR, -1, 0, 1, 59_000_000, HOUR, 10 * HOUR, 60 * 24 * HOUR]
    assert [bucket(p) for p in points] == sorted(bucket(p) for p in points)


def test_masks_round_trip_and_an_unknown_vulnerability_is_refused() -> None:
    assert vulnerability_codes(vulnerability_mask(["autism", "mental_health"])) == (
        "mental_health",
        "autism",
    )
    assert vulnerability_codes(0) == ("none_recorded",)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vulnerability_mask(["not_a_code"])


def test_an_alerts_two_referrals_to_one_service_count_once_for_that_service() -> None:
    t = datetime(2026, 11, 1, tzinfo=UTC)
    alert = AlertRow("a", "WYP", "custody", "adult", "urgent", "given", t)
    first = ReferralRow("a", "ld", t + timedelta(hours=1), None, None, {"accepted": t})
    second = ReferralRow("a", "ld", None, t, t, {"assessed": t + timedelta(hours=3)})
    (a,), (r1, r2) = summarise([alert], [first, second])

    assert stages_of(a.stages) == ["referred", "accepted", "assessed"]
    assert r1.endpoint_stages == a.stages and r2.endpoint_stages is None
    assert (r1.due, r2.due, r2.late) == (False, True, True)
    assert r1.micros == {"to_delivery": HOUR, "to_acceptance": 0}
    assert r2.micros == {"to_assessment": 3 * HOUR}


def test_partials_add_up() -> None:
    one, two = Partials(), Partials()
    one.funnel[("WYP", 1)] = 2
    two.funnel[("WYP", 1)] = 3
    two.values[("u", "i", 4)] = [5]
    one.add(two)
    assert one.funnel[("WYP", 1)] == 5 and one.values == {("u", "i", 4): [5]}
