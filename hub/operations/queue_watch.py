"""A background thread that samples what only polling can tell: each hub queue's depth, its
oldest message's age and the failed-message store's size, into the Metrics port. It reads; it
never consumes or changes anything.

Ages: a queue `ages` answers for (the ledger for delivery queues, the management API where the
broker reports a head timestamp) gets that; a queue `observed` covers gets its bound
(hub.operations.queue_ages); any other queue none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from hub.errors import HubError
from hub.log import get_logger
from hub.operations.queue_ages import ObservedAges
from hub.ports import Metrics

log = get_logger("hub.queue_watch")

Depths = Callable[[Sequence[str]], Mapping[str, int]]
Ages = Callable[[Sequence[str], float], Mapping[str, float]]  # (queues, now as Unix time)


class QueueWatch:
    def __init__(
        self,
        *,
        metrics: Metrics,
        queues: Sequence[str],
        depths: Depths,
        ages: Ages | None = None,
        observed: ObservedAges | None = None,
        failed_count: Callable[[], int] | None = None,
        interval: float = 15.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.queues = list(queues)
        self.depths = depths
        self.ages = ages
        self.observed = observed
        self.failed_count = failed_count
        self.interval = interval
        self.wall_clock = wall_clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_name = "queue-watch"

    def sample(self) -> None:
        """One round; each source on its own, so a broken one does not hide the others."""
        at = self.wall_clock()  # before the depths are read: an empty queue was empty since
        depths: Mapping[str, int] | None = None
        try:
            depths = self.depths(self.queues)
            for queue, depth in depths.items():
                self.metrics.queue_depth(queue, depth)
        except HubError as exc:
            log.warning("queue_depths_unavailable", reason=exc.message)
        if self.ages is not None or self.observed is not None:
            self._sample_ages(depths, at)
        if self.failed_count is not None:
            try:
                self.metrics.failed_messages(self.failed_count())
            except HubError as exc:
                log.warning("failed_store_size_unavailable", reason=exc.message)

    def _sample_ages(self, depths: Mapping[str, int] | None, at: float) -> None:
        answered: Mapping[str, float] | None = {}
        if self.ages is not None:
            try:
                answered = self.ages(self.queues, at)
            except HubError as exc:
                log.warning("queue_ages_unavailable", reason=exc.message)
                answered = None
        for queue in self.queues:
            observed = self.observed
            if observed is not None and not observed.covers(queue):
                observed = None
            bound = None
            if observed is not None:  # sampled every round: an empty queue is a later bound
                ready = None if depths is None else depths.get(queue)
                bound = observed.estimate(queue, ready=ready, at=at)
            if answered and queue in answered:
                self.metrics.queue_oldest_age(queue, answered[queue])
            elif observed is not None or answered is not None:
                self.metrics.queue_oldest_age(queue, bound)
            # else: its only source failed this round; the last reading stands

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a background loop's boundary: never dies
                log.error("queue_sample_crashed", error_class=type(exc).__name__)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
