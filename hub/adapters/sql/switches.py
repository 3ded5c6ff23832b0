"""Operators' pause switches for endpoints, in the ledger's database (SQLAlchemy Core): written by
`hub endpoint pause|resume`, polled by every running hub (hub.stages.endpoint_gate.PauseWatcher).

A row per endpoint ever switched; a paused endpoint stays paused across hub restarts until an
operator resumes it. Connection errors become TransientError here.

    hub_endpoint_switches  endpoint (primary key), paused, changed_at, changed_by, reason
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

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
from hub.errors import TransientError

metadata = sa.MetaData()

switches_table = sa.Table(
    "hub_endpoint_switches",
    metadata,
    sa.Column("endpoint", sa.String(128), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("changed_at", _UtcDateTime, nullable=False),
    sa.Column("changed_by", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)


@dataclass(frozen=True, slots=True)
class EndpointSwitch:
    endpoint: str
    paused: bool
    changed_at: datetime
    changed_by: str
    reason: str | None


class SqlEndpointSwitches:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parsed = _normalise_url(url)
        self._where = _describe(parsed)
        self._engine: Engine = _build_engine(parsed, timeout=timeout)
        with self._translated("create tables"):
            _create_tables(self._engine, metadata)

    def set_paused(
        self, endpoint: str, *, paused: bool, at: datetime, by: str, reason: str | None = None
    ) -> None:
        row = {"paused": paused, "changed_at": as_utc(at), "changed_by": by, "reason": reason}
        with self._translated("set"), self._engine.begin() as conn:
            updated = conn.execute(
                switches_table.update().where(switches_table.c.endpoint == endpoint).values(**row)
            ).rowcount
            if not updated:
                try:
                    with conn.begin_nested():
                        conn.execute(switches_table.insert().values(endpoint=endpoint, **row))
                except sa_exc.IntegrityError:  # inserted concurrently: the update wins
                    conn.execute(
                        switches_table.update()
                        .where(switches_table.c.endpoint == endpoint)
                        .values(**row)
                    )

    def all(self) -> list[EndpointSwitch]:
        with self._translated("list"), self._engine.connect() as conn:
            rows = conn.execute(sa.select(switches_table).order_by(switches_table.c.endpoint))
            return [
                EndpointSwitch(
                    endpoint=r.endpoint,
                    paused=bool(r.paused),
                    changed_at=r.changed_at,
                    changed_by=r.changed_by,
                    reason=r.reason,
                )
                for r in rows
            ]

    def paused(self) -> frozenset[str]:
        return frozenset(s.endpoint for s in self.all() if s.paused)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise TransientError(
                f"endpoint switches unavailable ({self._where}) during {operation}: {_reason(exc)}"
            ) from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise TransientError(
                f"endpoint switches connection lost ({self._where}) during {operation}: "
                f"{_reason(exc)}"
            ) from exc
