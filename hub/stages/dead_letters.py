"""Reading dead letters off `hub.dlq.<stage>` into the failed-message store.

`failure_from_envelope` is pure: the reasons the pipeline wrote as headers (or, for a message
the broker itself dead-lettered, its x-death headers) become one `NewFailure`. The ingester
commits the row before it acks; if the store is away the message stays on its queue.

Whatever a dead letter holds, it is kept: the body as the bytes that came, every id derived
from it bounded to its column and validated (otherwise left out), text cleaned of what the
database refuses, and a message whose headers still cannot be stored is kept as "Unreadable".
Nothing a dead letter contains stops the ingester.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from hub.contracts.identifiers import is_safe_id
from hub.contracts.peek import peek_identity
from hub.errors import PermanentError, TransientError
from hub.log import get_logger
from hub.pipeline import Clock, utc_now
from hub.ports import FailedStore
from hub.records import NewFailure
from hub.security.provenance import Provenance
from hub.store_rules.failed import COLUMN_LIMITS
from hub.wire import (
    ALERT_QUEUES,
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
    OUTCOMES_INBOUND_QUEUE,
    STAGES,
    WORK_EXCHANGE,
    Disposition,
    Envelope,
    delivery_queue,
    dlq_queue,
)

log = get_logger("hub.dead_letters")

DLQ_QUEUES = {stage: dlq_queue(stage) for stage in STAGES}  # stage → hub.dlq.<stage>

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.I)  # hashes, trace ids
_DIGITS = re.compile(r"\d+")
# An id the store keeps as one (endpoint, stage, message_id): printable ASCII, no spaces.
_ID = re.compile(r"[\x21-\x7e]+")
# A name (exchange, routing key, queue, content type, error class): printable ASCII.
_NAME = re.compile(r"[\x20-\x7e]+")
# What PostgreSQL cannot keep in text (NUL, unpaired surrogates) and what is no text at all.
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_MAX_HEADER_DEPTH = 16  # AMQP tables nested deeper are kept as a marker, not walked
_MAX_ERROR = 4000
_MAX_OPERATION_OUTCOME = 64000
UNREADABLE = "Unreadable"


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


def json_safe(value: Any, _depth: int = 0) -> Any:
    """AMQP header values as JSON the store can keep: times become ISO strings, bytes text,
    tables dicts; text loses NULs and unpaired surrogates (each becomes U+FFFD), numbers that
    JSON cannot carry become text, and nesting stops at a fixed depth."""
    if _depth > _MAX_HEADER_DEPTH:
        return "(nested too deeply)"
    if isinstance(value, Mapping):
        return {clean_text(str(k)): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, _depth + 1) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return clean_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and infinities are not JSON
    if value is None or isinstance(value, bool | int | float):
        return value
    return clean_text(str(value))


def clean_text(value: str) -> str:
    """`value` with every character a database or a terminal should not get replaced."""
    return _NOT_TEXT.sub("\ufffd", value)


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
        error_class = _name(headers.get(H_ERROR_CLASS), "error_class") or "Unknown"
        error = _free_text(headers.get(H_ERROR), _MAX_ERROR) or ""
    else:  # the broker dead-lettered it itself (x-delivery-limit: a worker kept crashing)
        why = _name(death.get("reason"), "error_class") or "unknown"
        error_class = "BrokerDeadLettered"
        error = f"dead-lettered by the broker ({why})"
    hub_queue = _name(headers.get(H_ORIGINAL_QUEUE), "original_queue")
    death_queue = _name(death.get("queue"), "original_queue")
    original_exchange: str | None
    original_routing_key: str | None
    if origin_queue_allowed(stage, hub_queue, endpoints):
        original_queue = hub_queue
        original_exchange = _name(headers.get(H_ORIGINAL_EXCHANGE), "original_exchange")
        original_routing_key = _name(headers.get(H_ORIGINAL_ROUTING_KEY), "original_routing_key")
        attempts = _count(headers.get(H_ATTEMPTS))
    elif hub_queue is None and origin_queue_allowed(stage, death_queue, endpoints):
        # RabbitMQ (3.10, checked) updates a publisher's own x-death entry when its queue and
        # reason match, keeping that entry's exchange and routing keys: only the queue is the
        # broker's. The hub's own queues are reached through hub.work under their own name; an
        # alert's justice routing key cannot be known from here (its replay is refused).
        original_queue = death_queue
        original_exchange = WORK_EXCHANGE if stage != "intake" else None
        original_routing_key = death_queue if stage != "intake" else None
        attempts = _count(death.get("count"))
    else:
        original_queue = original_exchange = original_routing_key = None
        attempts = None
    endpoint = _id(headers.get(H_ENDPOINT), "endpoint")
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
        http_status=_http_status(headers.get(H_HTTP_STATUS)),
        operation_outcome=_free_text(headers.get(H_OPERATION_OUTCOME), _MAX_OPERATION_OUTCOME),
        message_id=_id(envelope.message_id, "message_id"),
        alert_id=_alert_id(headers.get(H_ALERT_ID)) or _alert_id_from(envelope),
        content_type=_name(envelope.content_type, "content_type"),
        body=envelope.body,
        headers=headers,
        group_key=group_key(stage=stage, endpoint=endpoint, error_class=error_class, error=error),
    )


def unreadable_failure(envelope: Envelope, *, stage: str, now: datetime, why: str) -> NewFailure:
    """The least a dead letter can be kept as: its bytes, the stage whose queue it was on, and
    why nothing more could be read. `why` is an exception class name, never a value."""
    error = f"dead letter kept as unreadable: its headers could not be read or stored ({why})"
    digest = hashlib.sha256(bytes(envelope.body))
    digest.update(UNREADABLE.encode())
    digest.update(_id_bytes(envelope.message_id))
    return NewFailure(
        fingerprint=digest.hexdigest(),
        stage=stage,
        endpoint=None,
        error_class=UNREADABLE,
        error_message=error,
        attempts=1,
        first_failure=now,
        last_failure=now,
        original_exchange=None,
        original_routing_key=None,
        original_queue=None,
        http_status=None,
        operation_outcome=None,
        message_id=None,
        alert_id=None,
        content_type=None,
        body=bytes(envelope.body),
        headers={},
        group_key=group_key(stage=stage, endpoint=None, error_class=UNREADABLE, error=error),
    )


def fingerprint(body: bytes, headers: Mapping[str, Any], message_id: str | None) -> str:
    # Headers carry the failure time and attempt count, so the same message failing again
    # after a replay is a new failure; the same dead letter redelivered is not.
    digest = hashlib.sha256(body)
    digest.update(json.dumps(headers, sort_keys=True, default=str).encode())
    digest.update(_id_bytes(message_id))
    return digest.hexdigest()


def _id_bytes(message_id: str | None) -> bytes:
    # py-amqp decodes with surrogatepass: the same bytes back, whatever they were.
    return (message_id or "").encode("utf-8", "surrogatepass")


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
        now = self.clock()
        try:
            failure = failure_from_envelope(
                self.provenance.admit(envelope),
                stage=self.stage,
                now=now,
                endpoints=self.endpoints,
            )
            return self._store(failure, now=now)
        except (PermanentError, ValueError, TypeError) as exc:
            # What the store refused (a value its column cannot hold) or could not even be
            # serialised: keep the bytes under "Unreadable" rather than lose them.
            why = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - this consumer's boundary: a dead letter is kept whatever it holds
            why = type(exc).__name__
            log.error("dead_letter_unparsable", stage=self.stage, error_class=why)
        try:
            return self._store(
                unreadable_failure(envelope, stage=self.stage, now=now, why=why), now=now
            )
        except (PermanentError, ValueError, TypeError) as exc:
            # A bug of ours, not the message's: left on the queue, said loudly.
            log.error("dead_letter_not_storable", stage=self.stage, error_class=type(exc).__name__)
            return Disposition.REQUEUE

    def _store(self, failure: NewFailure, *, now: datetime) -> Disposition:
        try:
            new, failed_id = self.store.add(failure, at=now)
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


def _id(value: Any, column: str) -> str | None:
    """An id as its column can keep it, or None: printable ASCII without spaces, not too long."""
    text = _text(value)
    if text is None or len(text) > COLUMN_LIMITS[column] or not _ID.fullmatch(text):
        return None
    return text


def _name(value: Any, column: str) -> str | None:
    """A name (exchange, routing key, queue, content type, class) as its column can keep it."""
    text = _text(value)
    if text is None or len(text) > COLUMN_LIMITS[column] or not _NAME.fullmatch(text):
        return None
    return text


def _free_text(value: Any, limit: int) -> str | None:
    text = _text(value)
    return None if text is None else clean_text(text[:limit])


def _alert_id(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and is_safe_id(text) else None


def _first(value: Any) -> str | None:
    return str(value[0]) if isinstance(value, list) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, str) and len(value) > 20:
        return None  # no column holds a number that long (and int() would refuse it anyway)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _count(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and 0 < number < 2**31 else None


def _http_status(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and 100 <= number <= 599 else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC now: an offset that pushes a time past year 1 or 9999 fails here, not in the
        # store.
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _alert_id_from(envelope: Envelope) -> str | None:
    """An intake dead letter carries no alert-id header: the alert's own field (or the AMQP
    message_id a publisher must set to it) says which alert it was. The peek is bounded (size,
    nesting) and only a safe id comes back."""
    alert_id, _ = peek_identity(envelope.body)
    return alert_id or _alert_id(envelope.message_id)
