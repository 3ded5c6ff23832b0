"""Builds the queue watch (hub.operations.queue_watch): where each queue's depth and
oldest-message age come from (docs/operations.md, "Queue depth and age") and the
failed-message store's size. Wiring only; the sampling is hub.operations'."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from hub.adapters.rabbitmq.connection import Broker, queue_depths
from hub.adapters.rabbitmq.management import head_message_ages
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.errors import TransientError
from hub.log import get_logger
from hub.operations.queue_ages import ObservedAges
from hub.operations.queue_watch import QueueWatch
from hub.ports import Metrics
from hub.ports_ledger import Ledger
from hub.records import FailedState
from hub.settings.types import Settings
from hub.wire import delivery_queue

log = get_logger("hub.bootstrap")


def build_queue_watch(
    settings: Settings,
    *,
    broker: Broker,
    ledger: Ledger,
    metrics: Metrics,
    queues: Sequence[str],
    observed: ObservedAges,
    failed_store: SqlFailedStore,
    interval: float,
) -> QueueWatch:
    """Sample `queues`' depths (passive declares), their ages and the failed-message count."""
    management_url = settings.management_url
    management = (
        # Vhost and credentials: the same on every node, so the first URL's.
        partial(head_message_ages, management_url, broker.urls[0], tls=settings.amqp_tls)
        if management_url
        else None
    )
    return QueueWatch(
        metrics=metrics,
        queues=queues,
        depths=partial(queue_depths, broker),
        ages=partial(queue_ages, management, ledger, list(settings.endpoints)),
        observed=observed,
        failed_count=partial(failed_store.count, FailedState.FAILED),
        interval=interval,
        wall_clock=time.time,
    )


def queue_ages(
    management: Callable[..., Mapping[str, float]] | None,
    ledger: Ledger,
    endpoints: Sequence[str],
    queues: Sequence[str],
    now: float,
) -> dict[str, float]:
    """Delivery queues from the ledger; others from the management API where the broker
    reports a head-message timestamp (RabbitMQ reports none for quorum queues, so for
    none of the hub's own today); the rest are left to the observed bound."""
    ages = ledger_ages(ledger, endpoints, queues, now)
    if management is not None:
        try:
            for queue, age in management(queues, now=now).items():
                ages.setdefault(queue, age)
        except TransientError as exc:
            log.warning("management_api_unavailable", reason=exc.message)
    return ages


def ledger_ages(
    ledger: Ledger, endpoints: Sequence[str], queues: Sequence[str], now: float
) -> dict[str, float]:
    """Each delivery queue's age is that of its endpoint's oldest referral the ledger still
    has as queued, since its alert reached the hub (retry waits included); 0 when there is
    none."""
    oldest = ledger.oldest_undelivered()
    return {
        queue: max(0.0, now - oldest[endpoint].timestamp()) if endpoint in oldest else 0.0
        for endpoint in endpoints
        if (queue := delivery_queue(endpoint)) in queues
    }


def age_observed(queue: str) -> bool:
    """Queues whose age is bounded from what the consumers take: not the delivery queues (the
    ledger ages their referrals) nor the retry queues (waiting is what they are for)."""
    return not queue.startswith((delivery_queue(""), "hub.retry."))
