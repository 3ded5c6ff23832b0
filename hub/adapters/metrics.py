"""Prometheus metrics for one hub (hub.ports.Metrics) and their text exposition for GET /metrics.

The only module that imports prometheus_client. Each instance owns its CollectorRegistry: never
the library's global one, so several hubs (tests) can live in one process.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Every metric the hub exports (names as they appear in the exposition; counters gain `_total`,
# the histogram `_bucket`/`_count`/`_sum`). config/prometheus-rules.yml may use only these.
ALERTS_RECEIVED = "hub_alerts_received_total"
ALERTS_REJECTED = "hub_alerts_rejected_total"
REFERRALS_DELIVERED = "hub_referrals_delivered_total"
REFERRALS_FAILED = "hub_referrals_failed_total"
DELIVERY_SECONDS = "hub_delivery_attempt_seconds"
RETRIES = "hub_retries_total"
DEAD_LETTERS = "hub_dead_letters_total"
QUEUE_DEPTH = "hub_queue_depth"
QUEUE_OLDEST_AGE = "hub_queue_oldest_message_age_seconds"
CIRCUIT_STATE = "hub_circuit_state"
OVERDUE_REFERRALS = "hub_overdue_referrals"
FAILED_MESSAGES = "hub_failed_messages"
THREAD_RESTARTS = "hub_thread_restarts_total"
REPORT_REFRESHES = "hub_report_refreshes_total"
EXPORTED = (
    ALERTS_RECEIVED,
    ALERTS_REJECTED,
    REFERRALS_DELIVERED,
    REFERRALS_FAILED,
    DELIVERY_SECONDS,
    RETRIES,
    DEAD_LETTERS,
    QUEUE_DEPTH,
    QUEUE_OLDEST_AGE,
    CIRCUIT_STATE,
    OVERDUE_REFERRALS,
    FAILED_MESSAGES,
    THREAD_RESTARTS,
    REPORT_REFRESHES,
)

# Attempts are bounded by each endpoint's timeout (10 s by default); MLLP and MESH can be slow.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _counter_name(name: str) -> str:
    return name.removesuffix("_total")  # prometheus_client appends it again


class PrometheusMetrics:
    """hub.ports.Metrics in a CollectorRegistry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._received = Counter(
            _counter_name(ALERTS_RECEIVED),
            "Alerts taken off the hub's alert queues (first attempts), by source kind",
            ["source_kind"],
            registry=r,
        )
        self._rejected = Counter(
            _counter_name(ALERTS_REJECTED),
            "Alerts rejected as invalid and answered with a rejected outcome, by source kind",
            ["source_kind"],
            registry=r,
        )
        self._delivered = Counter(
            _counter_name(REFERRALS_DELIVERED),
            "Referrals an endpoint took",
            ["endpoint"],
            registry=r,
        )
        self._failed = Counter(
            _counter_name(REFERRALS_FAILED),
            "Referrals dead-lettered (refused, or retries exhausted)",
            ["endpoint"],
            registry=r,
        )
        self._latency = Histogram(
            DELIVERY_SECONDS,
            "Duration of each attempt to hand a referral to an endpoint, whatever its result",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            _counter_name(RETRIES),
            "Messages sent to a delayed-retry queue, by stage and endpoint",
            ["stage", "endpoint"],
            registry=r,
        )
        self._dead_letters = Counter(
            _counter_name(DEAD_LETTERS),
            "Messages dead-lettered by the pipeline, by stage and endpoint",
            ["stage", "endpoint"],
            registry=r,
        )
        self._depth = Gauge(
            QUEUE_DEPTH,
            "Messages ready on each hub queue, by passive declare (unacked ones not counted)",
            ["queue"],
            registry=r,
        )
        self._age = Gauge(
            QUEUE_OLDEST_AGE,
            # docs/operations.md, "Queue depth and age", says how each is found.
            "Age in seconds of the oldest message waiting on each hub queue. hub.deliver.*: "
            "the oldest referral still queued in the ledger, counted from its alert's "
            "arrival (0 if none). Other queues: an upper bound, from the messages the hub took "
            "off the queue and when it was last seen empty (0 if none ready; absent while "
            "unknown). Not reported for hub.retry.*",
            ["queue"],
            registry=r,
        )
        self._circuit = Gauge(
            CIRCUIT_STATE,
            "1 for each endpoint's current circuit-breaker state, 0 for its others",
            ["endpoint", "state"],
            registry=r,
        )
        self._overdue = Gauge(
            OVERDUE_REFERRALS, "Referrals past their response deadline", registry=r
        )
        self._failed_messages = Gauge(
            FAILED_MESSAGES,
            "Messages in the failed-message store waiting for an operator",
            registry=r,
        )
        self._restarts = Counter(
            _counter_name(THREAD_RESTARTS),
            "Consumer and watcher threads the supervisor found dead and restarted, by thread",
            ["thread"],
            registry=r,
        )
        self._report_refreshes = Counter(
            _counter_name(REPORT_REFRESHES),
            "Rounds of the hub's pathway-report summary refresh, by result (done, skipped: "
            "another refresh was running, failed)",
            ["result"],
            registry=r,
        )
        self._states: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def alert_received(self, source_kind: str) -> None:
        self._received.labels(source_kind=source_kind).inc()

    def alert_rejected(self, source_kind: str) -> None:
        self._rejected.labels(source_kind=source_kind).inc()

    def referral_delivered(self, endpoint: str) -> None:
        self._delivered.labels(endpoint=endpoint).inc()

    def referral_failed(self, endpoint: str) -> None:
        self._failed.labels(endpoint=endpoint).inc()

    def delivery_attempt(self, endpoint: str, seconds: float) -> None:
        self._latency.labels(endpoint=endpoint).observe(max(0.0, seconds))

    def retry_scheduled(self, stage: str, endpoint: str | None) -> None:
        self._retries.labels(stage=stage, endpoint=endpoint or "").inc()

    def dead_lettered(self, stage: str, endpoint: str | None) -> None:
        self._dead_letters.labels(stage=stage, endpoint=endpoint or "").inc()

    def queue_depth(self, queue: str, depth: int) -> None:
        self._depth.labels(queue=queue).set(depth)

    def queue_oldest_age(self, queue: str, seconds: float | None) -> None:
        if seconds is None:
            try:
                self._age.remove(queue)
            except KeyError:
                pass  # never reported
            return
        self._age.labels(queue=queue).set(max(0.0, seconds))

    def circuit_state(self, endpoint: str, state: str) -> None:
        # One series per state seen, so `hub_circuit_state{state="open"} == 1` reads plainly.
        with self._lock:
            seen = self._states.setdefault(endpoint, set())
            seen.add(state)
            for known in seen:
                self._circuit.labels(endpoint=endpoint, state=known).set(int(known == state))

    def overdue_referrals(self, count: int) -> None:
        self._overdue.set(count)

    def failed_messages(self, count: int) -> None:
        self._failed_messages.set(count)

    def thread_restarted(self, thread: str) -> None:
        self._restarts.labels(thread=thread).inc()

    def report_refresh(self, result: str) -> None:
        self._report_refreshes.labels(result=result).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
