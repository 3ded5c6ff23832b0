"""An in-memory `hub.ports.FailedStore` for fast tests: the same behaviour as `SqlFailedStore`
(ids from 1, grouping, ordering, states, an audit log that only grows), no database.

Lists behind one lock; it passes the same contract suite as the SQL store, so it cannot drift.
Like the SQL store it holds personal data (the original messages) and logs nothing.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from hub.records import AuditEntry, FailedMessage, FailedState, FailureGroup, NewFailure
from hub.store_rules.failed import audit_entries, stored_failure, utc


class MemoryFailedStore:
    """`hub.ports.FailedStore` in memory. Naive datetimes raise `ValueError`, as in
    `SqlFailedStore`; `ping` always succeeds. Text is compared by code point, as the SQL store
    does on SQLite and on PostgreSQL with the C collation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[int, FailedMessage] = {}  # id → message, ids ascending
        self._by_fingerprint: dict[str, int] = {}
        self._audit: list[AuditEntry] = []

    def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
        failure = stored_failure(failure)
        received_at = utc(at)
        with self._lock:
            known = self._by_fingerprint.get(failure.fingerprint)
            if known is not None:
                return False, known
            failed_id = len(self._messages) + 1  # rows are never deleted
            self._messages[failed_id] = FailedMessage(
                id=failed_id, failure=failure, state=FailedState.FAILED, received_at=received_at
            )
            self._by_fingerprint[failure.fingerprint] = failed_id
            return True, failed_id

    def get(self, failed_id: int) -> FailedMessage | None:
        with self._lock:
            message = self._messages.get(failed_id)
        return None if message is None else _fresh(message)

    def list(
        self,
        *,
        group: str | None = None,
        stage: str | None = None,
        endpoint: str | None = None,
        since: datetime | None = None,
        alert_id: str | None = None,
        state: FailedState | None = None,
    ) -> builtins.list[FailedMessage]:
        since = utc(since) if since else None
        state = FailedState(state) if state else None
        with self._lock:
            messages = builtins.list(self._messages.values())
        return [
            _fresh(m)
            for m in messages
            if (not group or m.failure.group_key.startswith(group))
            and (not stage or m.failure.stage == stage)
            and (not endpoint or m.failure.endpoint == endpoint)
            and (since is None or m.failure.last_failure >= since)
            and (not alert_id or m.failure.alert_id == alert_id)
            and (state is None or m.state is state)
        ]

    def groups(self) -> builtins.list[FailureGroup]:
        with self._lock:
            messages = builtins.list(self._messages.values())
        grouped: dict[tuple[str, str, str | None, str], builtins.list[FailedMessage]] = {}
        for m in messages:
            f = m.failure
            grouped.setdefault((f.group_key, f.stage, f.endpoint, f.error_class), []).append(m)
        groups = [
            FailureGroup(
                group_key=key,
                stage=stage,
                endpoint=endpoint,
                error_class=error_class,
                sample_error=min(m.failure.error_message for m in members),
                count=sum(m.state is FailedState.FAILED for m in members),
                total=len(members),
                first_failure=min(m.failure.first_failure for m in members),
                last_failure=max(m.failure.last_failure for m in members),
            )
            for (key, stage, endpoint, error_class), members in grouped.items()
        ]
        return sorted(groups, key=lambda g: (-g.count, g.group_key))

    def mark_replayed(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]:
        return self._move(ids, FailedState.REPLAYED, action="replay", by=by, reason=reason, at=at)

    def mark_discarded(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]:
        return self._move(ids, FailedState.DISCARDED, action="discard", by=by, reason=reason, at=at)

    def audit(self, action: str, ids: Sequence[int], *, by: str, reason: str, at: datetime) -> None:
        entries = audit_entries(action, ids, by=by, reason=reason, at=at)
        with self._lock:
            self._audit.extend(entries)

    def audit_log(self, failed_id: int | None = None) -> builtins.list[AuditEntry]:
        with self._lock:
            numbered = builtins.list(enumerate(self._audit))
        return [
            entry
            for _, entry in sorted(numbered, key=lambda n: (n[1].at, n[0]))
            if failed_id is None or entry.failed_id == failed_id
        ]

    def count(self, state: FailedState | None = None) -> int:
        return len(self.list(state=state))

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _move(
        self,
        ids: Sequence[int],
        state: FailedState,
        *,
        action: str,
        by: str,
        reason: str,
        at: datetime,
    ) -> builtins.list[int]:
        """FAILED → `state` and the audit rows under one lock: done and recorded, or neither."""
        at = utc(at)
        with self._lock:
            movable = sorted(
                i
                for i in set(ids)
                if i in self._messages and self._messages[i].state is FailedState.FAILED
            )
            if not movable:
                return []
            entries = audit_entries(action, movable, by=by, reason=reason, at=at)
            for i in movable:
                self._messages[i] = replace(
                    self._messages[i], state=state, state_by=by, state_reason=reason, state_at=at
                )
            self._audit.extend(entries)
        return movable


def _fresh(message: FailedMessage) -> FailedMessage:
    """A copy whose headers the caller may change, as each read from a database is."""
    headers = copy.deepcopy(message.failure.headers)
    return replace(message, failure=replace(message.failure, headers=headers))
