"""hub.ports.Metrics in memory: the fake for tests and the default where nothing is exported.

Counts in dictionaries; no third-party imports, no I/O.
"""

from __future__ import annotations

import threading
from collections import Counter


class MemoryMetrics:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.latencies: dict[str, list[float]] = {}
        self.gauges: dict[tuple[str, ...], float] = {}
        self.circuits: dict[str, str] = {}
        self._lock = threading.Lock()

    def _inc(self, *key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def alert_received(self, source_kind: str) -> None:
        self._inc("alerts_received", source_kind)

    def alert_rejected(self, source_kind: str) -> None:
        self._inc("alerts_rejected", source_kind)

    def referral_delivered(self, endpoint: str) -> None:
        self._inc("referrals_delivered", endpoint)

    def referral_failed(self, endpoint: str) -> None:
        self._inc("referrals_failed", endpoint)

    def delivery_attempt(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            self.latencies.setdefault(endpoint, []).append(seconds)

    def retry_scheduled(self, stage: str, endpoint: str | None) -> None:
        self._inc("retries", stage, endpoint or "")

    def dead_lettered(self, stage: str, endpoint: str | None) -> None:
        self._inc("dead_letters", stage, endpoint or "")

    def queue_depth(self, queue: str, depth: int) -> None:
        self.gauges[("queue_depth", queue)] = depth

    def queue_oldest_age(self, queue: str, seconds: float | None) -> None:
        if seconds is None:
            self.gauges.pop(("queue_oldest_age", queue), None)
        else:
            self.gauges[("queue_oldest_age", queue)] = seconds

    def circuit_state(self, endpoint: str, state: str) -> None:
        self.circuits[endpoint] = state

    def overdue_referrals(self, count: int) -> None:
        self.gauges[("overdue_referrals",)] = count

    def failed_messages(self, count: int) -> None:
        self.gauges[("failed_messages",)] = count

    def thread_restarted(self, thread: str) -> None:
        self._inc("thread_restarts", thread)

    def report_refresh(self, result: str) -> None:
        self._inc("report_refreshes", result)

    def exposition(self) -> tuple[bytes, str]:
        lines = [f"{' '.join(k)} {v}" for k, v in sorted(self.counts.items())]
        lines += [f"{' '.join(k)} {v}" for k, v in sorted(self.gauges.items())]
        return ("\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8"
