"""Ledger and failed-store records and their states: plain data the ports carry. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class AlertState(StrEnum):
    RECEIVED = "received"  # validated and recorded, referrals not yet queued
    ROUTED = "routed"  # a delivery job per endpoint is durably queued
    REJECTED = "rejected"
    # Validated, but the hub could not process it (a crash, or retries exhausted): no referral
    # was queued, its message is parked for an operator and the sender was told (`rejected`).
    PARKED = "parked"


class Seen(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"  # same alert_id, same body
    CONFLICT = "conflict"  # same alert_id, different body


class ReferralState(StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    FAILED = "failed"  # dead-lettered (permanent, or retries exhausted)
    # Never sent, on purpose: the alert was cancelled before this referral went out, or the
    # referral a follow-up is about never reached the service (so there is nothing to follow).
    WITHHELD = "withheld"


class ChangeState(StrEnum):
    RECEIVED = "received"  # validated and recorded, follow-up messages not yet all queued
    APPLIED = "applied"  # a follow-up message per endpoint is durably queued


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
    consent_recorded_at: datetime | None = None  # when the consent in force was recorded
    # hub.messages.VulnerabilityType codes, sorted and distinct (never the free-text detail)
    vulnerability_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertRecord:
    facts: AlertFacts
    state: AlertState
    rule: str | None
    cancelled: str | None = None  # the ServiceRequest status sent: revoked | entered-in-error


@dataclass(frozen=True, slots=True)
class ChangeFacts:
    """What the ledger keeps of a follow-up message (update, cancellation, consent update)."""

    change_id: str
    alert_id: str
    kind: str  # hub.messages.ChangeKind
    body_sha256: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    facts: ChangeFacts
    state: ChangeState


@dataclass(frozen=True, slots=True)
class ConsentFacts:
    status: str
    share_with_justice: bool
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    bundle_id: str
    alert_id: str
    endpoint: str
    request_id: str
    state: ReferralState = ReferralState.QUEUED
    attempts: int = 0
    delivered_at: datetime | None = None
    kind: str = "new"  # the referral itself, or a follow-up: hub.messages.ChangeKind
    change_id: str | None = None  # the follow-up message it carries
    created_at: datetime | None = None  # set by the ledger; orders one endpoint's messages
    due_at: datetime | None = None  # the referral's service level: an outcome is due by then
    overdue_at: datetime | None = None  # when the hub told the justice side it was overdue
    overdue_resolved_at: datetime | None = None  # when the service's first outcome came after


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    alert_id: str
    at: datetime
    stage: str  # intake | route | deliver | outcome
    event: str  # short snake_case verb, e.g. referral_delivered
    endpoint: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # ids, codes, counts: no personal data


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What a peer answered, for the delivery rule table (errors.py branches are decided
    from it in delivery.py)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float


class FailedState(StrEnum):
    FAILED = "failed"  # parked, waiting for an operator
    REPLAYED = "replayed"
    DISCARDED = "discarded"


@dataclass(frozen=True, slots=True)
class NewFailure:
    """One dead-lettered message as read off `hub.dlq.<stage>`: why it failed, and the
    original bytes and headers so it can be replayed exactly."""

    fingerprint: str  # sha256 of body + headers: a redelivered copy is the same failure
    stage: str
    endpoint: str | None
    error_class: str
    error_message: str
    attempts: int
    first_failure: datetime
    last_failure: datetime
    original_exchange: str | None
    original_routing_key: str | None
    original_queue: str | None
    http_status: int | None
    operation_outcome: str | None
    message_id: str | None
    alert_id: str | None
    content_type: str | None
    body: bytes
    headers: Mapping[str, Any]  # JSON-safe
    group_key: str


@dataclass(frozen=True, slots=True)
class FailedMessage:
    id: int
    failure: NewFailure
    state: FailedState
    received_at: datetime
    state_by: str | None = None
    state_reason: str | None = None
    state_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FailureGroup:
    group_key: str
    stage: str
    endpoint: str | None
    error_class: str
    sample_error: str
    count: int  # rows still in state FAILED
    total: int
    first_failure: datetime
    last_failure: datetime


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    action: str  # replay, discard, reveal; the console: sign_in, sign_out, login_locked…
    failed_id: int
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    bundle_id: str
    at: datetime
    result: str
    http_status: int | None
    reason_code: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class DeliveredAttempt:
    """One attempt that delivered a referral, as a batch records it."""

    bundle_id: str
    at: datetime
    http_status: int | None
    detail: str
    duration_ms: float


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    outcome_id: str
    alert_id: str
    bundle_id: str | None
    status: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Payload:
    """The exact bytes one endpoint is sent for one referral, rendered once at intake so every
    retry (and a dead letter) carries the same bytes."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class DeliveryJob:
    """One referral to send: its ledger record and the payload intake rendered for it."""

    referral: ReferralRecord
    body: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Delivered:
    """The endpoint took the referral. `answer` is for the ledger: ids and codes, no personal
    data (e.g. "HTTP 200", "ACK AA")."""

    answer: str
    status: int | None  # the HTTP status; None for kinds that do not speak HTTP
    elapsed_ms: float
