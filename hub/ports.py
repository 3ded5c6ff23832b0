"""Small interfaces the pipeline depends on; adapters implement them, fakes sit beside them.

No implementation here and no third-party imports.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from hub.messages import Alert, FollowUp, HubIdentity, Problem, Recipient
from hub.records import (
    AlertFacts,
    AlertRecord,
    AttemptRecord,
    AuditEntry,
    ChangeFacts,
    ChangeRecord,
    ConsentFacts,
    Delivered,
    DeliveredAttempt,
    DeliveryJob,
    FailedMessage,
    FailedState,
    FailureGroup,
    HttpResult,
    JourneyEvent,
    NewFailure,
    OutcomeRecord,
    Payload,
    ReferralRecord,
    Seen,
)
from hub.wire import Outgoing


class UnitOfWork(Protocol):
    """Many ledger calls made as one transaction: what a batch of messages writes is committed
    together, once, before any of them is acked."""

    def unit_of_work(self) -> AbstractContextManager[None]:
        """A block whose ledger calls (on this thread) commit together when it ends, or not at
        all if it raises; nested blocks join the outer one."""
        ...


class FollowUpLedger(UnitOfWork, Protocol):
    """What stages/follow_ups.py uses: a follow-up message recorded and applied to its alert."""

    def record_change(self, facts: ChangeFacts) -> tuple[Seen, ChangeRecord]:
        """Insert a follow-up message if new (KeyError if its alert is unknown). Returns how it
        was seen and the stored record (for a duplicate or conflict, the one stored first)."""
        ...

    def apply_change(
        self,
        change_id: str,
        *,
        referrals: Sequence[ReferralRecord],
        at: datetime,
        consent: ConsentFacts | None = None,
        cancelled: str | None = None,
        urgency: str | None = None,
        pathway: str | None = None,
        applied: bool = True,
    ) -> ConsentFacts | None:
        """Atomically apply a follow-up to its alert and store its messages (ignoring ones
        already stored): `consent` replaces the one in force as hub.transforms.consent_rules
        decides, a cancellation is kept once, urgency and pathway follow an update. `applied` as in
        mark_routed: False before the messages are published, True once all are confirmed.
        Returns the consent in force afterwards when `consent` is given (what the services
        must be told), else None."""
        ...

    def get_alert(self, alert_id: str) -> AlertRecord | None: ...

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]:
        """The alert's referrals and follow-up messages, by endpoint then creation order."""
        ...

    def add_event(self, event: JourneyEvent) -> None: ...


class IntakeLedger(FollowUpLedger, Protocol):
    """What stages/intake.py uses: alerts recorded, rejected, routed or parked (and, through
    FollowUpIntake, the follow-up part)."""

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

    def record_alerts(self, many: Sequence[AlertFacts]) -> list[tuple[Seen, AlertRecord]]:
        """record_alert for each (distinct ids), in order, in as few statements as the backend
        allows."""
        ...

    def mark_all_queued(
        self, routed: Sequence[tuple[str, str, Sequence[ReferralRecord]]], *, at: datetime
    ) -> None:
        """mark_routed(…, routed=False) for each (alert id, rule, referrals) together."""
        ...

    def mark_all_routed(self, alert_ids: Sequence[str], *, at: datetime) -> None:
        """Alerts whose referrals mark_routed(routed=False) stored, and whose delivery jobs
        are all confirmed, marked routed together (a batch's last step)."""
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

    def mark_parked(self, alert_id: str, *, at: datetime) -> bool:
        """The hub could not process the alert and parked its message: RECEIVED → PARKED. An
        alert routed meanwhile stays routed, an unknown one is not created. True when this
        call moved it."""
        ...


class OutcomeLedger(UnitOfWork, Protocol):
    """What stages/outcomes.py and stages/inbound_outcomes.py use: outcomes sent to the justice
    side, and an overdue referral marked answered."""

    def get_alert(self, alert_id: str) -> AlertRecord | None: ...

    def get_referral(self, bundle_id: str) -> ReferralRecord | None: ...

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, AlertRecord]:
        """get_alert for many: those it knows, by id."""
        ...

    def record_outcomes(self, many: Sequence[OutcomeRecord]) -> list[bool]:
        """record_outcome for each, in order, together."""
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

    def resolve_overdue(
        self, alert_id: str, endpoint: str, *, at: datetime
    ) -> ReferralRecord | None:
        """Set overdue_resolved_at on the alert's overdue referral to `endpoint` once; the
        referral for the call that set it, else None."""
        ...

    def add_event(self, event: JourneyEvent) -> None: ...


class DeliveryLedger(OutcomeLedger, Protocol):
    """What stages/delivery.py uses: each attempt to hand a referral to its service (and, for
    the outcomes it returns through stages/outcomes.py, the outcome part)."""

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]: ...

    def get_referrals(self, bundle_ids: Sequence[str]) -> dict[str, ReferralRecord]:
        """get_referral for many: those it knows, by id."""
        ...

    def record_deliveries(self, many: Sequence[DeliveredAttempt]) -> list[ReferralRecord]:
        """record_attempt(…, result="delivered") for each, in order, together."""
        ...

    def record_attempt(
        self,
        bundle_id: str,
        *,
        at: datetime,
        result: str,  # delivered | transient | permanent | withheld
        http_status: int | None,
        detail: str,
        duration_ms: float,
    ) -> ReferralRecord:
        """Append one delivery attempt, bump attempts, and move state (delivered → DELIVERED,
        permanent → FAILED, withheld → WITHHELD). Returns the updated referral."""
        ...


class OverdueLedger(OutcomeLedger, Protocol):
    """What stages/overdue.py uses: referrals past their due time (reported through
    stages/outcomes.py, hence the outcome part)."""

    def overdue_due(self, now: datetime) -> list[ReferralRecord]:
        """Referrals (kind new) past their due_at, not yet marked overdue, with no outcome from
        their service (to the referral or any follow-up of it), not withheld, alert not
        cancelled: the ones to report overdue now. Oldest due first."""
        ...

    def mark_overdue(self, bundle_id: str, *, at: datetime) -> bool:
        """Set overdue_at once; True only for the call that set it (competing hubs agree)."""
        ...

    def count_overdue(self) -> int:
        """Referrals overdue and not yet resolved."""
        ...


class LedgerHealth(Protocol):
    """What the runtime's readiness and queue-age checks use."""

    def ping(self) -> None:
        """Raise TransientError when the store cannot be reached (readiness checks)."""
        ...

    def oldest_undelivered(self) -> dict[str, datetime]:
        """Per endpoint, the arrival time of the alert behind its oldest queued referral."""
        ...


# LedgerReader (operators' read side) is declared with the operations ports below.


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


# -- operations: the failed-message store and the ledger's read side ------------------------


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


class LedgerReader(Protocol):
    """The ledger's read side for operators (`hub trace`): additive queries, ids only."""

    def get_alert(self, alert_id: str) -> AlertRecord | None: ...

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]: ...

    def journey(self, alert_id: str) -> list[JourneyEvent]: ...

    def find_alert_ids(self, any_id: str) -> list[str]:
        """Alert ids known by an alert id, source reference, Bundle id, X-Request-Id or
        outcome id."""
        ...

    def attempts_for(self, bundle_id: str) -> list[AttemptRecord]: ...

    def outcomes_for(self, alert_id: str) -> list[OutcomeRecord]: ...


class Ledger(IntakeLedger, DeliveryLedger, OverdueLedger, LedgerReader, LedgerHealth, Protocol):
    """Durable record of each alert's journey; what makes duplicates harmless. The union of
    the parts above: what an adapter (adapters/sql/ledger.py, adapters/memory/ledger.py)
    implements; each stage names only the part it uses."""

    def close(self) -> None: ...


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
