"""One engine per process: URL normalising, connection settings, tables created and columns
added once at start."""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from hub.adapters.sql.tables import (
    metadata,
)
from hub.errors import ConfigError

_CONNECTION_ERRORS = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # waiting for a pooled connection
)


def _normalise_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigError(["ledger url: not a database URL"]) from None
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(["ledger url: in-memory SQLite is not durable; use a file path"])
        return parsed
    raise ConfigError([f"ledger url: unsupported database {backend!r} (use sqlite or postgresql)"])


def _describe(url: URL) -> str:
    """Where the ledger lives, for operators' messages: never the password."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite {url.database}"
    return f"postgresql {url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _build_engine(url: URL, *, timeout: float, pre_ping: bool = True) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, pool_timeout=timeout, connect_args={"timeout": timeout})
        busy_ms = int(timeout * 1000)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            _enable_wal(cursor, deadline=time.monotonic() + timeout)
            cursor.close()

        return engine
    # libpq's own options, merged so a search_path given in the URL survives.
    given = url.query.get("options", ())
    given = (given,) if isinstance(given, str) else given
    options = " ".join([*given, f"-c statement_timeout={int(timeout * 1000)}"])
    # No dependence on pool_pre_ping: a restart or a failover ends every session, and the
    # first call to meet a dead connection fails (LedgerUnavailable, the message is requeued);
    # SQLAlchemy's psycopg dialect sees the connection broken and invalidates the whole pool,
    # so no other stale connection is handed out (tests/integration/test_ledger_restart.py).
    return sa.create_engine(
        url.difference_update_query(["options"]),
        pool_pre_ping=pre_ping,
        pool_timeout=timeout,
        connect_args={"connect_timeout": max(2, math.ceil(timeout)), "options": options},
    )


def _enable_wal(cursor: Any, *, deadline: float) -> None:
    """WAL, so readers never block the writer. Switching a new file to WAL takes an exclusive
    lock without waiting on busy_timeout, so workers opening it together retry briefly."""
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _create_tables(engine: Engine, tables: sa.MetaData = metadata) -> None:
    # create_all checks, then creates: workers starting together can both see a table missing
    # and one then fails on "already exists". Each such failure means one more table now
    # exists, so one pass per table plus one always ends with them all in place.
    passes = len(tables.tables) + 1
    for attempt in range(passes):
        try:
            tables.create_all(engine)
            _add_missing_columns(engine, tables)
            for table in tables.sorted_tables:  # create_all adds none to an existing table
                for index in table.indexes:
                    index.create(engine, checkfirst=True)
            return
        except sa_exc.DBAPIError as exc:
            collided = isinstance(exc, sa_exc.IntegrityError | sa_exc.ProgrammingError) or (
                "already exists" in str(exc.orig)
            )
            if not collided or attempt == passes - 1:
                raise


def _add_missing_columns(engine: Engine, tables: sa.MetaData) -> None:
    """Upgrade a database made by an earlier hub: add the columns added since. Only additive
    changes happen here, and only for columns that may be NULL or have a server default (so
    rows already stored stay valid); anything else is a ConfigError naming the column."""
    inspector = sa.inspect(engine)
    for table in tables.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise ConfigError(
                    [
                        f"the database's table {table.name} lacks column {column.name}, which "
                        "this hub cannot add by itself (NOT NULL without a default)"
                    ]
                )
            spec = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def _reason(exc: sa_exc.SQLAlchemyError) -> str:
    """The driver's first line, without SQLAlchemy's echo of the statement and parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
