"""Reading dead letters off `hub.dlq.<stage>` into the failed-message store.

`failure_from_envelope` is pure: the reasons the pipeline wrote as headers (or, for a message
the broker itself dead-lettered, its x-death headers) become one `NewFailure`. The ingester
commits the row before it acks; if the store is away the message stays on its queue.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from hub.adapters.rabbitmq import (
    ALERT_QUEUES,
    OUTCOMES_INBOUND_QUEUE,
    STAGES,
    WORK_EXCHANGE,
    Disposition,
    delivery_queue,
    dlq_queue,
)
from hub.errors import TransientError
from hub.log import get_logger
from hub.pipeline import (
    H_ALERT_ID,
    H_ATTEMPTS,
    H_ENDPOINT,
    H_ERROR,
    H_ERROR_CLASS,
    H_FIRST_FAILURE,
    H_HTTP_STATUS,
    H_LAST_FAILURE,
    H_OPERATION_OUTCOME,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    Clock,
    utc_now,
)
from hub.ports import Envelope, FailedStore, NewFailure
from hub.provenance import Provenance

log = get_logger("hub.dead_letters")

DLQ_QUEUES = {stage: dlq_queue(stage) for stage in STAGES}  # stage → hub.dlq.<stage>

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.I)  # hashes, trace ids
_DIGITS = re.compile(r"\d+")


def normalise_error(message: str) -> str:
    """The error with what varies per message removed (uuids, hex ids, numbers), so one
    outage reads as one error: "timeout after 10.2 s on 3f2a…" ≡ "timeout after 9.8 s on 77c1…"."""
    text = _UUID.sub("<uuid>", message)
    text = _HEX.sub("<hex>", text)
    text = _DIGITS.sub("<n>", text)
    return " ".join(text.split())


def group_key(*, stage: str, endpoint: str | None, error_class: str, error: str) -> str:
    parts = [stage, endpoint or "", error_class, normalise_error(error)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def json_safe(value: Any) -> Any:
    """AMQP header values as JSON: times become ISO strings, bytes text, tables dicts."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def origin_queue_allowed(stage: str, queue: str | None, endpoints: Collection[str] | None) -> bool:
    """Whether a message that failed in `stage` can have come from `queue`: intake reads only
    the alert queues, delivery only hub.deliver.<a configured endpoint> (any, when `endpoints`
    is None), the outcome stage only hub.outcomes.inbound. Replays are checked by it too."""
    if not queue:
        return False
    if stage == "intake":
        return queue in ALERT_QUEUES.values()
    if stage == "outcome":
        return queue == OUTCOMES_INBOUND_QUEUE
    if stage == "deliver":
        prefix = delivery_queue("")
        name = queue[len(prefix) :] if queue.startswith(prefix) else ""
        return bool(name) and (endpoints is None or name in endpoints)
    return False


def failure_from_envelope(
    envelope: Envelope,
    *,
    stage: str,
    now: datetime,
    endpoints: Collection[str] | None = None,
) -> NewFailure:
    """What one dead letter says about itself. Never raises on odd headers: a dead letter
    that cannot be described still has to be kept.

    Origin facts are the hub's own only: `stage` is the dead-letter queue's (never a header);
    the `x-hub-*` headers are there only if the hub sealed them (DeadLetterIngester admits
    the envelope first), and the queue they name must be one the stage reads; for a message
    the broker dead-lettered, the queue of its newest x-death entry (x-first-death-*, and an
    x-death entry's exchange and routing keys, may be a publisher's). Anything else is recorded
    as unknown (None)."""
    headers = json_safe(dict(envelope.headers))
    deaths = headers.get("x-death") if isinstance(headers.get("x-death"), list) else []
    death: Mapping[str, Any] = deaths[0] if deaths and isinstance(deaths[0], Mapping) else {}
    pipeline_wrote = H_ERROR_CLASS in headers
    if pipeline_wrote:
        error_class = _text(headers.get(H_ERROR_CLASS)) or "Unknown"
        error = _text(headers.get(H_ERROR)) or ""
    else:  # the broker dead-lettered it itself (x-delivery-limit: a worker kept crashing)
        why = _text(death.get("reason")) or "unknown"
        error_class = "BrokerDeadLettered"
        error = f"dead-lettered by the broker ({why})"
    hub_queue = _text(headers.get(H_ORIGINAL_QUEUE))
    death_queue = _text(death.get("queue"))
    if origin_queue_allowed(stage, hub_queue, endpoints):
        original_queue = hub_queue
        original_exchange = _text(headers.get(H_ORIGINAL_EXCHANGE))
        original_routing_key = _text(headers.get(H_ORIGINAL_ROUTING_KEY))
        attempts = _int(headers.get(H_ATTEMPTS))
    elif hub_queue is None and origin_queue_allowed(stage, death_queue, endpoints):
        # RabbitMQ (3.10, checked) updates a publisher's own x-death entry when its queue and
        # reason match, keeping that entry's exchange and routing keys: only the queue is the
        # broker's. The hub's own queues are reached through hub.work under their own name; an
        # alert's justice routing key cannot be known from here (its replay is refused).
        original_queue = death_queue
        original_exchange = WORK_EXCHANGE if stage != "intake" else None
        original_routing_key = death_queue if stage != "intake" else None
        attempts = _int(death.get("count"))
    else:
        original_queue = original_exchange = original_routing_key = None
        attempts = None
    endpoint = _text(headers.get(H_ENDPOINT))
    if stage == "deliver" and original_queue != (delivery_queue(endpoint) if endpoint else None):
        # Only the queue's own endpoint: a deliver failure's endpoint is where it was going.
        endpoint = original_queue[len(delivery_queue("")) :] if original_queue else None
    return NewFailure(
        fingerprint=fingerprint(envelope.body, headers, envelope.message_id),
        stage=stage,
        endpoint=endpoint,
        error_class=error_class,
        error_message=error,
        attempts=attempts or 1,
        first_failure=_time(headers.get(H_FIRST_FAILURE)) or now,
        last_failure=_time(headers.get(H_LAST_FAILURE)) or now,
        original_exchange=original_exchange,
        original_routing_key=original_routing_key,
        original_queue=original_queue,
        http_status=_int(headers.get(H_HTTP_STATUS)),
        operation_outcome=_text(headers.get(H_OPERATION_OUTCOME)),
        message_id=envelope.message_id,
        alert_id=_text(headers.get(H_ALERT_ID)) or _alert_id_from(envelope),
        content_type=envelope.content_type,
        body=envelope.body,
        headers=headers,
        group_key=group_key(stage=stage, endpoint=endpoint, error_class=error_class, error=error),
    )


def fingerprint(body: bytes, headers: Mapping[str, Any], message_id: str | None) -> str:
    # Headers carry the failure time and attempt count, so the same message failing again
    # after a replay is a new failure; the same dead letter redelivered is not.
    digest = hashlib.sha256(body)
    digest.update(json.dumps(headers, sort_keys=True, default=str).encode())
    digest.update((message_id or "").encode())
    return digest.hexdigest()


class DeadLetterIngester:
    """A queue handler for `hub.dlq.<stage>`: store, then ack; store away, requeue.

    `x-hub-*` headers the hub did not seal are removed before anything is read or stored
    (`provenance`); `endpoints` are the configured ones a deliver failure may name."""

    def __init__(
        self,
        store: FailedStore,
        *,
        stage: str,
        provenance: Provenance,
        endpoints: Collection[str] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.stage = stage
        self.provenance = provenance
        self.endpoints = endpoints
        self.clock = clock

    def __call__(self, envelope: Envelope) -> Disposition:
        failure = failure_from_envelope(
            self.provenance.admit(envelope),
            stage=self.stage,
            now=self.clock(),
            endpoints=self.endpoints,
        )
        try:
            new, failed_id = self.store.add(failure, at=self.clock())
        except TransientError as exc:
            log.warning("dead_letter_not_stored", stage=self.stage, reason=exc.message)
            return Disposition.REQUEUE
        log.info(
            "dead_letter_stored" if new else "dead_letter_already_stored",
            failed_id=failed_id,
            stage=failure.stage,
            endpoint=failure.endpoint,
            error_class=failure.error_class,
            alert_id=failure.alert_id,
        )
        return Disposition.ACK


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _first(value: Any) -> str | None:
    return str(value[0]) if isinstance(value, list) and value else None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _alert_id_from(envelope: Envelope) -> str | None:
    """An intake dead letter carries no alert-id header: the alert's own field (or the AMQP
    message_id a publisher must set to it) says which alert it was."""
    try:
        doc = json.loads(envelope.body)
    except (ValueError, UnicodeDecodeError):
        return envelope.message_id
    if isinstance(doc, dict) and isinstance(doc.get("alert_id"), str):
        return str(doc["alert_id"])
    return envelope.message_id
