"""The in-memory ledger's state and its reads (see ledger.py, which adds the writes): the same
answers as hub/adapters/sql/reads.py, from dicts behind one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from hub.records import (
    AlertRecord,
    AttemptRecord,
    ChangeRecord,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
)
from hub.store_rules.attempts import NOT_FROM_THE_SERVICE


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


class MemoryLedgerReads:
    """What the in-memory ledger answers without changing anything."""

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """Each call is applied at once, under the lock: the block groups nothing here, and
        a block that raises keeps what it did (the stages are idempotent on redelivery, which
        is what a rolled-back batch relies on anyway)."""
        yield

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[str, AlertRecord] = {}
        self._referrals: dict[str, ReferralRecord] = {}
        self._rejections: list[_Rejection] = []
        self._attempts: list[_Attempt] = []
        self._outcomes: dict[str, _Outcome] = {}
        self._events: list[tuple[datetime, int, JourneyEvent]] = []
        self._changes: dict[str, ChangeRecord] = {}

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

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, AlertRecord]:
        with self._lock:
            return {i: self._alerts[i] for i in alert_ids if i in self._alerts}

    def get_referrals(self, bundle_ids: Sequence[str]) -> dict[str, ReferralRecord]:
        with self._lock:
            return {i: self._referrals[i] for i in bundle_ids if i in self._referrals}

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
