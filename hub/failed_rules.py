"""What every failed-message store (SQL or in memory) accepts and keeps: the stored form of a
dead letter and the audit rows an operator's action writes.

Pure: no I/O. Shared so the fake and the real store cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from hub.ports import AuditEntry, NewFailure

AUDIT_ACTIONS = frozenset({"replay", "discard", "reveal"})
# The ops console's sign-in events, recorded against failed_id CONSOLE_EVENTS (no message).
CONSOLE_AUDIT_ACTIONS = frozenset({"sign_in", "sign_out", "login_locked", "login_throttled"})
CONSOLE_EVENTS = 0
# Exact (unsuppressed) pathway reports, `hub report --exact` and the console's: failed_id 0.
REPORT_AUDIT_ACTIONS = frozenset({"report_exact"})


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused rather than guessed at."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: the failed-message store keeps UTC, pass a tz-aware one")
    return value.astimezone(UTC)


def stored_failure(failure: NewFailure) -> NewFailure:
    """A dead letter as a store gives it back: times in UTC, the body as bytes, the headers
    after a JSON round trip (what cannot be stored fails here with TypeError)."""
    return replace(
        failure,
        first_failure=utc(failure.first_failure),
        last_failure=utc(failure.last_failure),
        body=bytes(failure.body),
        headers=json.loads(json.dumps(dict(failure.headers))),
    )


def audit_entries(
    action: str, ids: Sequence[int], *, by: str, reason: str, at: datetime
) -> list[AuditEntry]:
    """One audit row per id. An unknown action, or no operator or reason, is refused
    (ValueError) even when there is nothing to record."""
    if action not in AUDIT_ACTIONS | CONSOLE_AUDIT_ACTIONS | REPORT_AUDIT_ACTIONS:
        raise ValueError(f"audit action must be one of {sorted(AUDIT_ACTIONS)}")
    if not by.strip() or not reason.strip():
        raise ValueError("an audited action needs who did it and why")
    at = utc(at)
    return [AuditEntry(at=at, action=action, failed_id=int(i), by=by, reason=reason) for i in ids]
