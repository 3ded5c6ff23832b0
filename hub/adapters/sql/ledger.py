"""The ledger on SQLite (default) or PostgreSQL, through SQLAlchemy Core: one code path for both.

With `failed_store.py`, the only modules that import SQLAlchemy; its connection errors become
`TransientError` here.

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from hub.adapters.sql.engine import (
    _CONNECTION_ERRORS,
    _build_engine,
    _create_tables,
    _describe,
    _normalise_url,
    _reason,
)
from hub.adapters.sql.rows import (
    _alert_record,
    _change_dict,
    _facts_dict,
    _get_change,
    _get_referral,
    _insert_new_referrals,
    _referral_record,
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
from hub.errors import LedgerUnavailable, TransientError
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


class SqlLedger:
    """`hub.ports.Ledger` on a database URL: `sqlite:///hub.db` (WAL) or `postgresql://…`.

    `timeout` (seconds) bounds each wait on the database: connecting, a PostgreSQL statement,
    a SQLite lock, a pooled connection. Tables are created if missing. Unknown alert or bundle
    ids raise `KeyError`; naive datetimes raise `ValueError`; an unreachable or locked database
    raises `TransientError`.
    """

    def __init__(self, url: str, *, timeout: float = 10.0, pre_ping: bool = True) -> None:
        self._url = _normalise_url(url)
        self._where = _describe(self._url)
        self._engine = _build_engine(self._url, timeout=timeout, pre_ping=pre_ping)
        with self._translated("create tables"):
            _create_tables(self._engine)

    # -- Ledger -----------------------------------------------------------------------------

    def record_alert(self, facts: AlertFacts) -> tuple[Seen, AlertRecord]:
        received_at = as_utc(facts.received_at)
        row = {
            "alert_id": facts.alert_id,
            "body_sha256": facts.body_sha256,
            "source_kind": facts.source_kind,
            "organisation_code": facts.organisation_code,
            "reference": facts.reference,
            "pathway": facts.pathway,
            "urgency": facts.urgency,
            "consent_status": facts.consent_status,
            "share_with_justice": facts.share_with_justice,
            "received_at": received_at,
            "state": AlertState.RECEIVED.value,
            "rule": None,
            "updated_at": received_at,
            "consent_recorded_at": (
                None if facts.consent_recorded_at is None else as_utc(facts.consent_recorded_at)
            ),
        }
        with self._translated("record_alert", alert_id=facts.alert_id):
            try:
                # Insert first and let the primary key decide: competing consumers that race
                # on one alert_id get exactly one winner, whatever the backend.
                with self._engine.begin() as conn:
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
        stored_facts = AlertFacts(
            **{
                **_facts_dict(facts),
                "received_at": received_at,
                "consent_recorded_at": row["consent_recorded_at"],
            }
        )
        return Seen.NEW, AlertRecord(facts=stored_facts, state=AlertState.RECEIVED, rule=None)

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
        with self._translated("record_rejection", alert_id=alert_id), self._engine.begin() as conn:
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
        with self._translated("mark_routed", alert_id=alert_id), self._engine.begin() as conn:
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
        with self._translated("mark_parked", alert_id=alert_id), self._engine.begin() as conn:
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
                with self._engine.begin() as conn:
                    conn.execute(changes_table.insert().values(**row))
            except sa_exc.IntegrityError as exc:
                with self._engine.connect() as conn:
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
        with self._translated("apply_change"), self._engine.begin() as conn:
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

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        with self._translated("get_alert", alert_id=alert_id), self._engine.connect() as conn:
            row = conn.execute(
                sa.select(alerts_table).where(alerts_table.c.alert_id == alert_id)
            ).first()
            v = alert_vulnerabilities_table.c
            types = conn.scalars(
                sa.select(v.type).where(v.alert_id == alert_id).order_by(v.type)
            ).all()
        if row is None:
            return None
        return _alert_record({**row._mapping, "vulnerability_types": tuple(types)})

    def get_referral(self, bundle_id: str) -> ReferralRecord | None:
        with self._translated("get_referral"), self._engine.connect() as conn:
            return _get_referral(conn, bundle_id)

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]:
        query = (
            sa.select(referrals_table)
            .where(referrals_table.c.alert_id == alert_id)
            .order_by(
                referrals_table.c.endpoint,
                referrals_table.c.created_at,
                referrals_table.c.bundle_id,
            )
        )
        with self._translated("referrals_for", alert_id=alert_id), self._engine.connect() as conn:
            return [_referral_record(row._mapping) for row in conn.execute(query)]

    def oldest_undelivered(self) -> dict[str, datetime]:
        """Per endpoint, when the alert behind its oldest still-queued referral arrived: the
        age of the oldest message waiting on hub.deliver.<endpoint>, which quorum queues do
        not report themselves."""
        query = (
            sa.select(referrals_table.c.endpoint, sa.func.min(alerts_table.c.received_at))
            .join(alerts_table, alerts_table.c.alert_id == referrals_table.c.alert_id)
            .where(referrals_table.c.state == ReferralState.QUEUED.value)
            .group_by(referrals_table.c.endpoint)
        )
        with self._translated("oldest_undelivered"), self._engine.connect() as conn:
            return {row[0]: as_utc(row[1]) for row in conn.execute(query) if row[1] is not None}

    def overdue_due(self, now: datetime) -> list[ReferralRecord]:
        ref, alerts, out = referrals_table.c, alerts_table.c, outcomes_table.c
        sibling = referrals_table.alias("sibling")
        answered = (
            sa.select(sa.literal(1))
            .select_from(outcomes_table.join(sibling, sibling.c.bundle_id == out.bundle_id))
            .where(
                sibling.c.alert_id == ref.alert_id,
                sibling.c.endpoint == ref.endpoint,
                out.status.not_in(NOT_FROM_THE_SERVICE),
            )
            .exists()
        )
        query = (
            sa.select(referrals_table)
            .join(alerts_table, alerts.alert_id == ref.alert_id)
            .where(
                ref.kind == "new",
                ref.due_at.is_not(None),
                ref.due_at <= sa.literal(as_utc(now), _UtcDateTime()),
                ref.overdue_at.is_(None),
                ref.state != ReferralState.WITHHELD.value,
                alerts.cancelled.is_(None),
                ~answered,
            )
            .order_by(ref.due_at, ref.bundle_id)
        )
        with self._translated("overdue_due"), self._engine.connect() as conn:
            return [_referral_record(row._mapping) for row in conn.execute(query)]

    def mark_overdue(self, bundle_id: str, *, at: datetime) -> bool:
        col = referrals_table.c
        with self._translated("mark_overdue"), self._engine.begin() as conn:
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
        with self._translated("resolve_overdue", alert_id=alert_id), self._engine.begin() as conn:
            row = conn.execute(sa.select(col.bundle_id).where(*where)).first()
            if row is None:
                return None
            changed = conn.execute(
                referrals_table.update()
                .where(col.bundle_id == row[0], *where[3:])
                .values(overdue_resolved_at=as_utc(at))
            ).rowcount
            return _get_referral(conn, row[0]) if changed == 1 else None

    def count_overdue(self) -> int:
        col = referrals_table.c
        query = sa.select(sa.func.count()).where(
            col.overdue_at.is_not(None), col.overdue_resolved_at.is_(None)
        )
        with self._translated("count_overdue"), self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

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
        with self._translated("record_attempt"), self._engine.begin() as conn:
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
                with self._engine.begin() as conn:
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
        with self._translated("add_event", alert_id=event.alert_id), self._engine.begin() as conn:
            conn.execute(events_table.insert().values(**row))

    def journey(self, alert_id: str) -> list[JourneyEvent]:
        query = (
            sa.select(events_table)
            .where(events_table.c.alert_id == alert_id)
            .order_by(events_table.c.at, events_table.c.id)
        )
        with self._translated("journey", alert_id=alert_id), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            JourneyEvent(
                alert_id=row.alert_id,
                at=row.at,
                stage=row.stage,
                event=row.event,
                endpoint=row.endpoint,
                detail=row.detail,
            )
            for row in rows
        ]

    def close(self) -> None:
        self._engine.dispose()

    # -- beyond the Protocol ------------------------------------------------------------------

    def ping(self) -> None:
        """Readiness: return if the database answers, else raise `TransientError`."""
        with self._translated("ping"), self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- read side for operators (hub trace) --------------------------------------------------

    def find_alert_ids(self, any_id: str) -> list[str]:
        """The alert ids known by `any_id`: an alert id, the source's reference (custody record
        or case number), a Bundle id, an X-Request-Id or an outcome id. Rejected alerts count."""
        a, r, j, o = alerts_table.c, referrals_table.c, rejections_table.c, outcomes_table.c
        queries = [
            sa.select(a.alert_id).where(sa.or_(a.alert_id == any_id, a.reference == any_id)),
            sa.select(r.alert_id).where(sa.or_(r.bundle_id == any_id, r.request_id == any_id)),
            sa.select(j.alert_id).where(sa.or_(j.alert_id == any_id, j.reference == any_id)),
            sa.select(o.alert_id).where(sa.or_(o.outcome_id == any_id, o.bundle_id == any_id)),
        ]
        found: dict[str, None] = {}
        with self._translated("find_alert_ids"), self._engine.connect() as conn:
            for query in queries:
                found.update(dict.fromkeys(conn.scalars(query)))
        return list(found)

    def attempts_for(self, bundle_id: str) -> list[AttemptRecord]:
        """Every delivery attempt of one referral, oldest first."""
        c = attempts_table.c
        query = sa.select(attempts_table).where(c.bundle_id == bundle_id).order_by(c.at, c.id)
        with self._translated("attempts_for"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AttemptRecord(
                bundle_id=row.bundle_id,
                at=row.at,
                result=row.result,
                http_status=row.http_status,
                reason_code=row.reason_code,
                duration_ms=row.duration_ms,
            )
            for row in rows
        ]

    def outcomes_for(self, alert_id: str) -> list[OutcomeRecord]:
        """Every outcome sent to the justice side for one alert, oldest first."""
        c = outcomes_table.c
        query = sa.select(outcomes_table).where(c.alert_id == alert_id).order_by(c.at)
        with self._translated("outcomes_for", alert_id=alert_id), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            OutcomeRecord(
                outcome_id=row.outcome_id,
                alert_id=row.alert_id,
                bundle_id=row.bundle_id,
                status=row.status,
                at=row.at,
            )
            for row in rows
        ]

    @contextmanager
    def _translated(self, operation: str, *, alert_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(
                f"ledger unavailable ({self._where}) during {operation}: {_reason(exc)}",
                alert_id=alert_id,
            ) from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise LedgerUnavailable(
                f"ledger connection lost ({self._where}) during {operation}: {_reason(exc)}",
                alert_id=alert_id,
            ) from exc
