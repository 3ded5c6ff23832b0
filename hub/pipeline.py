"""The one place that decides what happens to a consumed message: ack, retry later, or
dead-letter with its reasons. Stages do the work and raise hub errors; this module turns
each error branch into the matching broker action.

`except Exception` lives here once: an unexpected error becomes a dead letter with its
traceback class recorded, never a crashed worker.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from hub.adapters.rabbitmq import (
    DLQ_EXCHANGE,
    Disposition,
    retry_exchange,
)
from hub.errors import HubError, InvalidMessage, PermanentError, TransientError
from hub.log import bind_correlation, get_logger
from hub.ports import Envelope, Metrics, Publisher
from hub.provenance import Provenance

log = get_logger("hub.pipeline")

Clock = Callable[[], datetime]

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
# The AMQP user_id RabbitMQ verified when the message first came in from justice.alerts: a retry
# or replay comes back through hub.work, published by the hub, so intake reads it from here.
H_ORIGINAL_USER_ID = "x-hub-original-user-id"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delayed redelivery through broker TTL queues: the n-th failure waits delays[n-1]
    (the last delay repeats) until `deadline` after the first failure, then dead-letters."""

    delays: Sequence[int] = (10, 60, 600, 3600, 21600)
    deadline: timedelta = timedelta(hours=72)

    def next_delay(
        self,
        *,
        failures: int,
        first_failure: datetime,
        now: datetime,
        retry_after: float | None = None,
    ) -> int | None:
        """Seconds to wait before the next attempt, or None when the deadline has passed."""
        delay = self.delays[min(failures, len(self.delays)) - 1]
        if retry_after is not None:
            # Honour Retry-After: the shortest configured delay that is at least as long.
            delay = next((d for d in sorted(self.delays) if d >= retry_after), max(self.delays))
        if now + timedelta(seconds=delay) - first_failure > self.deadline:
            return None
        return delay


class Stage(Protocol):
    name: str  # intake | deliver | outcome

    def process(self, envelope: Envelope) -> None:
        """Do the stage's work; return normally only when what it produced is durable."""
        ...

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        """The message is invalid: tell whoever must hear (e.g. a rejected outcome)."""
        ...

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        """The message is going to the dead-letter queue: record it (e.g. ledger state)."""
        ...


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
    return default


class Dispatcher:
    """Wraps a stage as a queue handler: Envelope in, Disposition out."""

    def __init__(
        self,
        stage: Stage,
        *,
        publisher: Publisher,
        retry: RetryPolicy,
        provenance: Provenance,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        """`provenance` decides which `x-hub-*` headers are the hub's own; the rest are
        removed before the stage, or this class, reads any header."""
        self.stage = stage
        self.provenance = provenance
        self.publisher = publisher
        self.retry = retry
        self.clock = clock
        self.metrics = metrics

    def __call__(self, envelope: Envelope) -> Disposition:
        envelope = self.provenance.admit(envelope)
        correlation = str(envelope.headers.get(H_ALERT_ID) or envelope.message_id or "")
        bind_correlation(correlation or None)
        try:
            self.stage.process(envelope)
            return Disposition.ACK
        except InvalidMessage as invalid:
            return self._guard(partial(self._reject, envelope, invalid))
        except TransientError as transient:
            return self._guard(partial(self._retry_or_dead_letter, envelope, transient))
        except PermanentError as permanent:
            return self._guard(partial(self._dead_letter, envelope, permanent))
        except Exception as exc:  # noqa: BLE001 - the pipeline's single outer boundary
            crash = PermanentError(
                f"unexpected {type(exc).__name__} in stage {self.stage.name}: "
                + "".join(traceback.format_exception_only(exc)).strip()[:500],
                stage=self.stage.name,
            )
            log.error(
                "stage_crashed",
                stage=self.stage.name,
                error_class=type(exc).__name__,
                where=_where(exc),
            )
            return self._guard(
                partial(self._dead_letter, envelope, crash, error_class="Unexpected")
            )

    def _guard(self, action: Callable[[], None]) -> Disposition:
        """Dead-lettering or scheduling a retry publishes; if that cannot be done durably,
        the message goes back to its queue instead of being lost."""
        try:
            action()
            return Disposition.ACK
        except TransientError as exc:
            log.warning("disposition_deferred", stage=self.stage.name, reason=exc.message)
            return Disposition.REQUEUE

    def _reject(self, envelope: Envelope, error: InvalidMessage) -> None:
        self._dead_letter(envelope, error)
        self.stage.on_rejected(envelope, error)

    def _retry_or_dead_letter(self, envelope: Envelope, error: TransientError) -> None:
        now = self.clock()
        failures = int(envelope.headers.get(H_ATTEMPTS, 0) or 0) + 1
        first = _parse_time(envelope.headers.get(H_FIRST_FAILURE), now)
        delay = self.retry.next_delay(
            failures=failures, first_failure=first, now=now, retry_after=error.retry_after
        )
        if delay is None:
            expired = PermanentError(
                f"gave up after {failures} attempts over {self.retry.deadline}: {error.message}",
                stage=error.stage,
                endpoint=error.endpoint,
                status=error.status,
            )
            self._dead_letter(envelope, expired, error_class="RetriesExhausted")
            return
        headers = self._failure_headers(envelope, error, failures=failures, first=first, now=now)
        self.publisher.publish(
            exchange=retry_exchange(delay),
            routing_key=envelope.queue,  # the TTL queue dead-letters back to this queue
            body=envelope.body,
            headers=headers,
            message_id=envelope.message_id,
            content_type=envelope.content_type or "application/json",
        )
        if self.metrics:
            self.metrics.retry_scheduled(self.stage.name, error.endpoint)
        log.info(
            "retry_scheduled",
            stage=self.stage.name,
            endpoint=error.endpoint,
            attempt=failures,
            delay_s=delay,
            reason=error.message,
        )

    def _dead_letter(
        self, envelope: Envelope, error: HubError, *, error_class: str | None = None
    ) -> None:
        now = self.clock()
        failures = int(envelope.headers.get(H_ATTEMPTS, 0) or 0) + 1
        first = _parse_time(envelope.headers.get(H_FIRST_FAILURE), now)
        headers = self._failure_headers(envelope, error, failures=failures, first=first, now=now)
        if error_class:
            headers[H_ERROR_CLASS] = error_class
        self.stage.on_dead_letter(envelope, error)
        self.publisher.publish(
            exchange=DLQ_EXCHANGE,
            routing_key=self.stage.name,
            body=envelope.body,
            headers=headers,
            message_id=envelope.message_id,
            content_type=envelope.content_type or "application/octet-stream",
        )
        if self.metrics:
            self.metrics.dead_lettered(self.stage.name, error.endpoint)
        log.warning(
            "message_dead_lettered",
            stage=self.stage.name,
            endpoint=error.endpoint,
            error_class=headers[H_ERROR_CLASS],
            attempts=failures,
            reason=error.message,
        )

    def _failure_headers(
        self,
        envelope: Envelope,
        error: HubError,
        *,
        failures: int,
        first: datetime,
        now: datetime,
    ) -> dict[str, Any]:
        headers: dict[str, Any] = {
            k: v for k, v in envelope.headers.items() if not str(k).startswith("x-death")
        }
        headers.setdefault(H_ORIGINAL_EXCHANGE, envelope.exchange)
        headers.setdefault(H_ORIGINAL_ROUTING_KEY, envelope.routing_key)
        headers.setdefault(H_ORIGINAL_QUEUE, envelope.queue)
        if envelope.user_id:
            headers.setdefault(H_ORIGINAL_USER_ID, envelope.user_id)
        headers.update(
            {
                H_ATTEMPTS: failures,
                H_FIRST_FAILURE: _iso(first),
                H_LAST_FAILURE: _iso(now),
                H_ERROR_CLASS: type(error).__name__,
                H_ERROR: error.message[:2000],
                H_STAGE: self.stage.name,
            }
        )
        if error.endpoint:
            headers[H_ENDPOINT] = error.endpoint
        if error.status is not None:
            headers[H_HTTP_STATUS] = error.status
        if isinstance(error, PermanentError) and error.operation_outcome:
            headers[H_OPERATION_OUTCOME] = error.operation_outcome[:4000]
        if isinstance(error, InvalidMessage):
            headers[H_PROBLEMS] = json.dumps([p.as_dict() for p in error.problems])
        return headers


def _where(exc: BaseException) -> str:
    """File and line of the innermost frame: enough to find the bug, no values."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"


def header_str(headers: Mapping[str, Any], key: str) -> str | None:
    value = headers.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else None
