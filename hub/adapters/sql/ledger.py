"""The ledger on SQLite (default) or PostgreSQL, through SQLAlchemy Core: one code path for both.

Only hub/adapters/sql/ imports SQLAlchemy. This module holds the writes; the reads, and the
translation of connection errors into `TransientError`, are in reads.py.

What the ledger holds, and what it must never hold. Every column is an id, a code, a state, a
count or a time: no names, dates of birth, NHS/PNC numbers, addresses or free text, so a copy of
the database discloses nothing about a person. Concretely:

    hub_alerts      alert_id, body_sha256, source_kind, organisation_code, reference (the
                    sender's own custody/case reference), pathway, urgency, consent_status,
                    share_with_justice, received_at, state, rule, updated_at,
                    consent_recorded_at, cancelled (revoked | entered-in-error)
    hub_rejections  alert_id, source_kind, organisation_code, reference, problem_count,
                    problem_paths (dotted field paths only: the problem text is not kept), at
    hub_referrals   bundle_id, alert_id, endpoint, request_id, state, attempts, delivered_at,
                    kind (new | update | cancellation | consent), change_id, created_at,
                    due_at, overdue_at, overdue_resolved_at
    hub_changes     change_id, alert_id, kind, body_sha256, received_at, state (follow-ups)
    hub_attempts    bundle_id, at, result, http_status, reason_code, duration_ms (append-only;
                    the caller's free-text `detail` is kept only when it is a bare code)
    hub_outcomes    outcome_id, alert_id, bundle_id, status, at
    hub_events      alert_id, at, stage, event, endpoint, detail (append-only; JSON of ids,
                    codes and counts, which the pipeline's tests hold it to)

Times are stored and returned as tz-aware UTC (SQLite keeps them naive; we re-attach UTC).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from hub.adapters.sql.batch_writes import SqlBatchWrites, _alert_row, _new_record
from hub.adapters.sql.reads import SqlLedgerReads
from hub.adapters.sql.rows import (
    _change_dict,
    _get_change,
    _get_referral,
    _insert_new_referrals,
)
from hub.adapters.sql.tables import (
    _UtcDateTime,
    alert_vulnerabilities_table,
    alerts_table,
    as_utc,
    attempts_table,
    changes_table,
    events_table,
    outcomes_table,
    referrals_table,
    rejections_table,
)
from hub.errors import TransientError
from hub.messages import Problem
from hub.records import (
    AlertFacts,
    AlertRecord,
    AlertState,
    ChangeFacts,
    ChangeRecord,
    ChangeState,
    ConsentFacts,
    JourneyEvent,
    ReferralRecord,
    ReferralState,
    Seen,
)
from hub.store_rules.attempts import ATTEMPT_RESULTS, reason_code
from hub.transforms.consent_rules import consent_in_force


class SqlLedger(SqlBatchWrites, SqlLedgerReads):
    """`hub.ports_ledger.Ledger` on a database URL: `sqlite:///hub.db` (WAL) or `postgresql://…`.

    `timeout` (seconds) bounds each wait on the database: connecting, a PostgreSQL statement,
    a SQLite lock, a pooled connection. Tables are created if missing. Unknown alert or bundle
    ids raise `KeyError`; naive datetimes raise `ValueError`; an unreachable or locked database
    raises `TransientError`. The reads, the connection and `ping` are in reads.py.
    """

    # -- Ledger -----------------------------------------------------------------------------

    def record_alert(self, facts: AlertFacts) -> tuple[Seen, AlertRecord]:
        row = _alert_row(facts)
        with self._translated("record_alert", alert_id=facts.alert_id):
            try:
                # Insert first and let the primary key decide: competing consumers that race
                # on one alert_id get exactly one winner, whatever the backend.
                with self._writing(savepoint=True) as conn:
                    conn.execute(alerts_table.insert().values(**row))
                    if facts.vulnerability_types:
                        conn.execute(
                            alert_vulnerabilities_table.insert(),
                            [
                                {"alert_id": facts.alert_id, "type": t}
                                for t in sorted(set(facts.vulnerability_types))
                            ],
                        )
            except sa_exc.IntegrityError as exc:
                stored = self.get_alert(facts.alert_id)
                if stored is None:  # the competing insert rolled back: the next try is clean
                    raise TransientError(
                        "alert was being recorded concurrently; retry", alert_id=facts.alert_id
                    ) from exc
                same = stored.facts.body_sha256 == facts.body_sha256
                return (Seen.DUPLICATE if same else Seen.CONFLICT), stored
        return Seen.NEW, _new_record(facts, row)

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
        row = {
            "alert_id": alert_id,
            "source_kind": source_kind,
            "organisation_code": organisation_code,
            "reference": reference,
            "problem_count": len(problems),
            "problem_paths": [p.path for p in problems],
            "at": as_utc(at),
        }
        with self._translated("record_rejection", alert_id=alert_id), self._writing() as conn:
            conn.execute(rejections_table.insert().values(**row))

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
        at = as_utc(at)
        with self._translated("mark_routed", alert_id=alert_id), self._writing() as conn:
            # The UPDATE comes first so it takes the alert's row lock (PostgreSQL) or the write
            # lock (SQLite): two workers routing one alert then run one after the other.
            changed = conn.execute(
                alerts_table.update()
                .where(alerts_table.c.alert_id == alert_id)
                .values(
                    rule=rule,
                    updated_at=at,
                    **({"state": AlertState.ROUTED.value} if routed else {}),
                )
            ).rowcount
            if changed == 0:
                raise KeyError(alert_id)
            _insert_new_referrals(conn, referrals, at)

    def mark_parked(self, alert_id: str, *, at: datetime) -> bool:
        at = as_utc(at)
        with self._translated("mark_parked", alert_id=alert_id), self._writing() as conn:
            changed = conn.execute(
                alerts_table.update()
                .where(
                    alerts_table.c.alert_id == alert_id,
                    alerts_table.c.state == AlertState.RECEIVED.value,
                )
                .values(state=AlertState.PARKED.value, updated_at=at)
            ).rowcount
        return bool(changed)

    def record_change(self, facts: ChangeFacts) -> tuple[Seen, ChangeRecord]:
        received_at = as_utc(facts.received_at)
        row = {**_change_dict(facts), "received_at": received_at, "state": ChangeState.RECEIVED}
        with self._translated("record_change", alert_id=facts.alert_id):
            if self.get_alert(facts.alert_id) is None:
                raise KeyError(facts.alert_id)
            try:
                with self._writing(savepoint=True) as conn:
                    conn.execute(changes_table.insert().values(**row))
            except sa_exc.IntegrityError as exc:
                with self._reading() as conn:
                    stored = _get_change(conn, facts.change_id)
                if stored is None:
                    raise TransientError(
                        "change was being recorded concurrently; retry", alert_id=facts.alert_id
                    ) from exc
                same = (stored.facts.body_sha256, stored.facts.alert_id) == (
                    facts.body_sha256,
                    facts.alert_id,
                )
                return (Seen.DUPLICATE if same else Seen.CONFLICT), stored
        stored_facts = ChangeFacts(**{**_change_dict(facts), "received_at": received_at})
        return Seen.NEW, ChangeRecord(facts=stored_facts, state=ChangeState.RECEIVED)

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
        at = as_utc(at)
        alerts = alerts_table.c
        with self._translated("apply_change"), self._writing() as conn:
            change = _get_change(conn, change_id)
            if change is None:
                raise KeyError(change_id)
            alert_id = change.facts.alert_id
            for referral in referrals:
                if referral.alert_id != alert_id:
                    raise ValueError(f"referral {referral.bundle_id} belongs to another alert")
            values: dict[str, Any] = {"updated_at": at}
            if urgency is not None:
                values["urgency"] = urgency
            if pathway is not None:
                values["pathway"] = pathway
            if cancelled is not None:
                values["cancelled"] = sa.func.coalesce(alerts.cancelled, cancelled)
            # First statement on the alert's row: takes its lock, as mark_routed does.
            conn.execute(alerts_table.update().where(alerts.alert_id == alert_id).values(**values))
            in_force = None
            if consent is not None:
                # Read under the row lock taken above, so the rule sees the consent in force.
                current = conn.execute(
                    sa.select(
                        alerts.consent_status,
                        alerts.share_with_justice,
                        alerts.consent_recorded_at,
                    ).where(alerts.alert_id == alert_id)
                ).one()
                in_force = consent_in_force(
                    replace(consent, recorded_at=as_utc(consent.recorded_at)),
                    status=current.consent_status,
                    share_with_justice=current.share_with_justice,
                    recorded_at=current.consent_recorded_at,
                )
                conn.execute(
                    alerts_table.update()
                    .where(alerts.alert_id == alert_id)
                    .values(
                        consent_status=in_force.status,
                        share_with_justice=in_force.share_with_justice,
                        consent_recorded_at=in_force.recorded_at,
                    )
                )
            _insert_new_referrals(conn, referrals, at)
            if applied:
                conn.execute(
                    changes_table.update()
                    .where(changes_table.c.change_id == change_id)
                    .values(state=ChangeState.APPLIED.value)
                )
        return in_force

    def mark_overdue(self, bundle_id: str, *, at: datetime) -> bool:
        col = referrals_table.c
        with self._translated("mark_overdue"), self._writing() as conn:
            changed = conn.execute(
                referrals_table.update()
                .where(col.bundle_id == bundle_id, col.overdue_at.is_(None))
                .values(overdue_at=as_utc(at))
            ).rowcount
        return changed == 1

    def resolve_overdue(
        self, alert_id: str, endpoint: str, *, at: datetime
    ) -> ReferralRecord | None:
        col = referrals_table.c
        where = (
            col.alert_id == alert_id,
            col.endpoint == endpoint,
            col.kind == "new",
            col.overdue_at.is_not(None),
            col.overdue_resolved_at.is_(None),
        )
        with self._translated("resolve_overdue", alert_id=alert_id), self._writing() as conn:
            row = conn.execute(sa.select(col.bundle_id).where(*where)).first()
            if row is None:
                return None
            changed = conn.execute(
                referrals_table.update()
                .where(col.bundle_id == row[0], *where[3:])
                .values(overdue_resolved_at=as_utc(at))
            ).rowcount
            return _get_referral(conn, row[0]) if changed == 1 else None

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
        at = as_utc(at)
        col = referrals_table.c
        # Counted in the database (attempts = attempts + 1), never read-modify-write in Python,
        # so two workers recording at once both count. DELIVERED is final: a late permanent
        # failure of a redelivered copy must not undo it.
        changes: dict[str, Any] = {"attempts": col.attempts + 1}
        if result == "delivered":
            changes["state"] = ReferralState.DELIVERED.value
            changes["delivered_at"] = sa.func.coalesce(
                col.delivered_at, sa.literal(at, _UtcDateTime())
            )
        elif result in ("permanent", "withheld"):
            final = ReferralState.FAILED if result == "permanent" else ReferralState.WITHHELD
            changes["state"] = sa.case(
                (col.state == ReferralState.DELIVERED.value, col.state),
                else_=final.value,
            )
        with self._translated("record_attempt"), self._writing() as conn:
            changed = conn.execute(
                referrals_table.update().where(col.bundle_id == bundle_id).values(**changes)
            ).rowcount
            if changed == 0:
                raise KeyError(bundle_id)
            conn.execute(
                attempts_table.insert().values(
                    bundle_id=bundle_id,
                    at=at,
                    result=result,
                    http_status=http_status,
                    reason_code=reason_code(detail),
                    duration_ms=duration_ms,
                )
            )
            updated = _get_referral(conn, bundle_id)
        assert updated is not None  # the UPDATE above found it, inside this transaction
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
        row = {
            "outcome_id": outcome_id,
            "alert_id": alert_id,
            "bundle_id": bundle_id,
            "status": status,
            "at": as_utc(at),
        }
        with self._translated("record_outcome", alert_id=alert_id):
            try:
                with self._writing(savepoint=True) as conn:
                    conn.execute(outcomes_table.insert().values(**row))
            except sa_exc.IntegrityError:
                return False
        return True

    def add_event(self, event: JourneyEvent) -> None:
        row = {
            "alert_id": event.alert_id,
            "at": as_utc(event.at),
            "stage": event.stage,
            "event": event.event,
            "endpoint": event.endpoint,
            # A round trip through JSON: what cannot be stored fails here with TypeError.
            "detail": json.loads(json.dumps(dict(event.detail))),
        }
        events = self._local.__dict__.get("events")
        if self._local.__dict__.get("conn") is not None and events is not None:
            events.append(row)  # inserted with the unit's other events when it ends
            return
        with self._translated("add_event", alert_id=event.alert_id), self._writing() as conn:
            conn.execute(events_table.insert().values(**row))
