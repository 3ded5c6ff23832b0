"""Small interfaces the pipeline depends on; adapters implement them, fakes sit beside them. The
ledger's ports are in hub/ports_ledger.py.

No implementation here and no third-party imports.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from hub.messages import Alert, FollowUp, HubIdentity, Recipient
from hub.records import (
    AuditEntry,
    Delivered,
    DeliveryJob,
    FailedMessage,
    FailedState,
    FailureGroup,
    HttpResult,
    NewFailure,
    Payload,
)
from hub.wire import Outgoing


class Publisher(Protocol):
    """Publishes persistently and returns only once the broker has confirmed; raises
    hub.errors.TransientError otherwise. Never drops a message silently."""

    def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        content_type: str = "application/json",
    ) -> None: ...

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish them all with many confirms in flight, returning once every one is confirmed
        (TransientError otherwise: then any of them may or may not have been taken, and the
        caller publishes them all again; receivers de-duplicate by message id)."""
        ...


class FhirClient(Protocol):
    def post_message(
        self, *, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        """POST; raise TransientError for connection refused/reset and timeouts."""
        ...


# -- operations: the failed-message store ---------------------------------------------------


class FailedStore(Protocol):
    """Every dead-lettered message, kept until an operator acts; nothing expires."""

    def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
        """Store it unless its fingerprint is known. Returns (new, id)."""
        ...

    def get(self, failed_id: int) -> FailedMessage | None: ...

    def list(
        self,
        *,
        group: str | None = None,
        stage: str | None = None,
        endpoint: str | None = None,
        since: datetime | None = None,
        alert_id: str | None = None,
        state: FailedState | None = None,
    ) -> builtins.list[FailedMessage]: ...

    def groups(self) -> builtins.list[FailureGroup]: ...

    def mark_replayed(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]:
        """Move FAILED rows to REPLAYED and audit it, in one transaction; returns the ids moved."""
        ...

    def mark_discarded(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]: ...

    def audit(self, action: str, ids: Sequence[int], *, by: str, reason: str, at: datetime) -> None:
        """Append to the audit log (which has no update or delete)."""
        ...

    def audit_log(self, failed_id: int | None = None) -> builtins.list[AuditEntry]: ...

    def count(self, state: FailedState | None = None) -> int: ...

    def close(self) -> None: ...


# --- delivery: what intake renders and how each endpoint kind sends it -------------------------


class Render(Protocol):
    """Pure: the payload an endpoint kind is sent for one alert (FHIR Bundle, HL7 v2, JSON)."""

    def __call__(self, alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload: ...


class RenderFollowUp(Protocol):
    """Pure: the payload an endpoint kind is sent for an update, cancellation or consent update
    of a referral it already received."""

    def __call__(self, follow_up: FollowUp, recipient: Recipient, hub: HubIdentity) -> Payload: ...


class Sender(Protocol):
    """Makes one attempt to hand one referral to one endpoint (one implementation per endpoint
    kind). Returns Delivered, or raises TransientError (retry later) or PermanentError
    (dead-letter, with what the peer said in `operation_outcome`)."""

    def send(self, job: DeliveryJob) -> Delivered: ...


# --- metrics: what the hub counts and measures -------------------------------------------------


class Metrics(Protocol):
    """Counters, latencies and gauges for operators (hub/adapters/metrics.py exports them to
    Prometheus; hub/adapters/memory/metrics.py is the fake). Labels stay bounded: source kinds,
    endpoint names, stage names and queue names, never ids or personal data."""

    def alert_received(self, source_kind: str) -> None: ...

    def alert_rejected(self, source_kind: str) -> None: ...

    def referral_delivered(self, endpoint: str) -> None: ...

    def referral_failed(self, endpoint: str) -> None:
        """The referral was dead-lettered (refused, or retries exhausted)."""
        ...

    def delivery_attempt(self, endpoint: str, seconds: float) -> None:
        """How long one attempt to hand a referral to the endpoint took, whatever its result."""
        ...

    def retry_scheduled(self, stage: str, endpoint: str | None) -> None: ...

    def dead_lettered(self, stage: str, endpoint: str | None) -> None: ...

    def queue_depth(self, queue: str, depth: int) -> None: ...

    def queue_oldest_age(self, queue: str, seconds: float | None) -> None:
        """Age of the message at the head of the queue; None when unknown (series removed)."""
        ...

    def circuit_state(self, endpoint: str, state: str) -> None: ...

    def overdue_referrals(self, count: int) -> None: ...

    def failed_messages(self, count: int) -> None:
        """Messages in the failed-message store still waiting for an operator."""
        ...

    def thread_restarted(self, thread: str) -> None:
        """The supervisor found a consumer or watcher thread dead and restarted it."""
        ...

    def report_refresh(self, result: str) -> None:
        """A round of the hub's report-summary refresh ended: `done`, `skipped` (another
        refresh held the lock) or `failed`."""
        ...

    def exposition(self) -> tuple[bytes, str]:
        """The metrics as served on GET /metrics: (body, content type)."""
        ...


class RefreshDone(Protocol):
    """What one report-summary refresh did (hub.adapters.sql.report_summary.RefreshResult)."""

    @property
    def alerts(self) -> int: ...  # alerts (re)summarised

    @property
    def full(self) -> bool: ...

    @property
    def skipped(self) -> bool: ...  # another refresh was running: this one did nothing


class ReportRefresher(Protocol):
    """Brings the pathway report's summary tables up to date (SqlReportRefresher)."""

    def refresh(self, *, now: datetime) -> RefreshDone: ...

    def close(self) -> None: ...


class LiveSessionStore(Protocol):
    """The ops console's server-side sessions: a signed cookie is honoured only while the
    session id it names is live here (hub.security.console_guard.LiveSessions in memory,
    hub.adapters.sql.console_sessions.SqlLiveSessions in the ledger's database)."""

    def start(self, operator: str, *, now: float) -> str:
        """A new live session for `operator`; returns its id (secret: it goes in the cookie)."""
        ...

    def is_live(self, session_id: str | None, operator: str | None, *, now: float) -> bool: ...

    def end(self, session_id: str | None) -> None: ...

    def end_all(self, operator: str) -> None: ...
