"""The ops console's live sessions, one contract for the in-memory store
(hub.console_guard.LiveSessions) and the database one (hub.adapters.sql.console_sessions) on SQLite
and PostgreSQL: a session is live until it ends or outlives its age, only for its operator, and
in the database a session started through one hub is seen (and ended) through another."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.adapters.sql.console_sessions import SqlLiveSessions
from hub.ports import LiveSessionStore
from hub.security.console_guard import LiveSessions
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

MAX_AGE = 3600.0
NOW = 1_800_000_000.0


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def open_sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], LiveSessionStore]]:
    """Opens stores on one database of the test's own, as two hubs would (for the in-memory
    store, the one shared instance is the database)."""
    shared = LiveSessions(max_age=MAX_AGE)
    url: list[str] = []
    opened: list[SqlLiveSessions] = []

    def make() -> LiveSessionStore:
        if request.param == "memory":
            return shared
        if not url:
            url.append(
                f"sqlite:///{tmp_path / 'hub.db'}"
                if request.param == "sqlite"
                else request.getfixturevalue("new_pg_schema")()
            )
        store = SqlLiveSessions(url[0], max_age=MAX_AGE)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_a_session_is_live_for_its_operator_until_it_ends(
    open_sessions: Callable[[], LiveSessionStore],
) -> None:
    sessions = open_sessions()

    sid = sessions.start("alice", now=NOW)

    assert sessions.is_live(sid, "alice", now=NOW + 1)
    assert not sessions.is_live(sid, "bob", now=NOW + 1)
    assert not sessions.is_live(sid + "x", "alice", now=NOW + 1)
    assert not sessions.is_live(None, "alice", now=NOW + 1)
    sessions.end(sid)
    assert not sessions.is_live(sid, "alice", now=NOW + 2)


def test_a_session_older_than_its_age_is_not_live(
    open_sessions: Callable[[], LiveSessionStore],
) -> None:
    sessions = open_sessions()

    sid = sessions.start("alice", now=NOW)

    assert sessions.is_live(sid, "alice", now=NOW + MAX_AGE - 1)
    assert not sessions.is_live(sid, "alice", now=NOW + MAX_AGE + 1)


def test_ending_all_of_an_operators_sessions_leaves_the_others(
    open_sessions: Callable[[], LiveSessionStore],
) -> None:
    sessions = open_sessions()
    alice1, alice2 = sessions.start("alice", now=NOW), sessions.start("alice", now=NOW)
    bob = sessions.start("bob", now=NOW)

    sessions.end_all("alice")

    assert not sessions.is_live(alice1, "alice", now=NOW) and not sessions.is_live(
        alice2, "alice", now=NOW
    )
    assert sessions.is_live(bob, "bob", now=NOW)


def test_a_session_started_through_one_hub_is_ended_through_another(
    open_sessions: Callable[[], LiveSessionStore],
) -> None:
    one, other = open_sessions(), open_sessions()

    sid = one.start("alice", now=NOW)
    assert other.is_live(sid, "alice", now=NOW)
    other.end(sid)

    assert not one.is_live(sid, "alice", now=NOW)


def test_the_database_holds_no_usable_session_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    sessions = SqlLiveSessions(url, max_age=MAX_AGE)
    sid = sessions.start("alice", now=NOW)
    sessions.close()

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM hub_console_sessions")).all()
    engine.dispose()

    assert len(rows) == 1 and sid not in repr(rows)
