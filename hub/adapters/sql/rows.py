"""Ledger rows <-> records: the mapping both the ledger and its reads use."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.adapters.sql.tables import (
    as_utc,
    changes_table,
    referrals_table,
)
from hub.records import (
    AlertFacts,
    AlertRecord,
    AlertState,
    ChangeFacts,
    ChangeRecord,
    ChangeState,
    ReferralRecord,
    ReferralState,
)


def _facts_dict(facts: AlertFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in AlertFacts.__dataclass_fields__}


def _alert_record(row: Any) -> AlertRecord:
    facts = AlertFacts(**{name: row[name] for name in AlertFacts.__dataclass_fields__})
    return AlertRecord(
        facts=facts, state=AlertState(row["state"]), rule=row["rule"], cancelled=row["cancelled"]
    )


def _change_dict(facts: ChangeFacts) -> dict[str, Any]:
    return {name: getattr(facts, name) for name in ChangeFacts.__dataclass_fields__}


# Statements built once: SQLAlchemy memoises a constant statement's cache key, while one built
# per call is coerced and keyed anew every time (about 100 µs of CPU each, issue 11).
_STORED_REFERRAL_IDS = sa.select(referrals_table.c.bundle_id).where(
    referrals_table.c.bundle_id.in_(sa.bindparam("wanted_ids", expanding=True))
)
_INSERT_REFERRALS = referrals_table.insert()
_REFERRAL_BY_ID = sa.select(referrals_table).where(
    referrals_table.c.bundle_id == sa.bindparam("wanted_id")
)
_CHANGE_BY_ID = sa.select(changes_table).where(
    changes_table.c.change_id == sa.bindparam("wanted_id")
)


def _insert_new_referrals(
    conn: Connection, referrals: Sequence[ReferralRecord], at: datetime
) -> None:
    """Store the referrals not stored yet (a re-driven intake or follow-up repeats them)."""
    wanted = {r.bundle_id: r for r in referrals}
    stored = set(conn.scalars(_STORED_REFERRAL_IDS, {"wanted_ids": list(wanted)}))
    new_rows = [_referral_row(r, at) for b, r in wanted.items() if b not in stored]
    if new_rows:
        conn.execute(_INSERT_REFERRALS, new_rows)


def _get_change(conn: Connection, change_id: str) -> ChangeRecord | None:
    row = conn.execute(_CHANGE_BY_ID, {"wanted_id": change_id}).first()
    if row is None:
        return None
    m = row._mapping
    facts = ChangeFacts(**{name: m[name] for name in ChangeFacts.__dataclass_fields__})
    return ChangeRecord(facts=facts, state=ChangeState(m["state"]))


def _referral_row(referral: ReferralRecord, created_at: datetime) -> dict[str, Any]:
    return {
        "bundle_id": referral.bundle_id,
        "alert_id": referral.alert_id,
        "endpoint": referral.endpoint,
        "request_id": referral.request_id,
        "state": ReferralState(referral.state).value,
        "attempts": referral.attempts,
        "delivered_at": None if referral.delivered_at is None else as_utc(referral.delivered_at),
        "kind": referral.kind,
        "change_id": referral.change_id,
        "created_at": as_utc(referral.created_at or created_at),
        "due_at": None if referral.due_at is None else as_utc(referral.due_at),
        "overdue_at": None,
        "overdue_resolved_at": None,
    }


def _referral_record(row: Any) -> ReferralRecord:
    return ReferralRecord(
        bundle_id=row["bundle_id"],
        alert_id=row["alert_id"],
        endpoint=row["endpoint"],
        request_id=row["request_id"],
        state=ReferralState(row["state"]),
        attempts=row["attempts"],
        delivered_at=row["delivered_at"],
        kind=row["kind"],
        change_id=row["change_id"],
        created_at=row["created_at"],
        due_at=row["due_at"],
        overdue_at=row["overdue_at"],
        overdue_resolved_at=row["overdue_resolved_at"],
    )


def _get_referral(conn: Connection, bundle_id: str) -> ReferralRecord | None:
    row = conn.execute(_REFERRAL_BY_ID, {"wanted_id": bundle_id}).first()
    return None if row is None else _referral_record(row._mapping)
