"""What every failed-message store (SQL or in memory) accepts and keeps: the stored form of a
dead letter and the audit rows an operator's action writes.

Pure: no I/O. Shared so the fake and the real store cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from hub.records import AuditEntry, NewFailure

AUDIT_ACTIONS = frozenset({"replay", "discard", "reveal"})
# The ops console's sign-in events, recorded against failed_id CONSOLE_EVENTS (no message).
CONSOLE_AUDIT_ACTIONS = frozenset({"sign_in", "sign_out", "login_locked", "login_throttled"})
CONSOLE_EVENTS = 0
# Exact (unsuppressed) pathway reports, `hub report --exact` and the console's: failed_id 0.
REPORT_AUDIT_ACTIONS = frozenset({"report_exact"})
# The SQL store's column sizes (hub/adapters/sql/failed_store.py), enforced by every store so the
# fake refuses what PostgreSQL would.
COLUMN_LIMITS = {
    "stage": 64,
    "endpoint": 128,
    "error_class": 128,
    "original_exchange": 255,
    "original_routing_key": 255,
    "original_queue": 255,
    "message_id": 255,
    "alert_id": 128,
    "content_type": 255,
}
_TEXT_FIELDS = (*COLUMN_LIMITS, "error_message", "operation_outcome")


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused rather than guessed at."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: the failed-message store keeps UTC, pass a tz-aware one")
    return value.astimezone(UTC)


def stored_failure(failure: NewFailure) -> NewFailure:
    """A dead letter as a store gives it back: times in UTC, the body as bytes, the headers
    after a JSON round trip (what cannot be stored fails here with TypeError, as text too long
    for its column, a NUL or an unpaired surrogate, which PostgreSQL refuses, with ValueError)."""
    for name in _TEXT_FIELDS:
        value = getattr(failure, name)
        if value is None:
            continue
        limit = COLUMN_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            raise ValueError(f"{name} is longer than its column ({limit})")
        if not storable_text(value):
            raise ValueError(f"{name} holds a NUL or an unpaired surrogate")
    headers = json.dumps(dict(failure.headers))
    if not all(storable_text(text) for text in _strings(failure.headers)):
        raise ValueError("headers hold a NUL or an unpaired surrogate")
    return replace(
        failure,
        first_failure=utc(failure.first_failure),
        last_failure=utc(failure.last_failure),
        body=bytes(failure.body),
        headers=json.loads(headers),
    )


def storable_text(value: str) -> bool:
    """False for text PostgreSQL cannot keep: a NUL, or an unpaired surrogate (not UTF-8)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(value: object) -> Iterator[str]:
    """Every key and string in a JSON-like value (iteratively: depth is the sender's)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


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
