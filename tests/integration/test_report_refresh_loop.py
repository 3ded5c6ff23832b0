"""The hub's own report-summary refresh (hub.operations.report_refresh): on its interval it
refreshes the summary to the same figures as the live report, a round that raises anything is
logged and the next round still runs, and stopping it ends the thread and closes its engine.
On SQLite and PostgreSQL, on the hand-worked ledger of test_report_reads."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
import structlog

from hub.adapters.memory.metrics import MemoryMetrics
from hub.adapters.sql.report_summary import SqlReportRefresher
from hub.errors import TransientError
from hub.operations.report_refresh import ReportRefreshWatch
from tests.conftest import wait_until
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 (fixture)
from tests.integration.test_report_reads import END, db_url  # noqa: F401 (fixture)
from tests.integration.test_report_summary import every_report

pytestmark = pytest.mark.integration


def refreshes(url: str) -> list[tuple[int, bool]]:
    """The watermark rows the refreshes recorded: (alerts summarised, full), oldest first."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("hub_report_refreshes"):
                return []
            return [
                (row.alerts, bool(row.full))
                for row in conn.execute(
                    sa.text('SELECT alerts, "full" FROM hub_report_refreshes ORDER BY id')
                )
            ]
    finally:
        engine.dispose()


def at_end() -> datetime:
    return END


class Flaky:
    """A refresher whose first `fail` refreshes raise something nobody expects."""

    def __init__(self, real: SqlReportRefresher, fail: int) -> None:
        self.real, self.fail = real, fail
        self.calls = 0
        self.closed = False

    def refresh(self, *, now: datetime) -> Any:
        self.calls += 1
        if self.calls <= self.fail:
            raise KeyError("an odd row")
        return self.real.refresh(now=now)

    def close(self) -> None:
        self.closed = True
        self.real.close()


def test_the_loop_refreshes_on_its_interval_to_the_live_figures(db_url: str) -> None:  # noqa: F811
    live = every_report(db_url)
    metrics = MemoryMetrics()
    watch = ReportRefreshWatch(
        partial(SqlReportRefresher, db_url), interval=0.05, clock=at_end, metrics=metrics
    )
    with structlog.testing.capture_logs() as logs:
        watch.start()
        try:
            wait_until(lambda: len(refreshes(db_url)) >= 2, what="two refreshes")
        finally:
            watch.stop()

    # the first round summarised everything, the next only what changed since (nothing)
    assert refreshes(db_url)[:2] == [(5, True), (0, False)]
    assert every_report(db_url) == live
    assert metrics.counts[("report_refreshes", "done")] >= 2
    done = [e for e in logs if e["event"] == "report_refreshed"]
    assert done[0]["alerts"] == 5 and done[0]["full"] is True
    assert isinstance(done[0]["seconds"], float)
    # counts and a duration only: nothing about any alert
    assert set(done[0]) == {"event", "log_level", "alerts", "full", "seconds"}


def test_a_round_that_raises_anything_is_logged_and_the_next_round_runs(
    db_url: str,  # noqa: F811
) -> None:
    attempts: list[str] = []
    made: list[Flaky] = []

    def make() -> Flaky:
        attempts.append("make")
        if len(attempts) == 1:
            raise TransientError("the database is away")  # no engine yet: tried next round
        made.append(Flaky(SqlReportRefresher(db_url), fail=1))
        return made[-1]

    metrics = MemoryMetrics()
    watch = ReportRefreshWatch(make, interval=0.02, clock=at_end, metrics=metrics)
    with structlog.testing.capture_logs() as logs:
        watch.start()
        try:
            wait_until(lambda: len(refreshes(db_url)) >= 1, what="a refresh")
            assert watch.is_alive()
        finally:
            watch.stop()

    events = [e["event"] for e in logs]
    assert events.index("report_refresh_failed") < events.index("report_refresh_crashed")
    assert events.index("report_refresh_crashed") < events.index("report_refreshed")
    crashed = next(e for e in logs if e["event"] == "report_refresh_crashed")
    assert crashed["error_class"] == "KeyError" and "an odd row" not in str(crashed)
    assert metrics.counts[("report_refreshes", "failed")] == 2
    assert len(made) == 1 and made[0].calls >= 2  # one engine, kept between rounds


def test_stopping_ends_the_thread_and_closes_its_engine(db_url: str) -> None:  # noqa: F811
    made: list[Flaky] = []

    def make() -> Flaky:
        made.append(Flaky(SqlReportRefresher(db_url), fail=0))
        return made[-1]

    watch = ReportRefreshWatch(make, interval=0.02, clock=at_end)
    watch.start()
    wait_until(lambda: len(refreshes(db_url)) >= 1, what="a refresh")
    assert watch.is_alive() and not made[0].closed

    watch.stop()

    assert not watch.is_alive()
    assert made[0].closed
