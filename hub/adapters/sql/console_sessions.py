"""The ops console's live sessions in the ledger's database (SQLAlchemy Core), so every hub
serving /ops/ honours the same sessions and a sign-out on one ends the session on all; the same
contract as hub.security.console_guard.LiveSessions (tests/integration/test_console_sessions.py).

Only a SHA-256 digest of each session id is stored: reading the table does not let anyone
sign in. Rows older than a session's lifetime are deleted as new sessions start. Connection
errors become TransientError here.

    hub_console_sessions  id_sha256 (primary key), operator, started_at, ended_at
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

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
from hub.adapters.sql.tables import _UtcDateTime
from hub.errors import TransientError

metadata = sa.MetaData()

sessions_table = sa.Table(
    "hub_console_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("operator", sa.String(128), nullable=False),
    sa.Column("started_at", _UtcDateTime, nullable=False, index=True),
    sa.Column("ended_at", _UtcDateTime, nullable=True),
)


_GRACE = timedelta(hours=1)  # expired rows are kept a little, for anyone looking at the table


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SqlLiveSessions:
    def __init__(self, url: str, *, max_age: float, timeout: float = 10.0) -> None:
        parsed = _normalise_url(url)
        self.max_age = max_age
        self._where = _describe(parsed)
        self._engine: Engine = _build_engine(parsed, timeout=timeout)
        with self._translated("create tables"):
            _create_tables(self._engine, metadata)

    def start(self, operator: str, *, now: float) -> str:
        session_id = secrets.token_urlsafe(24)
        c = sessions_table.c
        with self._translated("start"), self._engine.begin() as conn:
            conn.execute(
                sessions_table.delete().where(c.started_at < _at(now - self.max_age) - _GRACE)
            )
            conn.execute(
                sessions_table.insert().values(
                    id_sha256=_digest(session_id), operator=operator, started_at=_at(now)
                )
            )
        return session_id

    def is_live(self, session_id: str | None, operator: str | None, *, now: float) -> bool:
        if not session_id or operator is None:
            return False
        c = sessions_table.c
        query = sa.select(c.started_at).where(
            c.id_sha256 == _digest(session_id), c.operator == operator, c.ended_at.is_(None)
        )
        with self._translated("check"), self._engine.connect() as conn:
            started = conn.execute(query).scalar_one_or_none()
        return started is not None and (_at(now) - started).total_seconds() <= self.max_age

    def end(self, session_id: str | None) -> None:
        if not session_id:
            return
        c = sessions_table.c
        with self._translated("end"), self._engine.begin() as conn:
            conn.execute(
                sessions_table.update()
                .where(c.id_sha256 == _digest(session_id), c.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )

    def end_all(self, operator: str) -> None:
        c = sessions_table.c
        with self._translated("end all"), self._engine.begin() as conn:
            conn.execute(
                sessions_table.update()
                .where(c.operator == operator, c.ended_at.is_(None))
                .values(ended_at=datetime.now(UTC))
            )

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise TransientError(
                f"console sessions unavailable ({self._where}) during {operation}: {_reason(exc)}"
            ) from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise TransientError(
                f"console sessions connection lost ({self._where}) during {operation}: "
                f"{_reason(exc)}"
            ) from exc
