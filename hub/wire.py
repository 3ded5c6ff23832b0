"""What the core needs to speak to the broker: exchange and queue names, header names,
the Disposition of a handled message and the Envelope it arrives in. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as a consumer received it, broker-neutral."""

    body: bytes
    queue: str
    exchange: str
    routing_key: str
    headers: Mapping[str, Any]
    message_id: str | None
    user_id: str | None
    content_type: str | None
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish, broker-neutral: what `Publisher.publish_many` takes."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str = "application/json"


# Exchange and queue names are part of the contract with the justice side and operators.
ALERTS_EXCHANGE = "justice.alerts"
OUTCOMES_EXCHANGE = "justice.outcomes"
WORK_EXCHANGE = "hub.work"  # direct: every hub queue is bound under its own name
DLQ_EXCHANGE = "hub.dlq"  # direct: routing key = stage
UNROUTED_EXCHANGE = "hub.unrouted"  # alternate exchange: nothing published disappears
UNROUTED_QUEUE = "hub.unrouted"
ALERT_QUEUES = {"custody": "hub.alerts.custody", "court": "hub.alerts.court"}
OUTCOMES_INBOUND_QUEUE = "hub.outcomes.inbound"
STAGES = ("intake", "deliver", "outcome")
# A message redelivered this many times (a worker crashed on it) is dead-lettered by the
# broker itself (quorum queue x-delivery-limit): poison never loops.
DELIVERY_LIMIT = 10


def delivery_queue(endpoint: str) -> str:
    return f"hub.deliver.{endpoint}"


def retry_exchange(delay_seconds: int) -> str:
    return f"hub.retry.{delay_seconds}s"


def dlq_queue(stage: str) -> str:
    return f"hub.dlq.{stage}"


class Disposition(StrEnum):
    ACK = "ack"  # what the message produced is durable
    REQUEUE = "requeue"  # nothing durable happened; let the broker redeliver


H_ATTEMPTS = "x-hub-attempts"
H_FIRST_FAILURE = "x-hub-first-failure"
H_LAST_FAILURE = "x-hub-last-failure"
H_ORIGINAL_EXCHANGE = "x-hub-original-exchange"
H_ORIGINAL_ROUTING_KEY = "x-hub-original-routing-key"
H_ORIGINAL_QUEUE = "x-hub-original-queue"
H_ERROR_CLASS = "x-hub-error-class"
H_ERROR = "x-hub-error"
H_STAGE = "x-hub-stage"
H_ENDPOINT = "x-hub-endpoint"
H_HTTP_STATUS = "x-hub-http-status"
H_OPERATION_OUTCOME = "x-hub-operation-outcome"
H_PROBLEMS = "x-hub-problems"
H_ALERT_ID = "x-hub-alert-id"


def header_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else None


H_BUNDLE_ID = "x-hub-bundle-id"
H_REQUEST_ID = "x-hub-request-id"


H_REPLAYED_FROM = "x-hub-replayed-from"


# The AMQP user_id RabbitMQ verified when the message first came in from justice.alerts: a retry
# or replay comes back through hub.work, published by the hub, so intake reads it from here.
H_ORIGINAL_USER_ID = "x-hub-original-user-id"
