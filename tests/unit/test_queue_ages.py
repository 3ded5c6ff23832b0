"""The queue-age bound (hub.queue_ages) from the messages consumers take and the ready counts the
queue watch samples; when a taken message entered its queue (hub.adapters.rabbitmq); and how the
queue watch picks each queue's source. No services: times are plain numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from hub.adapters.memory.metrics import MemoryMetrics
from hub.adapters.rabbitmq.consumer import enqueued_no_earlier_than
from hub.errors import TransientError
from hub.operations.queue_ages import ObservedAges
from hub.operations.queue_watch import QueueWatch

pytestmark = pytest.mark.unit

Q = "hub.alerts.custody"


def every_queue(queue: str) -> bool:
    return True


def test_a_queue_with_nothing_ready_is_zero() -> None:
    ages = ObservedAges(every_queue)

    assert ages.estimate(Q, ready=0, at=1000.0) == 0.0


def test_messages_arriving_after_the_queue_was_seen_empty_are_at_most_that_old() -> None:
    ages = ObservedAges(every_queue)
    ages.estimate(Q, ready=0, at=1000.0)

    assert ages.estimate(Q, ready=1, at=1015.0) == 15.0
    assert ages.estimate(Q, ready=1, at=1030.0) == 30.0  # nobody takes it: it keeps growing


def test_what_was_taken_bounds_what_is_left_and_the_smaller_bound_wins() -> None:
    ages = ObservedAges(every_queue)
    ages.estimate(Q, ready=0, at=1000.0)
    ages.taken(Q, enqueued_at=1020.0)
    ages.taken(Q, enqueued_at=1010.0)  # a redelivered older one: the newest taken counts

    assert ages.estimate(Q, ready=5, at=1060.0) == 40.0  # 1060 - 1020 < 1060 - 1000
    ages.estimate(Q, ready=0, at=1070.0)
    assert ages.estimate(Q, ready=2, at=1085.0) == 15.0  # seen empty since: 1085 - 1070


def test_a_queue_full_since_the_hub_started_is_unknown_until_something_timed_is_taken() -> None:
    ages = ObservedAges(every_queue)

    assert ages.estimate(Q, ready=3, at=1000.0) is None
    ages.taken(Q, enqueued_at=None)  # no timestamp, never dead-lettered: says nothing
    assert ages.estimate(Q, ready=3, at=1010.0) is None
    ages.taken(Q, enqueued_at=900.0)
    assert ages.estimate(Q, ready=2, at=1010.0) == 110.0


def test_an_unknown_ready_count_is_unknown_and_does_not_count_as_empty() -> None:
    ages = ObservedAges(every_queue)

    assert ages.estimate(Q, ready=None, at=1000.0) is None
    assert ages.estimate(Q, ready=1, at=1010.0) is None


def test_a_publisher_clock_ahead_of_ours_gives_zero_not_a_negative_age() -> None:
    ages = ObservedAges(every_queue)
    ages.taken(Q, enqueued_at=1100.0)

    assert ages.estimate(Q, ready=1, at=1000.0) == 0.0


def test_queues_it_does_not_cover_are_ignored() -> None:
    ages = ObservedAges(lambda queue: not queue.startswith("hub.retry."))
    ages.taken("hub.retry.10s", enqueued_at=1.0)

    assert ages.estimate("hub.retry.10s", ready=0, at=1000.0) is None
    assert ages.covers("hub.dlq.intake") and not ages.covers("hub.retry.10s")


# --- when a taken message entered its queue -----------------------------------------------------


def test_a_message_entered_its_queue_no_earlier_than_its_amqp_timestamp() -> None:
    assert enqueued_no_earlier_than({"timestamp": 1_795_000_000}, {}) == 1_795_000_000.0
    naive_utc = datetime(2026, 11, 23, 9, 30)  # as py-amqp decodes an AMQP timestamp
    assert enqueued_no_earlier_than({"timestamp": naive_utc}, {}) == (
        naive_utc.replace(tzinfo=UTC).timestamp()
    )


def test_a_dead_lettered_message_entered_no_earlier_than_its_latest_death() -> None:
    deaths = [
        {"queue": "hub.retry.10s", "reason": "expired", "time": datetime(2026, 11, 23, 9, 31)},
        {"queue": "hub.deliver.wy-ld", "reason": "rejected", "time": datetime(2026, 11, 23, 9)},
    ]

    entered = enqueued_no_earlier_than({"timestamp": 1}, {"x-death": deaths})

    assert entered == datetime(2026, 11, 23, 9, 31, tzinfo=UTC).timestamp()


def test_a_message_with_no_time_at_all_entered_at_an_unknown_time() -> None:
    assert enqueued_no_earlier_than({}, {}) is None
    assert enqueued_no_earlier_than({"timestamp": 0}, {"x-death": "garbled"}) is None


# --- the queue watch: one source per queue ------------------------------------------------------


def watch(
    metrics: MemoryMetrics,
    *,
    depths: Mapping[str, int] | None,
    ages: Mapping[str, float] | None,
    observed: ObservedAges,
    at: float,
) -> QueueWatch:
    def read_depths(queues: Sequence[str]) -> Mapping[str, int]:
        if depths is None:
            raise TransientError("broker unreachable")
        return depths

    def read_ages(queues: Sequence[str], now: float) -> Mapping[str, float]:
        if ages is None:
            raise TransientError("database unreachable")
        return ages

    return QueueWatch(
        metrics=metrics,
        queues=["hub.deliver.wy-ld", Q, "hub.dlq.intake", "hub.retry.10s"],
        depths=read_depths,
        ages=read_ages,
        observed=observed,
        wall_clock=lambda: at,
    )


def age(metrics: MemoryMetrics, queue: str) -> float | None:
    return metrics.gauges.get(("queue_oldest_age", queue))


def test_the_watch_takes_the_ledger_for_delivery_queues_and_the_bound_for_the_rest() -> None:
    m = MemoryMetrics()
    observed = ObservedAges(lambda q: not q.startswith(("hub.deliver.", "hub.retry.")))
    ready = {"hub.deliver.wy-ld": 0, Q: 0, "hub.dlq.intake": 0, "hub.retry.10s": 4}
    watch(m, depths=ready, ages={"hub.deliver.wy-ld": 70.0}, observed=observed, at=1000).sample()

    waiting = {**ready, "hub.dlq.intake": 2}
    watch(m, depths=waiting, ages={"hub.deliver.wy-ld": 85.0}, observed=observed, at=1015).sample()

    assert age(m, "hub.deliver.wy-ld") == 85.0
    assert age(m, Q) == 0.0
    assert age(m, "hub.dlq.intake") == 15.0
    assert age(m, "hub.retry.10s") is None


def test_a_failed_source_leaves_its_queues_last_reading_and_the_bounds_carry_on() -> None:
    m = MemoryMetrics()
    observed = ObservedAges(lambda q: not q.startswith(("hub.deliver.", "hub.retry.")))
    ready = {"hub.deliver.wy-ld": 0, Q: 0, "hub.dlq.intake": 0}
    watch(m, depths=ready, ages={"hub.deliver.wy-ld": 70.0}, observed=observed, at=1000).sample()

    watch(m, depths={**ready, Q: 1}, ages=None, observed=observed, at=1020).sample()

    assert age(m, "hub.deliver.wy-ld") == 70.0
    assert age(m, Q) == 20.0
    watch(m, depths=None, ages=None, observed=observed, at=1030).sample()
    assert age(m, Q) is None  # no ready count: unknown, the series goes
