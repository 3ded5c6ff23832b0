"""The one place that decides what happens to a consumed message: ack, retry later, or
dead-letter with its reasons. Stages do the work and raise hub errors; this module turns
each error branch into the matching broker action.

`except Exception` lives here once: an unexpected error becomes a dead letter with its
traceback class recorded, never a crashed worker. The boundary is total: it covers the stage,
its `on_rejected`/`on_dead_letter` handlers and every publish they make; whatever fails, the
message ends in a defined Disposition (parked on hub.dlq.<stage> with what could be recorded,
or requeued only when the broker or database is away).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from hub.contracts.identifiers import is_safe_id
from hub.errors import HubError, InvalidMessage, LedgerUnavailable, PermanentError, TransientError
from hub.failure_headers import attempts, failure_headers, first_failure
from hub.log import bind_correlation, get_logger
from hub.ports import Metrics, Publisher
from hub.security.provenance import Provenance, without_hub_headers
from hub.wire import (
    DLQ_EXCHANGE,
    H_ALERT_ID,
    H_ERROR_CLASS,
    Disposition,
    Envelope,
    Outgoing,
    retry_exchange,
)

log = get_logger("hub.pipeline")

Clock = Callable[[], datetime]


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

    # A stage may also offer `process_batch(envelopes, *, stopping) -> Sequence[bool |
    # Exception | None]`: the work of many messages done together; for each, True (done and
    # durable), the error `process` would have raised, False (left to `process`), or None
    # (not taken because `stopping()`: back to the queue) (Dispatcher.dispatch_batch).

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        """The message is invalid: tell whoever must hear (e.g. a rejected outcome)."""
        ...

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        """The message is going to the dead-letter queue: record it (e.g. ledger state)."""
        ...


def publish_each(publisher: Publisher, messages: Sequence[Outgoing]) -> None:
    """One confirmed publish after another: what a single message's work does (a batch's uses
    `publish_many`, with the confirms in flight together)."""
    for m in messages:
        publisher.publish(
            exchange=m.exchange,
            routing_key=m.routing_key,
            body=m.body,
            headers=m.headers,
            message_id=m.message_id,
            correlation_id=m.correlation_id,
            content_type=m.content_type,
        )


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
        envelope = self._admit(envelope)
        bind_correlation(_correlation(envelope))
        try:
            return self._dispose(envelope)
        except Exception as exc:  # noqa: BLE001 - the boundary is total: see _last_resort
            return self._last_resort(envelope, exc)

    def dispatch_batch(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool] = lambda: False
    ) -> list[Disposition]:
        """A batch, one Disposition each, in order. A stage with `process_batch` does what it
        can of the batch together (one transaction, confirms in flight together) and says, for
        each message, True (done and durable: acked), an error (what `process` would have
        raised: disposed of as such), or False (left to `process`). Each message it leaves, and
        every message if the batch fails as a whole, then goes through `__call__` alone, so one
        bad message is answered or parked alone and never holds up or loses the others. Once
        `stopping()`, what the stage did not take (None) and what it left goes back to the
        queue instead (a graceful stop finishes the work in hand, not the whole batch)."""
        process_batch = getattr(self.stage, "process_batch", None)
        if process_batch is None or len(envelopes) < 2:
            return [self(envelope) for envelope in envelopes]
        admitted = [self._admit(e) for e in envelopes]
        try:
            results: list[bool | Exception | None] = list(
                process_batch(admitted, stopping=stopping)
            )
        except LedgerUnavailable as away:
            # As for one message: back to the queue, all of it (the database watch holds
            # the consumers until it answers); one by one would wait on it once each.
            log.warning("ledger_unavailable", stage=self.stage.name, reason=away.message)
            return [Disposition.REQUEUE] * len(envelopes)
        except Exception as exc:  # noqa: BLE001 - the batch is a fast path: singles follow
            # Whatever it wrote is idempotent on a second pass (the ledger de-duplicates,
            # receivers de-duplicate by message id): each message now goes alone.
            log.warning(
                "batch_processed_singly",
                stage=self.stage.name,
                size=len(envelopes),
                error_class=type(exc).__name__,
            )
            results = [False] * len(envelopes)
        return [
            Disposition.REQUEUE
            if result is None or (result is False and stopping())
            else self._settle(original, envelope, result)
            for original, envelope, result in zip(envelopes, admitted, results, strict=True)
        ]

    def _settle(
        self, original: Envelope, envelope: Envelope, result: bool | Exception
    ) -> Disposition:
        if result is True:
            return Disposition.ACK
        if result is False:
            return self(original)
        bind_correlation(_correlation(envelope))
        try:
            return self._after_failure(envelope, result)
        except Exception as exc:  # noqa: BLE001 - the boundary is total: see _last_resort
            return self._last_resort(envelope, exc)

    def _admit(self, envelope: Envelope) -> Envelope:
        """The envelope with only the hub's own sealed headers (hub.security.provenance). A
        header the seal check cannot even read (RecursionError on an absurdly deep table) is
        not the hub's: every header in its namespace goes."""
        try:
            return self.provenance.admit(envelope)
        except (RecursionError, ValueError, TypeError):
            return dataclasses.replace(envelope, headers=without_hub_headers(envelope.headers))

    def _dispose(self, envelope: Envelope) -> Disposition:
        try:
            self.stage.process(envelope)
            return Disposition.ACK
        except Exception as exc:  # noqa: BLE001 - the pipeline's single outer boundary
            return self._after_failure(envelope, exc)

    def _after_failure(self, envelope: Envelope, exc: Exception) -> Disposition:
        """What the stage's error means for its message, by the branch of the error tree."""
        if isinstance(exc, InvalidMessage):
            return self._guard(partial(self._reject, envelope, exc))
        if isinstance(exc, LedgerUnavailable):
            # Nothing of it was committed: back to its queue unacked (a retry queue would be
            # an ack while the ledger is away). The hub holds its consumers until the database
            # answers again (hub.operations.database_watch), so the requeue does not spin.
            log.warning("ledger_unavailable", stage=self.stage.name, reason=exc.message)
            return Disposition.REQUEUE
        if isinstance(exc, TransientError):
            return self._guard(partial(self._retry_or_dead_letter, envelope, exc))
        if isinstance(exc, PermanentError):
            return self._guard(partial(self._dead_letter, envelope, exc))
        crash = PermanentError(
            f"unexpected {type(exc).__name__} in stage {self.stage.name}: "
            + "".join(traceback.format_exception_only(exc)).strip()[:500],
            stage=self.stage.name,
        )
        crash.__cause__ = exc  # on_dead_letter may name its class (never its values)
        log.error(
            "stage_crashed",
            stage=self.stage.name,
            error_class=type(exc).__name__,
            where=_where(exc),
        )
        return self._guard(partial(self._dead_letter, envelope, crash, error_class="Unexpected"))

    def _guard(self, action: Callable[[], None]) -> Disposition:
        """Dead-lettering or scheduling a retry publishes; if that cannot be done durably,
        the message goes back to its queue instead of being lost. Any other failure of the
        disposition itself goes on to `_last_resort`."""
        try:
            action()
            return Disposition.ACK
        except TransientError as exc:
            log.warning("disposition_deferred", stage=self.stage.name, reason=exc.message)
            return Disposition.REQUEUE

    def _last_resort(self, envelope: Envelope, exc: Exception) -> Disposition:
        """A handler (on_rejected, on_dead_letter) or a publish failed in a way nobody
        expected: park the message as it came, without the stage's handlers, saying where it
        broke. If even that cannot be done, requeue it: a message that keeps failing is bounded
        by its quorum queue's x-delivery-limit (the broker then dead-letters it to
        hub.dlq.<stage> itself), so a requeue here never loops forever."""
        log.error(
            "disposition_crashed",
            stage=self.stage.name,
            error_class=type(exc).__name__,
            where=_where(exc),
        )
        crash = PermanentError(
            f"unexpected {type(exc).__name__} while disposing of a message in stage "
            f"{self.stage.name} (at {_where(exc)})",
            stage=self.stage.name,
        )
        try:
            self._park(envelope, crash, error_class="Unexpected")
            return Disposition.ACK
        except Exception as again:  # noqa: BLE001 - the boundary's last line: requeue, bounded
            log.error(
                "message_requeued_after_crash",
                stage=self.stage.name,
                error_class=type(again).__name__,
            )
            return Disposition.REQUEUE

    def _reject(self, envelope: Envelope, error: InvalidMessage) -> None:
        self._dead_letter(envelope, error)
        try:
            self.stage.on_rejected(envelope, error)
        except TransientError:
            raise  # the broker or database is away: requeued, answered on the next delivery
        except Exception as exc:  # noqa: BLE001 - the boundary: the message is parked already
            # Only its `rejected` outcome is lost; the parked message says why it was refused.
            log.error(
                "rejection_not_sent",
                stage=self.stage.name,
                error_class=type(exc).__name__,
                where=_where(exc),
            )

    def _retry_or_dead_letter(self, envelope: Envelope, error: TransientError) -> None:
        now = self.clock()
        failures = attempts(envelope.headers) + 1
        first = first_failure(envelope.headers, now)
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
            expired.__cause__ = error
            self._dead_letter(envelope, expired, error_class="RetriesExhausted")
            return
        headers = failure_headers(
            envelope, error, stage=self.stage.name, failures=failures, first=first, now=now
        )
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
        self.stage.on_dead_letter(envelope, error)
        self._park(envelope, error, error_class=error_class)

    def _park(self, envelope: Envelope, error: HubError, *, error_class: str | None = None) -> None:
        """Publish the message to hub.dlq.<stage> with why it failed."""
        now = self.clock()
        failures = attempts(envelope.headers) + 1
        first = first_failure(envelope.headers, now)
        headers = failure_headers(
            envelope, error, stage=self.stage.name, failures=failures, first=first, now=now
        )
        if error_class:
            headers[H_ERROR_CLASS] = error_class
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


def _correlation(envelope: Envelope) -> str | None:
    """The id log lines carry: the hub's alert-id header or the message id, only when it is
    shaped like an id (anything else came from outside and is not logged)."""
    for value in (envelope.headers.get(H_ALERT_ID), envelope.message_id):
        if isinstance(value, str) and is_safe_id(value):
            return value
    return None


def _where(exc: BaseException) -> str:
    """File and line of the innermost frame: enough to find the bug, no values."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
