"""The pathway report's pure parts, against figures worked out by hand: suppression and rounding,
percentiles, control limits for a known binomial case, and a funnel plot that finds the two
sites that differ by more than chance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.operations.reports.disclosure import publish, shown, shown_rate
from hub.operations.reports.measures import (
    AlertRow,
    GroupBy,
    LedgerExtract,
    Ratio,
    ReferralRow,
    build_report,
)
from hub.operations.reports.stats import control_limits, flag, percentile

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("count", "published"),
    [
        (0, 0),
        (1, "*"),
        (7, "*"),
        (8, 10),
        (12, 10),
        (13, 15),
        (15, 15),
        (17, 15),
        (18, 20),
        (1002, 1000),
        (1003, 1005),
    ],
)
def test_counts_of_one_to_seven_are_starred_and_others_rounded_to_the_nearest_five(
    count: int, published: int | str
) -> None:
    assert shown(count, exact=False) == published
    assert shown(count, exact=True) == count


def test_a_rate_uses_exact_numbers_but_is_withheld_when_either_side_is_starred() -> None:
    assert shown_rate(Ratio(9, 13), exact=False) == round(9 / 13, 4)  # not 10/15
    assert shown_rate(Ratio(3, 100), exact=False) is None
    assert shown_rate(Ratio(8, 7), exact=False) is None
    assert shown_rate(Ratio(0, 20), exact=False) == 0.0
    assert shown_rate(Ratio(3, 100), exact=True) == 0.03
    assert shown_rate(Ratio(0, 0), exact=True) is None


def test_percentiles_interpolate_between_closest_ranks() -> None:
    values = [2.0, 0.5, 1.0]
    assert percentile(values, 50) == 1.0
    assert percentile(values, 90) == pytest.approx(1.8)  # position 1.8: 1 + 0.8 × (2 − 1)
    assert percentile([3.0, 5.0], 50) == 4.0
    assert percentile([3.0, 5.0], 90) == pytest.approx(4.8)
    assert percentile([10.0], 90) == 10.0
    assert percentile([], 50) is None


def test_control_limits_of_a_half_rate_at_a_hundred_are_two_and_three_standard_errors() -> None:
    # p = 0.5, n = 100: standard error √(0.25 / 100) = 0.05
    limits = control_limits(0.5, 100)

    assert limits.lower95 == pytest.approx(0.5 - 1.959964 * 0.05)
    assert limits.upper95 == pytest.approx(0.5979982)
    assert limits.lower998 == pytest.approx(0.3454884)
    assert limits.upper998 == pytest.approx(0.6545116)
    assert flag(0.45, limits) == "within"
    assert flag(0.62, limits) == "alert_high"
    assert flag(0.66, limits) == "alarm_high"
    assert flag(0.38, limits) == "alert_low"
    assert flag(0.34, limits) == "alarm_low"


def test_control_limits_never_leave_zero_to_one() -> None:
    limits = control_limits(0.99, 10)
    assert limits.upper998 == 1.0 and limits.lower998 < 0.99


def _site(site: str, referred: int, assessed: int) -> tuple[list[AlertRow], list[ReferralRow]]:
    t = START + timedelta(days=3)
    alerts, referrals = [], []
    for i in range(referred):
        alert_id = f"{site}-{i}"
        alerts.append(AlertRow(alert_id, site, "custody", "adult", "urgent", "given", t))
        outcomes = {"assessed": t + timedelta(hours=5)} if i < assessed else {}
        referrals.append(ReferralRow(alert_id, "ld", t + timedelta(hours=1), None, None, outcomes))
    return alerts, referrals


def test_the_funnel_plot_marks_the_sites_beyond_three_standard_errors_of_the_overall_rate() -> None:
    # given two sites of 100 referred each, assessing 66 and 34: overall 100 / 200 = 0.5
    high_alerts, high_refs = _site("HIGH", 100, 66)
    low_alerts, low_refs = _site("LOW", 100, 34)
    extract = LedgerExtract(high_alerts + low_alerts, high_refs + low_refs, [])

    published = publish(
        build_report(extract, group_by=GroupBy.SITE, period_from=START, period_to=END)
    )

    plot = next(p for p in published["variation"] if p["rate"] == "assessed_of_referred")
    assert plot["overall"] == 0.5
    points = {p["group"]: p for p in plot["points"]}
    assert points["HIGH"]["rate"] == 0.66 and points["HIGH"]["flag"] == "alarm_high"
    assert points["LOW"]["rate"] == 0.34 and points["LOW"]["flag"] == "alarm_low"
    assert points["HIGH"]["n"] == 100
    assert points["HIGH"]["upper998"] == round(0.6545116, 4)
    assert published["total"]["assessed"] == 100
    assert published["funnel"][0]["assessed"] == 65  # 66 rounded to the nearest 5


def test_a_small_site_is_starred_everywhere_and_its_rates_withheld() -> None:
    alerts, refs = _site("SMALL", 5, 2)
    published = publish(
        build_report(
            LedgerExtract(alerts, refs, []), group_by=GroupBy.SITE, period_from=START, period_to=END
        )
    )

    assert published["funnel"] == [
        {
            "group": "SMALL",
            "identified": "*",
            "referred": "*",
            "accepted": 0,
            "screened": 0,
            "assessed": "*",
            "referred_on": 0,
            "attended": 0,
            "did_not_attend": 0,
            "declined": 0,
            "closed": 0,
        }
    ]
    for plot in published["variation"]:
        assert all("rate" not in p for p in plot["points"])
    timing = next(t for t in published["timeliness"] if t["interval"] == "to_delivery")
    assert timing == {
        "urgency": "urgent",
        "interval": "to_delivery",
        "n": "*",
        "median_hours": None,
        "p90_hours": None,
    }
