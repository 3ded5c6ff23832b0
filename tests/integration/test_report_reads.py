"""The pathway report read from a small seeded ledger on SQLite and on PostgreSQL, through the
real ledger writes and the read-only report reader; every expected figure is worked out by hand
below from the seed.

The seed (hours after each alert's identification; period November 2026):

    WYP   a1 urgent adult given, mental_health + autism
             → ld     delivered 1, accepted 3, assessed 10, attended 50
             → drugs  delivered 2, accepted 5, declined 20 (no service level)
          a2 routine youth refused, mental_health
             → ld     delivered 4, accepted 24, assessed 48, closed 100; due, went overdue
          a3 urgent adult given, no vulnerability recorded
             → ld     never delivered; due, not overdue
          (an alert on 31 October, and a follow-up referral of a1: both outside the report)
    LMC01 b1 urgent adult not_asked, substance_misuse
             → drugs  delivered 0.5, did not attend 30; due, went overdue
    Rejections in November: WYP 2 (person.nhs_number + consent.status; person.nhs_number),
    LMC01 1 (urgency); one WYP rejection in October, outside.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.reports import SqlReportReader
from hub.messages import Problem
from hub.operations.reports.disclosure import publish
from hub.operations.reports.measures import GroupBy, build_report
from hub.records import AlertFacts, ReferralRecord
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
T = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def _alert(
    ledger: SqlLedger,
    site: str,
    urgency: str,
    pathway: str,
    consent: str,
    vulns: tuple[str, ...],
    at: datetime = T,
) -> str:
    alert_id = f"alert-{uuid.uuid4()}"
    ledger.record_alert(
        AlertFacts(
            alert_id=alert_id,
            body_sha256="a" * 64,
            source_kind="custody",
            organisation_code=site,
            reference=f"REF-{uuid.uuid4()}",
            pathway=pathway,
            urgency=urgency,
            consent_status=consent,
            share_with_justice=consent == "given",
            received_at=at,
            vulnerability_types=vulns,
        )
    )
    return alert_id


def _route(
    ledger: SqlLedger,
    alert_id: str,
    *services: tuple[str, bool],
    at: datetime = T,
    kind: str = "new",
) -> list[str]:
    """services: (endpoint, has a service level); returns the bundle ids in that order."""
    referrals = [
        ReferralRecord(
            bundle_id=f"bundle-{uuid.uuid4()}",
            alert_id=alert_id,
            endpoint=endpoint,
            request_id=f"req-{uuid.uuid4()}",
            kind=kind,
            due_at=at + timedelta(hours=72) if due else None,
        )
        for endpoint, due in services
    ]
    ledger.mark_routed(alert_id, rule="default", referrals=referrals, at=at)
    return [r.bundle_id for r in referrals]


def _deliver(ledger: SqlLedger, bundle_id: str, hours: float) -> None:
    ledger.record_attempt(
        bundle_id,
        at=T + timedelta(hours=hours),
        result="delivered",
        http_status=200,
        detail="",
        duration_ms=5.0,
    )


def _outcomes(ledger: SqlLedger, alert_id: str, bundle_id: str, *steps: tuple[str, float]) -> None:
    for status, hours in steps:
        ledger.record_outcome(
            outcome_id=f"out-{uuid.uuid4()}",
            alert_id=alert_id,
            bundle_id=bundle_id,
            status=status,
            at=T + timedelta(hours=hours),
        )


def seed(ledger: SqlLedger) -> None:
    a1 = _alert(ledger, "WYP", "urgent", "adult", "given", ("mental_health", "autism"))
    a1_ld, a1_drugs = _route(ledger, a1, ("ld", False), ("drugs", False))
    _deliver(ledger, a1_ld, 1)
    _outcomes(ledger, a1, a1_ld, ("accepted", 3), ("assessed", 10), ("attended", 50))
    _deliver(ledger, a1_drugs, 2)
    _outcomes(ledger, a1, a1_drugs, ("accepted", 5), ("accepted", 6), ("declined", 20))
    (update,) = _route(ledger, a1, ("ld", False), kind="update")
    _deliver(ledger, update, 0.1)
    _outcomes(ledger, a1, update, ("screened", 0.2))

    a2 = _alert(ledger, "WYP", "routine", "youth", "refused", ("mental_health",))
    (a2_ld,) = _route(ledger, a2, ("ld", True))
    _deliver(ledger, a2_ld, 4)
    _outcomes(ledger, a2, a2_ld, ("accepted", 24), ("assessed", 48), ("closed", 100))
    ledger.mark_overdue(a2_ld, at=T + timedelta(hours=72))

    a3 = _alert(ledger, "WYP", "urgent", "adult", "given", ())
    _route(ledger, a3, ("ld", True))

    b1 = _alert(ledger, "LMC01", "urgent", "adult", "not_asked", ("substance_misuse",))
    (b1_drugs,) = _route(ledger, b1, ("drugs", True))
    _deliver(ledger, b1_drugs, 0.5)
    _outcomes(ledger, b1, b1_drugs, ("did_not_attend", 30))
    ledger.mark_overdue(b1_drugs, at=T + timedelta(hours=72))

    october = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    old = _alert(ledger, "WYP", "urgent", "adult", "given", ("autism",), at=october)
    (old_ld,) = _route(ledger, old, ("ld", True), at=october)
    _outcomes(ledger, old, old_ld, ("accepted", 1))

    for site, paths, at in [
        ("WYP", ["person.nhs_number", "consent.status"], T),
        ("WYP", ["person.nhs_number"], T),
        ("LMC01", ["urgency"], T),
        ("WYP", ["urgency"], october),
    ]:
        ledger.record_rejection(
            alert_id=f"rej-{uuid.uuid4()}",
            source_kind="custody",
            organisation_code=site,
            reference=None,
            problems=[Problem(p, "secret free text") for p in paths],
            at=at,
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A seeded ledger's URL, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        url = request.getfixturevalue("new_pg_schema")()
    ledger = SqlLedger(url)
    try:
        seed(ledger)
    finally:
        ledger.close()
    return url


def exact(url: str, group_by: GroupBy) -> dict:  # type: ignore[type-arg]
    """The exact report as `hub report` reads it: aggregated in the database on PostgreSQL,
    through hub.operations.reports.measures on SQLite."""
    reader = SqlReportReader(url)
    try:
        report = reader.report(START, END, group_by)
    finally:
        reader.close()
    return publish(report, exact=True)


ZERO = dict.fromkeys(
    [
        "identified",
        "referred",
        "accepted",
        "screened",
        "assessed",
        "referred_on",
        "attended",
        "did_not_attend",
        "declined",
        "closed",
    ],
    0,
)


def test_the_funnel_by_site_counts_each_person_once_per_stage(db_url: str) -> None:
    report = exact(db_url, GroupBy.SITE)

    assert report["funnel"] == [
        {**ZERO, "group": "LMC01", "identified": 1, "referred": 1, "did_not_attend": 1},
        {
            **ZERO,
            "group": "WYP",
            "identified": 3,
            "referred": 2,
            "accepted": 2,
            "assessed": 2,
            "attended": 1,
            "declined": 1,
            "closed": 1,
        },
    ]
    assert report["total"] == {
        **ZERO,
        "identified": 4,
        "referred": 3,
        "accepted": 2,
        "assessed": 2,
        "attended": 1,
        "did_not_attend": 1,
        "declined": 1,
        "closed": 1,
    }


def test_the_funnel_by_service_counts_the_referrals_each_service_received(db_url: str) -> None:
    report = exact(db_url, GroupBy.SERVICE)

    assert report["funnel"] == [
        {
            **ZERO,
            "group": "drugs",
            "identified": 2,
            "referred": 2,
            "accepted": 1,
            "did_not_attend": 1,
            "declined": 1,
        },
        {
            **ZERO,
            "group": "ld",
            "identified": 3,
            "referred": 2,
            "accepted": 2,
            "assessed": 2,
            "attended": 1,
            "closed": 1,
        },
    ]


def test_an_alert_with_several_vulnerabilities_counts_under_each(db_url: str) -> None:
    groups = {
        row["group"]: row["identified"] for row in exact(db_url, GroupBy.VULNERABILITY)["funnel"]
    }
    assert groups == {"autism": 1, "mental_health": 2, "none_recorded": 1, "substance_misuse": 1}


def test_timeliness_medians_and_90th_percentiles_by_urgency(db_url: str) -> None:
    timings = {(t["urgency"], t["interval"]): t for t in exact(db_url, GroupBy.SITE)["timeliness"]}

    # urgent deliveries 0.5, 1, 2 h: median 1; 90th at position 1.8 → 1 + 0.8 × 1 = 1.8
    assert timings[("urgent", "to_delivery")] == {
        "urgency": "urgent",
        "interval": "to_delivery",
        "n": 3,
        "median_hours": 1.0,
        "p90_hours": 1.8,
    }
    # first acceptance only (drugs' second "accepted" at 6 h is not counted): 3, 5 h
    assert timings[("urgent", "to_acceptance")]["median_hours"] == 4.0
    assert timings[("urgent", "to_acceptance")]["p90_hours"] == 4.8
    assert timings[("urgent", "to_assessment")]["n"] == 1
    # final outcomes: declined 20, did not attend 30, attended 50 → median 30, 90th 30 + 0.8 × 20
    assert timings[("urgent", "to_final_outcome")]["median_hours"] == 30.0
    assert timings[("urgent", "to_final_outcome")]["p90_hours"] == 46.0
    assert timings[("routine", "to_final_outcome")]["median_hours"] == 100.0


def test_the_overdue_share_is_of_referrals_with_a_service_level(db_url: str) -> None:
    assert exact(db_url, GroupBy.SITE)["overdue"] == [
        {"service": "drugs", "with_service_level": 1, "overdue": 1, "share": 1.0},
        {"service": "ld", "with_service_level": 2, "overdue": 1, "share": 0.5},
    ]


def test_case_mix_and_rejections_by_field_path_per_site(db_url: str) -> None:
    report = exact(db_url, GroupBy.SITE)

    assert report["case_mix"] == [
        {
            "site": "LMC01",
            "vulnerability": {"substance_misuse": 1},
            "pathway": {"adult": 1},
            "urgency": {"urgent": 1},
            "consent": {"not_asked": 1},
        },
        {
            "site": "WYP",
            "vulnerability": {"autism": 1, "mental_health": 2, "none_recorded": 1},
            "pathway": {"adult": 2, "youth": 1},
            "urgency": {"routine": 1, "urgent": 2},
            "consent": {"given": 2, "refused": 1},
        },
    ]
    assert report["rejections"] == [
        {"site": "LMC01", "rejected": 1, "by_field_path": {"urgency": 1}},
        {
            "site": "WYP",
            "rejected": 2,
            "by_field_path": {"consent.status": 1, "person.nhs_number": 2},
        },
    ]


def test_by_default_every_figure_of_the_small_ledger_is_suppressed(db_url: str) -> None:
    reader = SqlReportReader(db_url)
    try:
        extract = reader.extract(START, END)
    finally:
        reader.close()
    report = publish(build_report(extract, group_by=GroupBy.SITE, period_from=START, period_to=END))

    assert report["total"]["identified"] == "*"
    assert all(t["median_hours"] is None for t in report["timeliness"])
    assert all(o["share"] is None for o in report["overdue"])
    text = repr(report)
    assert "alert-" not in text and "REF-" not in text and "bundle-" not in text
    assert "secret" not in text


def test_the_report_reader_cannot_write(db_url: str) -> None:
    reader = SqlReportReader(db_url)
    try:
        with pytest.raises(sa.exc.DBAPIError), reader._engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM hub_outcomes"))
    finally:
        reader.close()


def test_an_empty_ledger_reports_zeros(new_pg_schema: Callable[[], str]) -> None:  # noqa: F811
    url = new_pg_schema()
    SqlLedger(url).close()
    assert exact(url, GroupBy.SITE)["total"] == ZERO


@pytest.mark.parametrize("group_by", list(GroupBy))
def test_postgresql_aggregation_gives_what_the_pure_measures_give_on_a_synthetic_month(
    group_by: GroupBy,
    synthetic_pg: str,
) -> None:
    reader = SqlReportReader(synthetic_pg)
    try:
        start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
        in_sql = reader.report(start, end, group_by)
        in_python = build_report(
            reader.extract(start, end), group_by=group_by, period_from=start, period_to=end
        )
    finally:
        reader.close()

    assert in_sql.total["identified"] > 100
    assert in_sql.funnel == in_python.funnel
    assert in_sql.total == in_python.total
    assert in_sql.overdue == in_python.overdue
    assert in_sql.case_mix == in_python.case_mix
    assert in_sql.rejections == in_python.rejections
    for a, b in zip(in_sql.timeliness, in_python.timeliness, strict=True):
        assert (a.urgency, a.interval, a.n) == (b.urgency, b.interval, b.n)
        assert a.median_hours == pytest.approx(b.median_hours)
        assert a.p90_hours == pytest.approx(b.p90_hours)


@pytest.fixture(scope="module")
def synthetic_pg(new_pg_schema: Callable[[], str]) -> str:  # noqa: F811
    from bench.seed_year import seed as seed_year

    url = new_pg_schema()
    seed_year(url, alerts=4000, site_count=12, year=2026, seed_value=3)
    return url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_ledger_from_an_earlier_hub_gets_the_reports_indexes_when_opened(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("new_pg_schema")()
    )
    SqlLedger(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as an earlier hub left it
        conn.execute(sa.text("DROP INDEX ix_hub_alerts_received_at"))
        conn.execute(sa.text("DROP INDEX ix_hub_outcomes_bundle_id"))

    SqlLedger(url).close()

    inspector = sa.inspect(engine)
    assert "ix_hub_alerts_received_at" in {i["name"] for i in inspector.get_indexes("hub_alerts")}
    assert "ix_hub_outcomes_bundle_id" in {i["name"] for i in inspector.get_indexes("hub_outcomes")}
    engine.dispose()
