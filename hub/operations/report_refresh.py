"""The hub keeps the pathway report's summary tables fresh itself: every `reporting.
refresh_seconds` one background thread runs the same incremental refresh as `hub report
refresh`, so a report's live tail (alerts since the last watermark) stays short.

It never slows the pipeline: its own thread and its own database engine (the refresher the
factory makes, lazily, on the first round), never a consumer's connection. Two refreshers at
once (two hubs, cron and a hub) do not collide: the refresher itself takes care of that (on
PostgreSQL the second finds the advisory lock taken and skips the round). A round that fails
(the database away, anything else) is logged and the next round tries again; nothing it logs
names a person, only counts and a duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from hub.errors import HubError
from hub.log import get_logger
from hub.pipeline import Clock
from hub.ports import Metrics, RefreshDone, ReportRefresher

log = get_logger("hub.report_refresh")


class ReportRefreshWatch:
    def __init__(
        self,
        make_refresher: Callable[[], ReportRefresher],
        *,
        interval: float,
        clock: Clock,
        metrics: Metrics | None = None,
    ) -> None:
        self._make_refresher = make_refresher
        self._refresher: ReportRefresher | None = None
        self.interval = interval
        self.clock = clock
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_name = "report-refresh"

    def refresh_once(self) -> RefreshDone:
        """One round: bring the summary up to the hub's clock; logged and counted."""
        if self._refresher is None:
            self._refresher = self._make_refresher()
        started = time.monotonic()
        result = self._refresher.refresh(now=self.clock())
        seconds = round(time.monotonic() - started, 3)
        if result.skipped:
            log.info("report_refresh_skipped", reason="another refresh is running")
            self._count("skipped")
        else:
            log.info("report_refreshed", alerts=result.alerts, full=result.full, seconds=seconds)
            self._count("done")
        return result

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.report_refresh(result)

    # -- the loop bootstrap runs ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._refresher is not None and not self.is_alive():
            # (a refresh still running past the join keeps its engine; the thread is a daemon)
            self._refresher.close()
            self._refresher = None

    def _run(self) -> None:
        # The first round one interval after start: a hub starting does no report work.
        while not self._stop.wait(self.interval):
            try:
                self.refresh_once()
            except HubError as exc:  # the database is away: the next round tries again
                log.warning("report_refresh_failed", reason=exc.message)
                self._count("failed")
            except Exception as exc:  # noqa: BLE001 - a background loop's boundary: never dies
                log.error("report_refresh_crashed", error_class=type(exc).__name__)
                self._count("failed")
