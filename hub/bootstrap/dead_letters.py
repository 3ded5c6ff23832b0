"""Wires the parking of dead letters: one consumer per hub.dlq.<stage> queue, each committing
what it takes to the failed-message store (`hub failed …`) before acking it. Wiring only; what
is kept is hub.stages.dead_letters'."""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial

from hub.adapters.rabbitmq.connection import Broker
from hub.adapters.rabbitmq.consumer import QueueWorker
from hub.pipeline import Clock
from hub.ports import FailedStore
from hub.runtime import Runtime
from hub.security.provenance import Provenance
from hub.stages.dead_letters import DLQ_QUEUES, DeadLetterIngester


def start_parking(
    runtime: Runtime,
    *,
    broker: Broker,
    store: FailedStore,
    provenance: Provenance,
    endpoints: Collection[str],
    clock: Clock,
    prefetch: int,
    gate: Callable[[object], bool],
    on_take: Callable[[str, float | None], None],
) -> None:
    """No Dispatcher: storing a dead letter either happens or is retried."""
    for stage_name, dlq in DLQ_QUEUES.items():
        ingester = DeadLetterIngester(
            store, stage=stage_name, provenance=provenance, endpoints=endpoints, clock=clock
        )
        runtime.start_consumer(
            f"dlq-{stage_name}",
            partial(
                QueueWorker, broker, dlq, ingester, prefetch=prefetch, gate=gate, on_take=on_take
            ),
        )
