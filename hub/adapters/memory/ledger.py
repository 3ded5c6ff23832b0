"""An in-memory `hub.ports.Ledger` for fast tests: the same behaviour as `SqlLedger`, no database.

Dicts behind one lock; it passes the same contract suite as the SQL ledger, so it cannot drift.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from hub.messages import Problem
from hub.records import (
    AlertFacts,
    AlertRecord,
    AlertState,
    AttemptRecord,
    ChangeFacts,
    ChangeRecord,
    ChangeState,
    ConsentFacts,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
    Seen,
)
from hub.store_rules.attempts import ATTEMPT_RESULTS, NOT_FROM_THE_SERVICE, reason_code
from hub.transforms.consent_rules import consent_in_force


@dataclass(frozen=True, slots=True)
class _Rejection:
    alert_id: str
    source_kind: str
    organisation_code: str
    reference: str | None
    problem_paths: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class _Attempt:
    bundle_id: str
    at: datetime
    result: str
    http_status: int | None
    reason_code: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class _Outcome:
    outcome_id: str
    alert_id: str
    bundle_id: str | None
    status: str
    at: datetime


class MemoryLedger:
    """`hub.ports.Ledger` in memory. Unknown alert or bundle ids raise `KeyError`, naive datetimes
    `ValueError`, as in `SqlLedger`; `ping` always succeeds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, AlertRecord] = {}
        self._referrals: dict[str, ReferralRecord] = {}
        self._rejections: list[_Rejection] = []
        self._attempts: list[_Attempt] = []
        self._outcomes: dict[str, _Outcome] = {}
        self._events: list[tuple[datetime, int, JourneyEvent]] = []
        self._changes: dict[str, ChangeRecord] = {}

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

    def overdue_due(self, now: datetime) -> list[ReferralRecord]:
        now = _as_utc(now)
        with self._lock:
            answered = {
                (r.alert_id, r.endpoint)
                for o in self._outcomes.values()
                if o.status not in NOT_FROM_THE_SERVICE
                and (r := self._referrals.get(o.bundle_id or "")) is not None
            }
            due = [
                r
                for r in self._referrals.values()
                if r.kind == "new"
                and r.due_at is not None
                and r.due_at <= now
                and r.overdue_at is None
                and r.state is not ReferralState.WITHHELD
                and not self._alerts[r.alert_id].cancelled
                and (r.alert_id, r.endpoint) not in answered
            ]
        return sorted(due, key=lambda r: (r.due_at or now, r.bundle_id))

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

    def count_overdue(self) -> int:
        with self._lock:
            return sum(
                1
                for r in self._referrals.values()
                if r.overdue_at is not None and r.overdue_resolved_at is None
            )

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        with self._lock:
            return self._alerts.get(alert_id)

    def get_referral(self, bundle_id: str) -> ReferralRecord | None:
        with self._lock:
            return self._referrals.get(bundle_id)

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]:
        with self._lock:
            found = [r for r in self._referrals.values() if r.alert_id == alert_id]
        return sorted(found, key=lambda r: (r.endpoint, r.created_at or _EPOCH, r.bundle_id))

    def oldest_undelivered(self) -> dict[str, datetime]:
        with self._lock:
            oldest: dict[str, datetime] = {}
            for r in self._referrals.values():
                if r.state is ReferralState.QUEUED and r.alert_id in self._alerts:
                    at = self._alerts[r.alert_id].facts.received_at
                    if r.endpoint not in oldest or at < oldest[r.endpoint]:
                        oldest[r.endpoint] = at
            return oldest

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

    def journey(self, alert_id: str) -> list[JourneyEvent]:
        with self._lock:
            found = [e for e in self._events if e[2].alert_id == alert_id]
        return [event for _, _, event in sorted(found, key=lambda e: (e[0], e[1]))]

    def find_alert_ids(self, any_id: str) -> list[str]:
        with self._lock:
            found = [
                *(a for a, r in self._alerts.items() if any_id in (a, r.facts.reference)),
                *(
                    r.alert_id
                    for r in self._referrals.values()
                    if any_id in (r.bundle_id, r.request_id)
                ),
                *(j.alert_id for j in self._rejections if any_id in (j.alert_id, j.reference)),
                *(
                    o.alert_id
                    for o in self._outcomes.values()
                    if any_id in (o.outcome_id, o.bundle_id)
                ),
            ]
        return list(dict.fromkeys(found))

    def attempts_for(self, bundle_id: str) -> list[AttemptRecord]:
        with self._lock:
            found = [a for a in self._attempts if a.bundle_id == bundle_id]
        return [
            AttemptRecord(a.bundle_id, a.at, a.result, a.http_status, a.reason_code, a.duration_ms)
            for a in sorted(found, key=lambda a: a.at)
        ]

    def outcomes_for(self, alert_id: str) -> list[OutcomeRecord]:
        with self._lock:
            found = [o for o in self._outcomes.values() if o.alert_id == alert_id]
        return [
            OutcomeRecord(o.outcome_id, o.alert_id, o.bundle_id, o.status, o.at)
            for o in sorted(found, key=lambda o: o.at)
        ]

    def close(self) -> None:
        pass

    def ping(self) -> None:
        pass


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: the ledger stores UTC, pass a tz-aware datetime")
    return value.astimezone(UTC)


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
