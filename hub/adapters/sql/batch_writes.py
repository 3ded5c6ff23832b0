"""The ledger's writes for a batch of messages, on PostgreSQL in a few statements for the whole
batch (multi-row INSERT … ON CONFLICT, executemany UPDATE, one SELECT … IN): what intake and
delivery batches call inside a unit of work. Elsewhere (SQLite) each falls back to the one-row
call it stands for, so there is one behaviour on every backend (the ledger contract runs both).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from hub.adapters.sql.reads import SqlLedgerReads
from hub.adapters.sql.rows import _facts_dict, _insert_new_referrals, _referral_record
from hub.adapters.sql.tables import (
    _UtcDateTime,
    alert_vulnerabilities_table,
    alerts_table,
    as_utc,
    attempts_table,
    outcomes_table,
    referrals_table,
)
from hub.errors import TransientError
from hub.records import (
    AlertFacts,
    AlertRecord,
    AlertState,
    DeliveredAttempt,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
    Seen,
)
from hub.store_rules.attempts import reason_code

_INSERT_NEW_ALERTS = (
    pg_insert(alerts_table)
    .on_conflict_do_nothing(index_elements=[alerts_table.c.alert_id])
    .returning(alerts_table.c.alert_id)
)
_INSERT_VULNERABILITIES = alert_vulnerabilities_table.insert()
_INSERT_ATTEMPTS = attempts_table.insert()
_MARK_QUEUED = (
    alerts_table.update()
    .where(alerts_table.c.alert_id == sa.bindparam("queued_id"))
    .values(rule=sa.bindparam("queued_rule"), updated_at=sa.bindparam("queued_at"))
)
_MARK_ROUTED = (
    alerts_table.update()
    .where(alerts_table.c.alert_id.in_(sa.bindparam("routed_ids", expanding=True)))
    .values(state=AlertState.ROUTED.value, updated_at=sa.bindparam("routed_at"))
)
_MARK_DELIVERED = (
    referrals_table.update()
    .where(referrals_table.c.bundle_id == sa.bindparam("delivered_id"))
    .values(
        attempts=referrals_table.c.attempts + 1,
        state=ReferralState.DELIVERED.value,
        delivered_at=sa.func.coalesce(
            referrals_table.c.delivered_at,
            sa.bindparam("delivered_at", type_=_UtcDateTime()),
        ),
    )
)
_REFERRALS_BY_IDS = sa.select(referrals_table).where(
    referrals_table.c.bundle_id.in_(sa.bindparam("delivered_ids", expanding=True))
)
_INSERT_NEW_OUTCOMES = (
    pg_insert(outcomes_table)
    .on_conflict_do_nothing(index_elements=[outcomes_table.c.outcome_id])
    .returning(outcomes_table.c.outcome_id)
)


class SqlBatchWrites(SqlLedgerReads):
    """Batch writes. The one-row writes they fall back to (record_alert, record_attempt,
    record_outcome) are SqlLedger's, the class this one is mixed into
    (hub/adapters/sql/ledger.py): hence the attr-defined ignores."""

    def _batched(self, many: Sequence[Any]) -> bool:
        return len(many) > 1 and self._url.get_backend_name() == "postgresql"

    def record_alerts(self, many: Sequence[AlertFacts]) -> list[tuple[Seen, AlertRecord]]:
        """record_alert for each, in order. On PostgreSQL one INSERT … ON CONFLICT DO NOTHING
        for them all (the primary key still decides between competing workers: a row another
        worker is inserting is waited for), then the vulnerability rows in one statement."""
        if not self._batched(many):
            return [self.record_alert(facts) for facts in many]  # type: ignore[attr-defined]
        if len({f.alert_id for f in many}) != len(many):
            raise ValueError("record_alerts: an alert id twice in one call")
        rows = [_alert_row(facts) for facts in many]
        with self._translated("record_alerts"), self._writing() as conn:
            # One statement compiled once and cached (executemany: SQLAlchemy's "insertmanyvalues"
            # sends the rows as multi-row VALUES pages), whatever the batch's size.
            inserted = set(conn.execute(_INSERT_NEW_ALERTS, rows).scalars())
            vulnerabilities = [
                {"alert_id": f.alert_id, "type": t}
                for f in many
                if f.alert_id in inserted
                for t in sorted(set(f.vulnerability_types))
            ]
            if vulnerabilities:
                conn.execute(_INSERT_VULNERABILITIES, vulnerabilities)
        results: list[tuple[Seen, AlertRecord]] = []
        for facts, row in zip(many, rows, strict=True):
            if facts.alert_id in inserted:
                results.append((Seen.NEW, _new_record(facts, row)))
                continue
            stored = self.get_alert(facts.alert_id)
            if stored is None:  # the competing insert rolled back: the next try is clean
                raise TransientError(
                    "alert was being recorded concurrently; retry", alert_id=facts.alert_id
                )
            same = stored.facts.body_sha256 == facts.body_sha256
            results.append(((Seen.DUPLICATE if same else Seen.CONFLICT), stored))
        return results

    def mark_all_queued(
        self, routed: Sequence[tuple[str, str, Sequence[ReferralRecord]]], *, at: datetime
    ) -> None:
        """mark_routed(alert_id, rule=…, referrals=…, routed=False) for each (alert id, rule,
        referrals), in three statements for them all."""
        if not routed:
            return
        for alert_id, _, referrals in routed:
            for referral in referrals:
                if referral.alert_id != alert_id:
                    raise ValueError(f"referral {referral.bundle_id} belongs to another alert")
        at = as_utc(at)
        with self._translated("mark_all_queued"), self._writing() as conn:
            # The UPDATEs come first, so they take the alerts' row locks (as mark_routed).
            changed = conn.execute(
                _MARK_QUEUED,
                [
                    {"queued_id": alert_id, "queued_rule": rule, "queued_at": at}
                    for alert_id, rule, _ in routed
                ],
            ).rowcount
            if changed != len(routed):
                raise KeyError("mark_all_queued: an alert the ledger does not hold")
            _insert_new_referrals(conn, [r for _, _, refs in routed for r in refs], at)

    def mark_all_routed(self, alert_ids: Sequence[str], *, at: datetime) -> None:
        """Alerts whose referrals mark_routed(routed=False) stored and whose delivery jobs are
        all confirmed: ROUTED, in one statement."""
        if not alert_ids:
            return
        with self._translated("mark_all_routed"), self._writing() as conn:
            conn.execute(_MARK_ROUTED, {"routed_ids": list(alert_ids), "routed_at": as_utc(at)})

    def record_deliveries(self, many: Sequence[DeliveredAttempt]) -> list[ReferralRecord]:
        """record_attempt(…, result="delivered") for each, in order: three statements."""
        if not self._batched(many):
            return [
                self.record_attempt(  # type: ignore[attr-defined]
                    d.bundle_id,
                    at=d.at,
                    result="delivered",
                    http_status=d.http_status,
                    detail=d.detail,
                    duration_ms=d.duration_ms,
                )
                for d in many
            ]
        with self._translated("record_deliveries"), self._writing() as conn:
            # As record_attempt: counted in the database; DELIVERED, first delivery time kept.
            changed = conn.execute(
                _MARK_DELIVERED,
                [{"delivered_id": d.bundle_id, "delivered_at": as_utc(d.at)} for d in many],
            ).rowcount
            if changed != len(many):
                raise KeyError("record_deliveries: a referral the ledger does not hold")
            conn.execute(
                _INSERT_ATTEMPTS,
                [
                    {
                        "bundle_id": d.bundle_id,
                        "at": as_utc(d.at),
                        "result": "delivered",
                        "http_status": d.http_status,
                        "reason_code": reason_code(d.detail),
                        "duration_ms": d.duration_ms,
                    }
                    for d in many
                ],
            )
            rows = conn.execute(
                _REFERRALS_BY_IDS, {"delivered_ids": [d.bundle_id for d in many]}
            ).all()
        found = {row.bundle_id: _referral_record(row._mapping) for row in rows}
        return [found[d.bundle_id] for d in many]

    def record_outcomes(self, many: Sequence[OutcomeRecord]) -> list[bool]:
        """record_outcome for each, in order (False for an outcome id already known): one
        INSERT … ON CONFLICT DO NOTHING."""
        if not self._batched(many) or len({o.outcome_id for o in many}) != len(many):
            return [
                self.record_outcome(  # type: ignore[attr-defined]
                    outcome_id=o.outcome_id,
                    alert_id=o.alert_id,
                    bundle_id=o.bundle_id,
                    status=o.status,
                    at=o.at,
                )
                for o in many
            ]
        rows = [
            {
                "outcome_id": o.outcome_id,
                "alert_id": o.alert_id,
                "bundle_id": o.bundle_id,
                "status": o.status,
                "at": as_utc(o.at),
            }
            for o in many
        ]
        with self._translated("record_outcomes"), self._writing() as conn:
            new = set(conn.execute(_INSERT_NEW_OUTCOMES, rows).scalars())
        return [o.outcome_id in new for o in many]


def _alert_row(facts: AlertFacts) -> dict[str, Any]:
    received_at = as_utc(facts.received_at)
    return {
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


def _new_record(facts: AlertFacts, row: dict[str, Any]) -> AlertRecord:
    stored_facts = AlertFacts(
        **{
            **_facts_dict(facts),
            "received_at": row["received_at"],
            "consent_recorded_at": row["consent_recorded_at"],
        }
    )
    return AlertRecord(facts=stored_facts, state=AlertState.RECEIVED, rule=None)
