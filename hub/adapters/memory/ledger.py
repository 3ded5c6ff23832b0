"""An in-memory `hub.ports_ledger.Ledger` for fast tests: the same behaviour as `SqlLedger`, no
database.

Dicts behind one lock; it passes the same contract suite as the SQL ledger, so it cannot drift.
This module holds the writes; the state and the reads are in reads.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from hub.adapters.memory.reads import (
    MemoryLedgerReads,
    _as_utc,
    _Attempt,
    _Outcome,
    _Rejection,
)
from hub.messages import Problem
from hub.records import (
    AlertFacts,
    AlertRecord,
    AlertState,
    ChangeFacts,
    ChangeRecord,
    ChangeState,
    ConsentFacts,
    DeliveredAttempt,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
    Seen,
)
from hub.store_rules.attempts import ATTEMPT_RESULTS, reason_code
from hub.transforms.consent_rules import consent_in_force


class MemoryLedger(MemoryLedgerReads):
    """`hub.ports_ledger.Ledger` in memory. Unknown alert or bundle ids raise `KeyError`, naive
    datetimes `ValueError`, as in `SqlLedger`; `ping` always succeeds."""

    def record_alert(self, facts: AlertFacts) -> tuple[Seen, AlertRecord]:
        recorded = facts.consent_recorded_at
        facts = replace(
            facts,
            received_at=_as_utc(facts.received_at),
            consent_recorded_at=None if recorded is None else _as_utc(recorded),
        )
        with self._lock:
            stored = self._alerts.get(facts.alert_id)
            if stored is not None:
                same = stored.facts.body_sha256 == facts.body_sha256
                return (Seen.DUPLICATE if same else Seen.CONFLICT), stored
            record = AlertRecord(facts=facts, state=AlertState.RECEIVED, rule=None)
            self._alerts[facts.alert_id] = record
            return Seen.NEW, record

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
        rejection = _Rejection(
            alert_id=alert_id,
            source_kind=source_kind,
            organisation_code=organisation_code,
            reference=reference,
            problem_paths=tuple(p.path for p in problems),
            at=_as_utc(at),
        )
        with self._lock:
            self._rejections.append(rejection)

    def mark_routed(
        self,
        alert_id: str,
        *,
        rule: str,
        referrals: Sequence[ReferralRecord],
        at: datetime,
        routed: bool = True,
    ) -> None:
        for referral in referrals:
            if referral.alert_id != alert_id:
                raise ValueError(f"referral {referral.bundle_id} belongs to another alert")
        stored_referrals = [_stored_referral(r, _as_utc(at)) for r in referrals]
        with self._lock:
            alert = self._alerts.get(alert_id)
            if alert is None:
                raise KeyError(alert_id)
            state = AlertState.ROUTED if routed else alert.state
            self._alerts[alert_id] = replace(alert, state=state, rule=rule)
            for referral in stored_referrals:
                self._referrals.setdefault(referral.bundle_id, referral)

    def record_alerts(self, many: Sequence[AlertFacts]) -> list[tuple[Seen, AlertRecord]]:
        return [self.record_alert(facts) for facts in many]

    def mark_all_queued(
        self, routed: Sequence[tuple[str, str, Sequence[ReferralRecord]]], *, at: datetime
    ) -> None:
        for alert_id, rule, referrals in routed:
            self.mark_routed(alert_id, rule=rule, referrals=referrals, at=at, routed=False)

    def record_deliveries(self, many: Sequence[DeliveredAttempt]) -> list[ReferralRecord]:
        return [
            self.record_attempt(
                d.bundle_id,
                at=d.at,
                result="delivered",
                http_status=d.http_status,
                detail=d.detail,
                duration_ms=d.duration_ms,
            )
            for d in many
        ]

    def record_outcomes(self, many: Sequence[OutcomeRecord]) -> list[bool]:
        return [
            self.record_outcome(
                outcome_id=o.outcome_id,
                alert_id=o.alert_id,
                bundle_id=o.bundle_id,
                status=o.status,
                at=o.at,
            )
            for o in many
        ]

    def mark_all_routed(self, alert_ids: Sequence[str], *, at: datetime) -> None:
        _as_utc(at)
        with self._lock:
            for alert_id in alert_ids:
                alert = self._alerts.get(alert_id)
                if alert is not None:
                    self._alerts[alert_id] = replace(alert, state=AlertState.ROUTED)

    def mark_parked(self, alert_id: str, *, at: datetime) -> bool:
        _as_utc(at)
        with self._lock:
            alert = self._alerts.get(alert_id)
            if alert is None or alert.state is not AlertState.RECEIVED:
                return False
            self._alerts[alert_id] = replace(alert, state=AlertState.PARKED)
            return True

    def record_change(self, facts: ChangeFacts) -> tuple[Seen, ChangeRecord]:
        facts = replace(facts, received_at=_as_utc(facts.received_at))
        with self._lock:
            if facts.alert_id not in self._alerts:
                raise KeyError(facts.alert_id)
            stored = self._changes.get(facts.change_id)
            if stored is not None:
                same = (stored.facts.body_sha256, stored.facts.alert_id) == (
                    facts.body_sha256,
                    facts.alert_id,
                )
                return (Seen.DUPLICATE if same else Seen.CONFLICT), stored
            record = ChangeRecord(facts=facts, state=ChangeState.RECEIVED)
            self._changes[facts.change_id] = record
            return Seen.NEW, record

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
        at = _as_utc(at)
        stored_referrals = [_stored_referral(r, at) for r in referrals]
        with self._lock:
            change = self._changes.get(change_id)
            if change is None:
                raise KeyError(change_id)
            alert_id = change.facts.alert_id
            for referral in referrals:
                if referral.alert_id != alert_id:
                    raise ValueError(f"referral {referral.bundle_id} belongs to another alert")
            alert = self._alerts[alert_id]
            facts = alert.facts
            if urgency is not None:
                facts = replace(facts, urgency=urgency)
            if pathway is not None:
                facts = replace(facts, pathway=pathway)
            in_force = None
            if consent is not None:
                in_force = consent_in_force(
                    replace(consent, recorded_at=_as_utc(consent.recorded_at)),
                    status=facts.consent_status,
                    share_with_justice=facts.share_with_justice,
                    recorded_at=facts.consent_recorded_at,
                )
                facts = replace(
                    facts,
                    consent_status=in_force.status,
                    share_with_justice=in_force.share_with_justice,
                    consent_recorded_at=in_force.recorded_at,
                )
            self._alerts[alert_id] = replace(
                alert, facts=facts, cancelled=alert.cancelled or cancelled
            )
            for referral in stored_referrals:
                self._referrals.setdefault(referral.bundle_id, referral)
            if applied:
                self._changes[change_id] = replace(change, state=ChangeState.APPLIED)
            return in_force

    def mark_overdue(self, bundle_id: str, *, at: datetime) -> bool:
        at = _as_utc(at)
        with self._lock:
            referral = self._referrals.get(bundle_id)
            if referral is None or referral.overdue_at is not None:
                return False
            self._referrals[bundle_id] = replace(referral, overdue_at=at)
            return True

    def resolve_overdue(
        self, alert_id: str, endpoint: str, *, at: datetime
    ) -> ReferralRecord | None:
        at = _as_utc(at)
        with self._lock:
            for bundle_id, r in self._referrals.items():
                if (r.alert_id, r.endpoint, r.kind) == (alert_id, endpoint, "new") and (
                    r.overdue_at is not None and r.overdue_resolved_at is None
                ):
                    resolved = replace(r, overdue_resolved_at=at)
                    self._referrals[bundle_id] = resolved
                    return resolved
        return None

    def record_attempt(
        self,
        bundle_id: str,
        *,
        at: datetime,
        result: str,
        http_status: int | None,
        detail: str,
        duration_ms: float,
    ) -> ReferralRecord:
        if result not in ATTEMPT_RESULTS:
            raise ValueError(f"attempt result must be one of {sorted(ATTEMPT_RESULTS)}")
        at = _as_utc(at)
        with self._lock:
            referral = self._referrals.get(bundle_id)
            if referral is None:
                raise KeyError(bundle_id)
            state, delivered_at = referral.state, referral.delivered_at
            if result == "delivered":
                state, delivered_at = ReferralState.DELIVERED, delivered_at or at
            elif result in ("permanent", "withheld") and state != ReferralState.DELIVERED:
                state = ReferralState.FAILED if result == "permanent" else ReferralState.WITHHELD
            updated = replace(
                referral, attempts=referral.attempts + 1, state=state, delivered_at=delivered_at
            )
            self._referrals[bundle_id] = updated
            code = reason_code(detail)
            self._attempts.append(_Attempt(bundle_id, at, result, http_status, code, duration_ms))
            return updated

    def record_outcome(
        self,
        *,
        outcome_id: str,
        alert_id: str,
        bundle_id: str | None,
        status: str,
        at: datetime,
    ) -> bool:
        outcome = _Outcome(outcome_id, alert_id, bundle_id, status, _as_utc(at))
        with self._lock:
            if outcome_id in self._outcomes:
                return False
            self._outcomes[outcome_id] = outcome
            return True

    def add_event(self, event: JourneyEvent) -> None:
        # The same JSON round trip as the database: tuples come back as lists, and what
        # cannot be stored fails here with TypeError.
        detail = json.loads(json.dumps(dict(event.detail)))
        stored = replace(event, at=_as_utc(event.at), detail=detail)
        with self._lock:
            self._events.append((stored.at, len(self._events), stored))


def _stored_referral(referral: ReferralRecord, created_at: datetime) -> ReferralRecord:
    delivered_at = referral.delivered_at
    return replace(
        referral,
        state=ReferralState(referral.state),
        delivered_at=None if delivered_at is None else _as_utc(delivered_at),
        created_at=_as_utc(referral.created_at or created_at),
        due_at=None if referral.due_at is None else _as_utc(referral.due_at),
        overdue_at=None,
        overdue_resolved_at=None,
    )
