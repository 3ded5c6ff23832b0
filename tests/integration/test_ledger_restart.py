"""The ledger across a restart of its PostgreSQL (a cluster of the test's own, tests/cluster.py):
while it is away every call raises LedgerUnavailable, and once it is back the ledger works again
at once, without pool pre-ping: the first lost connection invalidates the whole pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.errors import LedgerUnavailable
from tests.cluster import PgCluster, pg_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with pg_cluster() as made:
        yield made


def _fill_pool(ledger: SqlLedger, n: int) -> None:
    """Leave `n` connections in the pool, each used once."""
    barrier = threading.Barrier(n)

    def use() -> None:
        with ledger._engine.connect() as conn:
            barrier.wait(timeout=10)
            conn.exec_driver_sql("SELECT 1")

    threads = [threading.Thread(target=use) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=15)
    assert ledger._engine.pool.checkedin() == n


def test_a_restart_costs_one_failed_call_not_one_per_pooled_connection(pg: PgCluster) -> None:
    ledger = SqlLedger(pg.url, pre_ping=False)
    try:
        _fill_pool(ledger, 4)
        pg.ctl("stop", "-m", "fast")
        with pytest.raises(LedgerUnavailable):
            ledger.get_alert("00000000-0000-4000-8000-000000000000")
        with pytest.raises(LedgerUnavailable):
            ledger.ping()
        pg.ctl("start")
        # Every pooled connection predates the restart: none is handed out again.
        for _ in range(4):
            ledger.ping()
            assert ledger.get_alert("00000000-0000-4000-8000-000000000000") is None
    finally:
        ledger.close()


def test_the_failed_message_store_is_away_in_the_same_words(pg: PgCluster) -> None:
    store = SqlFailedStore(pg.url)
    try:
        pg.ctl("stop", "-m", "fast")
        with pytest.raises(LedgerUnavailable):
            store.list()
    finally:
        pg.ctl("start")
        store.close()
