"""Reading dead letters into the failed-message store (hub.dead_letters), on the in-memory store:
errors group by what they say rather than the ids they quote, a redelivered dead letter is one
row and acked again, and a store that is away leaves the message on its queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from hub.adapters.memory_failed_store import MemoryFailedStore
from hub.adapters.rabbitmq import Disposition
from hub.dead_letters import DeadLetterIngester, normalise_error
from hub.errors import TransientError
from hub.ports import Envelope, NewFailure
from tests.fixtures.dead_letters import PROVENANCE, T0, dead_letter

pytestmark = pytest.mark.unit


def test_errors_are_normalised_for_grouping() -> None:
    a = normalise_error("timeout after 10 s on 3f2a9c1e77 for a1b2c3d4-0000-4000-8000-00000000abcd")
    b = normalise_error("timeout after 9 s on 77c1d0ee42 for 11111111-2222-4333-8444-555555555555")
    assert a == b == "timeout after <n> s on <hex> for <uuid>"


def test_the_ingester_stores_a_dead_letter_once_and_acks_each_delivery_of_it() -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage="deliver", provenance=PROVENANCE, clock=lambda: T0)
    envelope = dead_letter()

    assert ingester(envelope) is Disposition.ACK
    assert ingester(envelope) is Disposition.ACK  # the first ack was lost: redelivered

    (message,) = store.list()
    assert message.failure.body == envelope.body and message.received_at == T0


def test_the_ingester_leaves_a_dead_letter_queued_while_the_store_is_away() -> None:
    class AwayStore:
        def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
            raise TransientError("database away")

    ingester = DeadLetterIngester(AwayStore(), stage="deliver", provenance=PROVENANCE)  # type: ignore[arg-type]

    assert ingester(dead_letter()) is Disposition.REQUEUE


# -- origin: only what the hub wrote ------------------------------------------------------------


def ingest(envelope: Envelope, *, stage: str, endpoints: tuple[str, ...] = ("wy-ld",)) -> Any:
    store = MemoryFailedStore()
    DeadLetterIngester(
        store, stage=stage, provenance=PROVENANCE, endpoints=endpoints, clock=lambda: T0
    )(envelope)
    (message,) = store.list()
    return message.failure


def test_the_stage_is_the_dead_letter_queues_never_a_header() -> None:
    envelope = dead_letter(stage="outcome")  # sealed, but it was read off hub.dlq.deliver

    assert ingest(envelope, stage="deliver").stage == "deliver"


def test_unsealed_origin_headers_are_recorded_as_unknown_and_not_stored() -> None:
    envelope = dead_letter(sealed=False, queue="hub.outcomes.inbound")

    f = ingest(envelope, stage="deliver")

    assert (f.original_queue, f.original_routing_key, f.original_exchange) == (None, None, None)
    assert f.endpoint is None and f.attempts == 1 and f.error_class == "BrokerDeadLettered"
    assert not any(k.startswith("x-hub-") for k in f.headers)


@pytest.mark.parametrize(
    ("stage", "queue"),
    [
        ("intake", "hub.outcomes.inbound"),
        ("intake", "hub.deliver.wy-ld"),
        ("deliver", "hub.alerts.custody"),
        ("deliver", "hub.deliver.not-configured"),
        ("outcome", "hub.alerts.court"),
        ("outcome", "hub.deliver.wy-ld"),
    ],
)
def test_a_queue_the_stage_never_reads_is_recorded_as_unknown(stage: str, queue: str) -> None:
    f = ingest(dead_letter(queue=queue, stage=stage), stage=stage)

    assert f.original_queue is None and f.original_routing_key is None


@pytest.mark.parametrize(
    ("stage", "queue"),
    [
        ("intake", "hub.alerts.custody"),
        ("intake", "hub.alerts.court"),
        ("deliver", "hub.deliver.wy-ld"),
        ("outcome", "hub.outcomes.inbound"),
    ],
)
def test_the_queue_the_hub_recorded_for_the_stage_is_kept(stage: str, queue: str) -> None:
    assert ingest(dead_letter(queue=queue, stage=stage), stage=stage).original_queue == queue


def test_a_deliver_failures_endpoint_is_its_queues() -> None:
    envelope = dead_letter(queue="hub.deliver.wy-ld", extra_headers={"x-hub-endpoint": "other"})

    assert ingest(envelope, stage="deliver", endpoints=("wy-ld", "other")).endpoint == "wy-ld"


@pytest.mark.parametrize(
    ("stage", "queue", "exchange", "routing_key"),
    [
        # an alert's justice routing key cannot be read from x-death (a publisher can set it)
        ("intake", "hub.alerts.custody", None, None),
        ("deliver", "hub.deliver.wy-ld", "hub.work", "hub.deliver.wy-ld"),
        ("outcome", "hub.outcomes.inbound", "hub.work", "hub.outcomes.inbound"),
    ],
)
def test_a_broker_dead_letter_takes_only_the_queue_from_the_brokers_newest_death(
    stage: str, queue: str, exchange: str | None, routing_key: str | None
) -> None:
    """RabbitMQ 3.10 keeps a publisher's x-death entry whose queue and reason match (its
    exchange and routing keys with it), so only the queue is the broker's."""
    death = {
        "queue": queue,
        "reason": "delivery_limit",
        "exchange": "justice.alerts",
        "routing-keys": ["court.LMC01.identification"],
        "count": 10,
    }
    envelope = Envelope(
        body=b"{}",
        queue=f"hub.dlq.{stage}",
        exchange="hub.dlq",
        routing_key=stage,
        headers={
            "x-death": [death, {**death, "queue": "hub.outcomes.inbound"}],
            # x-first-death-* keep a publisher's values if it sent them: never read
            "x-first-death-queue": "hub.outcomes.inbound",
            "x-first-death-exchange": "hub.work",
            "x-hub-original-queue": "hub.outcomes.inbound",  # unsealed: removed
        },
        message_id="m-1",
        user_id=None,
        content_type="application/json",
    )

    f = ingest(envelope, stage=stage)

    assert (f.original_queue, f.original_exchange, f.original_routing_key) == (
        queue,
        exchange,
        routing_key,
    )
    assert f.error_class == "BrokerDeadLettered"
    assert f.endpoint == ("wy-ld" if stage == "deliver" else None)
