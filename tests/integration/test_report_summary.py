"""The report after `hub report refresh`: read from the summary tables up to the watermark and
live after it, it gives every figure the live report gives, on SQLite and PostgreSQL, on the
hand-worked ledger of test_report_reads and after new alerts and outcomes arrive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.report_summary import RefreshResult, SqlReportRefresher
from hub.operations.reports.measures import GroupBy, build_report
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 (fixture)
from tests.integration.test_report_reads import (  # noqa: F401 (fixture)
    END,
    T,
    _alert,
    _deliver,
    _outcomes,
    _route,
    db_url,
    exact,
    seed,
)

pytestmark = pytest.mark.integration


def refresh(url: str, now: datetime, **kwargs: object) -> int:
    refresher = SqlReportRefresher(url)
    try:
        return refresher.refresh(now=now, **kwargs).alerts  # type: ignore[arg-type]
    finally:
        refresher.close()


def every_report(url: str) -> dict[GroupBy, dict]:  # type: ignore[type-arg]
    return {g: exact(url, g) for g in GroupBy}


def summary_rows(url: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                tuple(row)
                for table in ("hub_report_alerts", "hub_report_referrals")
                for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))
            ]
    finally:
        engine.dispose()


def test_after_a_refresh_every_figure_equals_the_live_report(db_url: str) -> None:  # noqa: F811
    live = every_report(db_url)

    assert refresh(db_url, END) == 5  # four alerts in November, one in October
    assert every_report(db_url) == live
    # …and it was read from the summary: a summary row changed by hand shows in the report.
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hub_report_alerts SET organisation_code = 'XX'"))
    engine.dispose()
    assert [g["group"] for g in exact(db_url, GroupBy.SITE)["funnel"]] == ["XX"]


def test_alerts_after_the_watermark_are_read_live_and_merged(db_url: str) -> None:  # noqa: F811
    live = every_report(db_url)

    # Only the October alert is before this watermark: November is all tail.
    assert refresh(db_url, T - timedelta(hours=1)) == 1
    assert every_report(db_url) == live

    assert refresh(db_url, T + timedelta(minutes=1)) == 5
    ledger = SqlLedger(db_url)
    try:
        late = _alert(
            ledger, "LMC01", "urgent", "adult", "given", ("autism",), at=T + timedelta(hours=2)
        )
        (bundle,) = _route(ledger, late, ("drugs", True), at=T + timedelta(hours=2))
        _deliver(ledger, bundle, 2.5)
        _outcomes(ledger, late, bundle, ("accepted", 7))
    finally:
        ledger.close()
    merged = every_report(db_url)
    assert merged[GroupBy.SITE]["total"]["identified"] == 5
    assert merged != live
    # the same figures the live report gives for the grown ledger (no summary read at all)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM hub_report_refreshes"))
    engine.dispose()
    assert every_report(db_url) == merged


def test_a_refresh_after_new_outcomes_resummarises_only_the_alerts_they_touch(
    db_url: str,  # noqa: F811
) -> None:
    ledger = SqlLedger(db_url)
    try:
        waiting = _alert(ledger, "WYP", "emergency", "adult", "given", ())
        (bundle,) = _route(ledger, waiting, ("ld", True))
    finally:
        ledger.close()
    assert refresh(db_url, END) == 6
    before = every_report(db_url)

    ledger = SqlLedger(db_url)
    try:  # delivered and accepted after the refresh, at the hub's and the service's clocks
        ledger.record_attempt(
            bundle,
            at=END + timedelta(minutes=5),
            result="delivered",
            http_status=200,
            detail="",
            duration_ms=5.0,
        )
        ledger.record_outcome(
            outcome_id="out-late",
            alert_id=waiting,
            bundle_id=bundle,
            status="accepted",
            at=END + timedelta(minutes=10),
        )
    finally:
        ledger.close()
    assert every_report(db_url) == before  # as of the last refresh until the next one

    assert refresh(db_url, END + timedelta(hours=1)) == 1
    after = every_report(db_url)
    assert after[GroupBy.SITE]["total"]["accepted"] == before[GroupBy.SITE]["total"]["accepted"] + 1
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM hub_report_refreshes"))
    engine.dispose()
    assert every_report(db_url) == after  # = live


def test_refreshing_twice_changes_nothing(db_url: str) -> None:  # noqa: F811
    refresh(db_url, END)
    rows, reports = summary_rows(db_url), every_report(db_url)

    assert refresh(db_url, END, margin=timedelta(days=40)) == 5  # all re-summarised…
    assert summary_rows(db_url) == rows  # …to the same rows
    assert every_report(db_url) == reports
    assert refresh(db_url, END, full=True) == 5
    assert summary_rows(db_url) == rows


@pytest.mark.parametrize("group_by", list(GroupBy))
def test_on_a_synthetic_month_split_by_the_watermark_every_figure_equals_live(
    group_by: GroupBy, synthetic_url: str
) -> None:
    from hub.adapters.sql.reports import SqlReportReader

    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    reader = SqlReportReader(synthetic_url)
    try:
        summarised = reader.report(start, end, group_by)
        live = build_report(
            reader.extract(start, end), group_by=group_by, period_from=start, period_to=end
        )
    finally:
        reader.close()

    assert summarised.total["identified"] > 100
    assert (summarised.funnel, summarised.total) == (live.funnel, live.total)
    assert (summarised.overdue, summarised.case_mix) == (live.overdue, live.case_mix)
    assert summarised.rejections == live.rejections
    for a, b in zip(summarised.timeliness, live.timeliness, strict=True):
        assert (a.urgency, a.interval, a.n) == (b.urgency, b.interval, b.n)
        assert a.median_hours == pytest.approx(b.median_hours)
        assert a.p90_hours == pytest.approx(b.p90_hours)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def synthetic_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    new_pg_schema: Callable[[], str],  # noqa: F811
) -> str:
    """4,000 synthetic alerts over 2026, refreshed up to 16 March: March half summary, half tail."""
    from bench.seed_year import seed as seed_year

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('synthetic') / 'hub.db'}"
    else:
        url = new_pg_schema()
    seed_year(url, alerts=4000, site_count=12, year=2026, seed_value=3)
    assert refresh(url, datetime(2026, 3, 16, 12, tzinfo=UTC)) > 500
    return url


@pytest.fixture
def pg_db_url(new_pg_schema: Any) -> str:  # noqa: F811
    """The seeded ledger on PostgreSQL only: the refresh lock is PostgreSQL's (SQLite
    serialises refreshes on its write lock instead: the test after this one)."""
    url = str(new_pg_schema())
    ledger = SqlLedger(url)
    try:
        seed(ledger)
    finally:
        ledger.close()
    return url


def test_a_refresh_finding_another_running_skips_and_records_nothing(pg_db_url: str) -> None:
    from hub.adapters.sql.report_summary import REFRESH_LOCK_KEY

    url = pg_db_url
    assert REFRESH_LOCK_KEY == 7527030595871994929  # as docs/reporting.md gives it
    refresh(url, END)
    before = summary_rows(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as other:  # another refresh, holding the lock
            other.execute(
                sa.text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=REFRESH_LOCK_KEY)
            )
            refresher = SqlReportRefresher(url)
            try:
                skipped = refresher.refresh(now=END + timedelta(days=1), full=True)
            finally:
                refresher.close()
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT COUNT(*) FROM hub_report_refreshes")).scalar()
    finally:
        engine.dispose()

    assert skipped.skipped and skipped.alerts == 0 and skipped.watermark == END
    assert runs == 1 and summary_rows(url) == before
    # once the other has finished, the lock is free again
    assert refresh(url, END + timedelta(days=1), full=True) == 5


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_refreshes_at_once_both_end_well_and_the_summary_equals_live(
    backend: str,
    tmp_path: Path,
    new_pg_schema: Callable[[], str],  # noqa: F811
) -> None:
    from bench.seed_year import seed as seed_year
    from hub.adapters.sql.reports import SqlReportReader

    url = f"sqlite:///{tmp_path / 'hub.db'}" if backend == "sqlite" else new_pg_schema()
    seed_year(url, alerts=3000, site_count=8, year=2026, seed_value=5)
    refreshers = [SqlReportRefresher(url) for _ in range(4)]
    start = threading.Barrier(len(refreshers))
    results: list[object] = []

    def run(refresher: SqlReportRefresher) -> None:
        start.wait()
        try:
            results.append(refresher.refresh(now=datetime(2026, 7, 1, tzinfo=UTC), full=True))
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            results.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in refreshers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for refresher in refreshers:
        refresher.close()

    assert len(results) == 4
    assert all(isinstance(r, RefreshResult) for r in results), results
    done = [r for r in results if isinstance(r, RefreshResult) and not r.skipped]
    assert done and all(r.alerts > 1000 for r in done)
    if backend == "sqlite":
        assert len(done) == 4  # serialised, each in turn
    period = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    reader = SqlReportReader(url)
    try:
        summarised = reader.report(*period, GroupBy.SITE)
        live = build_report(
            reader.extract(*period),
            group_by=GroupBy.SITE,
            period_from=period[0],
            period_to=period[1],
        )
    finally:
        reader.close()
    assert summarised.total["identified"] > 100
    assert (summarised.funnel, summarised.total) == (live.funnel, live.total)
    assert (summarised.overdue, summarised.case_mix) == (live.overdue, live.case_mix)
