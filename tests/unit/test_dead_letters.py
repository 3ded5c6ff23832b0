"""Reading dead letters into the failed-message store (hub.dead_letters), on the in-memory store:
errors group by what they say rather than the ids they quote, a redelivered dead letter is one
row and acked again, and a store that is away leaves the message on its queue."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.errors import PermanentError, TransientError
from hub.records import NewFailure
from hub.stages.dead_letters import DeadLetterIngester, normalise_error
from hub.wire import Disposition, Envelope
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


# ---- nothing a dead letter holds stops the ingester ---------------------------------------


def intake_dead_letter(body: bytes, **changes: Any) -> Envelope:
    """A message intake rejected, as parked on hub.dlq.intake: no alert-id header."""
    envelope = dead_letter(stage="intake", body=body)
    headers = {k: v for k, v in envelope.headers.items() if k != "x-hub-alert-id"}
    return replace(envelope, **{"headers": headers, "message_id": None, **changes})


def test_a_deeply_nested_body_is_stored_and_acked_not_a_crash() -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage="intake", provenance=PROVENANCE, clock=lambda: T0)
    envelope = intake_dead_letter(b"[" * 50_000)

    assert ingester(envelope) is Disposition.ACK

    (row,) = store.list()
    assert row.failure.body == b"[" * 50_000 and row.failure.alert_id is None


@pytest.mark.parametrize(
    "body", [json.dumps({"alert_id": "a" * 129}).encode(), json.dumps({"alert_id": "a\x00b"})]
)
def test_an_alert_id_its_column_cannot_hold_is_left_out_and_the_message_kept(body: Any) -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage="intake", provenance=PROVENANCE, clock=lambda: T0)
    body = body if isinstance(body, bytes) else body.encode()

    assert ingester(intake_dead_letter(body, message_id="m" * 250)) is Disposition.ACK

    (row,) = store.list()
    assert row.failure.alert_id is None and row.failure.body == body


def test_hostile_header_values_are_bounded_and_the_message_kept() -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage="deliver", provenance=PROVENANCE, clock=lambda: T0)
    envelope = dead_letter()
    headers = {
        **envelope.headers,
        "x-hub-alert-id": "x" * 500,
        "x-hub-endpoint": "e" * 500,
        "x-hub-stage": "deliver\x00",
        "x-hub-error-class": "E" * 300,
        "x-hub-error": "boom\x00\ud800" * 5000,
        "x-hub-attempts": "9" * 5000,
        "x-hub-http-status": 10**12,
        "x-hub-first-failure": "0001-01-01T00:00:00+05:00",
        "x-hub-original-queue": "q" * 300,
        "x-hub-operation-outcome": "\x1b[2J",
        "x-odd": {"nested": [b"\xff\x00", float("nan"), "\udfff"]},
    }
    message_id = "\udcff" * 10
    # Sealed as the hub's own (as if the hub wrote them): bounded all the same.
    headers = PROVENANCE.seal(headers, body=envelope.body, message_id=message_id)

    assert ingester(replace(envelope, headers=headers, message_id=message_id)) is Disposition.ACK

    (row,) = store.list()
    stored = row.failure
    assert (stored.alert_id, stored.endpoint, stored.message_id) == (None, None, None)
    assert stored.stage == "deliver" and stored.error_class == "Unknown"
    assert stored.attempts == 1 and stored.http_status is None and stored.original_queue is None
    assert stored.first_failure == T0 and len(stored.error_message) <= 4000
    assert "\x00" not in stored.error_message and "\x1b" not in (stored.operation_outcome or "")


def test_a_dead_letter_the_store_refuses_is_kept_as_unreadable() -> None:
    class Refusing(MemoryFailedStore):
        def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
            if failure.error_class != "Unreadable":
                raise PermanentError("failed-message store refused add: value too long")
            return super().add(failure, at=at)

    store = Refusing()
    ingester = DeadLetterIngester(store, stage="deliver", provenance=PROVENANCE, clock=lambda: T0)
    envelope = dead_letter()

    assert ingester(envelope) is Disposition.ACK
    assert ingester(envelope) is Disposition.ACK  # redelivered: still one row

    (row,) = store.list()
    assert row.failure.error_class == "Unreadable" and row.failure.body == envelope.body
    assert row.failure.stage == "deliver"


header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.binary(max_size=64)
    | st.datetimes(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
hostile_headers = st.dictionaries(
    st.sampled_from(
        [
            "x-hub-alert-id",
            "x-hub-endpoint",
            "x-hub-stage",
            "x-hub-error-class",
            "x-hub-error",
            "x-hub-attempts",
            "x-hub-http-status",
            "x-hub-first-failure",
            "x-hub-last-failure",
            "x-hub-original-queue",
            "x-hub-original-exchange",
            "x-hub-original-routing-key",
            "x-hub-operation-outcome",
            "x-death",
            "x-first-death-reason",
            "x-first-death-queue",
        ]
    )
    | st.text(max_size=20),
    header_values,
    max_size=8,
)
hostile_bodies = st.binary(max_size=200) | st.integers(1, 30_000).map(lambda n: b"[" * n)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    body=hostile_bodies,
    headers=hostile_headers,
    message_id=st.none() | st.text(max_size=300),
    content_type=st.none() | st.text(max_size=300),
    stage=st.sampled_from(["intake", "deliver", "outcome"]),
)
def test_any_dead_letter_is_stored_and_acked(
    body: bytes,
    headers: dict[str, Any],
    message_id: str | None,
    content_type: str | None,
    stage: str,
) -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage=stage, provenance=PROVENANCE, clock=lambda: T0)
    envelope = Envelope(
        body=body,
        queue=f"hub.dlq.{stage}",
        exchange="hub.dlq",
        routing_key=stage,
        headers=headers,
        message_id=message_id,
        user_id=None,
        content_type=content_type,
    )

    assert ingester(envelope) is Disposition.ACK

    (row,) = store.list()
    assert row.failure.body == body and row.failure.error_class != "Unreadable"


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
