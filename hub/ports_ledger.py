"""The ledger's ports: the durable record of each alert's journey, in the parts each stage uses
(`Ledger` their union, what an adapter implements). The other ports are in hub/ports.py.

Protocols only: no implementation here and no third-party imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from hub.messages import Problem
from hub.records import (
    AlertFacts,
    AlertRecord,
    AttemptRecord,
    ChangeFacts,
    ChangeRecord,
    ConsentFacts,
    DeliveredAttempt,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    Seen,
)


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
    """What stages/intake.py and intake_rejections.py use: alerts recorded, rejected, routed or
    parked (and, through FollowUpIntake, the follow-up part)."""

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
