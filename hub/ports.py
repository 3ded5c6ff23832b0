"""Small interfaces the pipeline depends on; adapters implement them, fakes sit beside them.

No implementation here and no third-party imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from hub.messages import Problem


class AlertState(StrEnum):
    RECEIVED = "received"  # validated and recorded, referrals not yet queued
    ROUTED = "routed"  # a delivery job per endpoint is durably queued
    REJECTED = "rejected"


class Seen(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same alert_id, same body
    CONFLICT = "conflict"  # same alert_id, different body


class ReferralState(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"  # dead-lettered (permanent, or retries exhausted)


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What the ledger keeps of an alert: ids and routing facts, never personal data."""

    alert_id: str
    body_sha256: str
    source_kind: str
    organisation_code: str
    reference: str
    pathway: str
    urgency: str
    consent_status: str
    share_with_justice: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AlertRecord:
    facts: AlertFacts
    state: AlertState
    rule: str | None


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    bundle_id: str
    alert_id: str
    endpoint: str
    request_id: str
    state: ReferralState = ReferralState.QUEUED
    attempts: int = 0
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    alert_id: str
    at: datetime
    stage: str  # intake | route | deliver | outcome
    event: str  # short snake_case verb, e.g. referral_delivered
    endpoint: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # ids, codes, counts: no personal data


class Ledger(Protocol):
    """Durable record of each alert's journey; what makes duplicates harmless."""

    def record_alert(self, facts: AlertFacts) -> tuple[Seen, AlertRecord]:
        """Insert the alert if new. Returns how it was seen and the stored record
        (for a duplicate or conflict, the one stored first)."""
        ...

    def record_rejection(
        self,
        *,
        alert_id: str,
        source_kind: str,
        organisation_code: str,
        reference: str | None,
        problems: Sequence[Problem],
        at: datetime,
    ) -> None:
        """Record an alert that failed validation (no row in the alerts table is required;
        a rejected alert_id that is later sent valid is a new alert)."""
        ...

    def mark_routed(
        self,
        alert_id: str,
        *,
        rule: str,
        referrals: Sequence[ReferralRecord],
        at: datetime,
        routed: bool = True,
    ) -> None:
        """Atomically: store the referrals (ignoring ones already stored) and, when `routed`,
        set state ROUTED. Intake calls it twice: routed=False before it publishes the delivery
        jobs (so a delivery worker always finds its referral), routed=True once every publish
        is confirmed (so a crash in between re-drives the alert instead of losing it)."""
        ...

    def get_alert(self, alert_id: str) -> AlertRecord | None: ...

    def get_referral(self, bundle_id: str) -> ReferralRecord | None: ...

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]: ...

    def record_attempt(
        self,
        bundle_id: str,
        *,
        at: datetime,
        result: str,  # delivered | transient | permanent
        http_status: int | None,
        detail: str,
        duration_ms: float,
    ) -> ReferralRecord:
        """Append one delivery attempt, bump attempts, and move state (delivered → DELIVERED,
        permanent → FAILED). Returns the updated referral."""
        ...

    def record_outcome(
        self,
        *,
        outcome_id: str,
        alert_id: str,
        bundle_id: str | None,
        status: str,
        at: datetime,
    ) -> bool:
        """Record an outcome sent to the justice side; False if this outcome_id is known."""
        ...

    def add_event(self, event: JourneyEvent) -> None: ...

    def journey(self, alert_id: str) -> list[JourneyEvent]:
        """Every event of one alert in time order."""
        ...

    def ping(self) -> None:
        """Raise TransientError when the store cannot be reached (readiness checks)."""
        ...

    def close(self) -> None: ...


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


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What a peer answered, for the delivery rule table (errors.py branches are decided
    from it in delivery.py)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float


class FhirClient(Protocol):
    def post_message(
        self, *, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        """POST; raise TransientError for connection refused/reset and timeouts."""
        ...
