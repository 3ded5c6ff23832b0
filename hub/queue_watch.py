"""A background thread that samples what only polling can tell: each hub queue's depth, its
oldest message's age (when the management API is configured) and the failed-message store's
size, into the Metrics port. It reads; it never consumes or changes anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from hub.errors import HubError
from hub.log import get_logger
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
        failed_count: Callable[[], int] | None = None,
        interval: float = 15.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.queues = list(queues)
        self.depths = depths
        self.ages = ages
        self.failed_count = failed_count
        self.interval = interval
        self.wall_clock = wall_clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """One round; each source on its own, so a broken one does not hide the others."""
        try:
            for queue, depth in self.depths(self.queues).items():
                self.metrics.queue_depth(queue, depth)
        except HubError as exc:
            log.warning("queue_depths_unavailable", reason=exc.message)
        if self.ages is not None:
            try:
                ages = self.ages(self.queues, self.wall_clock())
                for queue in self.queues:
                    self.metrics.queue_oldest_age(queue, ages.get(queue))
            except HubError as exc:
                log.warning("queue_ages_unavailable", reason=exc.message)
        if self.failed_count is not None:
            try:
                self.metrics.failed_messages(self.failed_count())
            except HubError as exc:
                log.warning("failed_store_size_unavailable", reason=exc.message)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
