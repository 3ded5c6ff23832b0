"""The failed-message store on SQLite or PostgreSQL (SQLAlchemy Core, the ledger's database):
every dead letter parked with its reasons, original bytes and headers, until an operator acts.

Unlike the ledger this store holds personal data (the original message, so it can be replayed
byte for byte): views mask it (`hub.operations`), and nothing here logs it. Nothing expires.

    hub_failed_messages  id, fingerprint (unique), stage, endpoint, error_class, error_message,
                         attempts, first/last_failure, original exchange/routing key/queue,
                         http_status, operation_outcome, message_id, alert_id, content_type,
                         body, headers (JSON), group_key, state, received_at, state_by,
                         state_reason, state_at
    hub_audit_log        id, at, action, failed_id, by, reason (append-only: no method here
                         updates or deletes it)
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from hub.adapters.sql.engine import (
    _CONNECTION_ERRORS,
    _build_engine,
    _create_tables,
    _describe,
    _normalise_url,
    _reason,
)
from hub.adapters.sql.tables import _UtcDateTime, as_utc
from hub.errors import LedgerUnavailable, PermanentError, TransientError
from hub.records import AuditEntry, FailedMessage, FailedState, FailureGroup, NewFailure
from hub.store_rules.failed import audit_entries, stored_failure

_ID = 128
_CODE_LEN = 64

metadata = sa.MetaData()

failed_table = sa.Table(
    "hub_failed_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
    sa.Column("stage", sa.String(_CODE_LEN), nullable=False),
    sa.Column("endpoint", sa.String(_ID), nullable=True),
    sa.Column("error_class", sa.String(_ID), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("first_failure", _UtcDateTime, nullable=False),
    sa.Column("last_failure", _UtcDateTime, nullable=False),
    sa.Column("original_exchange", sa.String(255), nullable=True),
    sa.Column("original_routing_key", sa.String(255), nullable=True),
    sa.Column("original_queue", sa.String(255), nullable=True),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("operation_outcome", sa.Text, nullable=True),
    sa.Column("message_id", sa.String(255), nullable=True),
    sa.Column("alert_id", sa.String(_ID), nullable=True, index=True),
    sa.Column("content_type", sa.String(255), nullable=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("group_key", sa.String(64), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("received_at", _UtcDateTime, nullable=False),
    sa.Column("state_by", sa.String(_ID), nullable=True),
    sa.Column("state_reason", sa.Text, nullable=True),
    sa.Column("state_at", _UtcDateTime, nullable=True),
)

audit_table = sa.Table(
    "hub_audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("action", sa.String(_CODE_LEN), nullable=False),
    sa.Column("failed_id", sa.Integer, nullable=False, index=True),
    sa.Column("by", sa.String(_ID), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


class SqlFailedStore:
    """`hub.ports.FailedStore` on a database URL (the ledger's). An unreachable or locked
    database raises `TransientError`, so the DLQ ingester leaves the message on its queue."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parsed = _normalise_url(url)
        self._where = _describe(parsed)
        self._engine: Engine = _build_engine(parsed, timeout=timeout)
        with self._translated("create tables"):
            _create_tables(self._engine, metadata)

    def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
        row = _failure_row(failure)
        row.update(state=FailedState.FAILED.value, received_at=as_utc(at))
        with self._translated("add"):
            try:
                with self._engine.begin() as conn:
                    new_id = conn.execute(failed_table.insert().values(**row)).inserted_primary_key
                assert new_id is not None
                return True, int(new_id[0])
            except sa_exc.IntegrityError:
                # The same dead letter delivered again (the ack was lost): one row only.
                with self._engine.connect() as conn:
                    existing = conn.scalar(
                        sa.select(failed_table.c.id).where(
                            failed_table.c.fingerprint == failure.fingerprint
                        )
                    )
                if existing is None:
                    raise TransientError("failed message was being stored concurrently") from None
                return False, int(existing)

    def get(self, failed_id: int) -> FailedMessage | None:
        query = sa.select(failed_table).where(failed_table.c.id == failed_id)
        with self._translated("get"), self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _failed_message(row._mapping)

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
        c = failed_table.c
        query = sa.select(failed_table).order_by(c.id)
        if group:
            query = query.where(c.group_key.startswith(group))  # a prefix, as git takes hashes
        if stage:
            query = query.where(c.stage == stage)
        if endpoint:
            query = query.where(c.endpoint == endpoint)
        if since:
            query = query.where(c.last_failure >= as_utc(since))
        if alert_id:
            query = query.where(c.alert_id == alert_id)
        if state:
            query = query.where(c.state == FailedState(state).value)
        with self._translated("list"), self._engine.connect() as conn:
            return [_failed_message(row._mapping) for row in conn.execute(query)]

    def groups(self) -> builtins.list[FailureGroup]:
        c = failed_table.c
        still_failed = sa.func.sum(sa.case((c.state == FailedState.FAILED.value, 1), else_=0))
        query = (
            sa.select(
                c.group_key,
                c.stage,
                c.endpoint,
                c.error_class,
                sa.func.min(c.error_message).label("sample_error"),
                still_failed.label("count"),
                sa.func.count().label("total"),
                sa.func.min(c.first_failure).label("first_failure"),
                sa.func.max(c.last_failure).label("last_failure"),
            )
            .group_by(c.group_key, c.stage, c.endpoint, c.error_class)
            .order_by(sa.desc("count"), c.group_key)
        )
        with self._translated("groups"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        utc = _UtcDateTime()
        return [
            FailureGroup(
                group_key=row.group_key,
                stage=row.stage,
                endpoint=row.endpoint,
                error_class=row.error_class,
                sample_error=row.sample_error,
                count=int(row._mapping["count"] or 0),
                total=int(row.total),
                # Aggregates lose the column type on SQLite: re-read them as UTC times.
                first_failure=_as_time(row.first_failure, utc, self._engine),
                last_failure=_as_time(row.last_failure, utc, self._engine),
            )
            for row in rows
        ]

    def mark_replayed(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]:
        return self._move(ids, FailedState.REPLAYED, action="replay", by=by, reason=reason, at=at)

    def mark_discarded(
        self, ids: Sequence[int], *, by: str, reason: str, at: datetime
    ) -> builtins.list[int]:
        return self._move(ids, FailedState.DISCARDED, action="discard", by=by, reason=reason, at=at)

    def audit(self, action: str, ids: Sequence[int], *, by: str, reason: str, at: datetime) -> None:
        rows = _audit_rows(action, ids, by=by, reason=reason, at=at)
        if rows:
            with self._translated("audit"), self._engine.begin() as conn:
                conn.execute(audit_table.insert(), rows)

    def audit_log(self, failed_id: int | None = None) -> builtins.list[AuditEntry]:
        c = audit_table.c
        query = sa.select(audit_table).order_by(c.at, c.id)
        if failed_id is not None:
            query = query.where(c.failed_id == failed_id)
        with self._translated("audit_log"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEntry(at=r.at, action=r.action, failed_id=r.failed_id, by=r.by, reason=r.reason)
            for r in rows
        ]

    def count(self, state: FailedState | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(failed_table)
        if state:
            query = query.where(failed_table.c.state == FailedState(state).value)
        with self._translated("count"), self._engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def ping(self) -> None:
        with self._translated("ping"), self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self._engine.dispose()

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
        """FAILED → `state` and the audit rows, in one transaction: an operator's action is
        either done and recorded, or neither."""
        at = as_utc(at)
        c = failed_table.c
        with self._translated(action), self._engine.begin() as conn:
            # Only FAILED rows move: a replayed or discarded message stays as it was.
            movable = list(
                conn.scalars(
                    sa.select(c.id)
                    .where(c.id.in_(list(ids)), c.state == FailedState.FAILED.value)
                    .order_by(c.id)
                    .with_for_update()
                )
            )
            if not movable:
                return []
            conn.execute(
                failed_table.update()
                .where(c.id.in_(movable))
                .values(state=state.value, state_by=by, state_reason=reason, state_at=at)
            )
            conn.execute(
                audit_table.insert(), _audit_rows(action, movable, by=by, reason=reason, at=at)
            )
        return movable

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(
                f"failed-message store unavailable ({self._where}) during {operation}: "
                f"{_reason(exc)}"
            ) from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                # The database refused this row or query (a value too long, bad data): asking
                # again would be refused again.
                raise PermanentError(
                    f"failed-message store refused {operation} ({self._where}): {_reason(exc)}"
                ) from exc
            raise LedgerUnavailable(
                f"failed-message store connection lost ({self._where}) during {operation}: "
                f"{_reason(exc)}"
            ) from exc


def _audit_rows(
    action: str, ids: Sequence[int], *, by: str, reason: str, at: datetime
) -> list[dict[str, Any]]:
    return [asdict(entry) for entry in audit_entries(action, ids, by=by, reason=reason, at=at)]


_FAILURE_FIELDS = tuple(NewFailure.__dataclass_fields__)


def _failure_row(failure: NewFailure) -> dict[str, Any]:
    stored = stored_failure(failure)
    return {name: getattr(stored, name) for name in _FAILURE_FIELDS}


def _failed_message(row: Any) -> FailedMessage:
    fields = {name: row[name] for name in _FAILURE_FIELDS}
    fields["body"] = bytes(fields["body"])
    return FailedMessage(
        id=int(row["id"]),
        failure=NewFailure(**fields),
        state=FailedState(row["state"]),
        received_at=row["received_at"],
        state_by=row["state_by"],
        state_reason=row["state_reason"],
        state_at=row["state_at"],
    )


def _as_time(value: Any, utc: _UtcDateTime, engine: Engine) -> datetime:
    if isinstance(value, str):  # SQLite returns aggregates of timestamps as text
        value = datetime.fromisoformat(value)
    result = utc.process_result_value(value, engine.dialect)
    assert result is not None
    return result
