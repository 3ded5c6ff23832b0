"""The ledger's database restarted twice under load (a PostgreSQL cluster of the test's own,
tests/cluster.py; a failover to a standby looks the same to the hub): every alert is delivered
once in effect, and the hub never acks an alert whose ledger write has not committed: a probe
between each stage and the broker reads the ledger, over a connection of its own, before every
intake ack, and no message takes the retry path (an ack too) while the ledger is away."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import hub.bootstrap
from hub.adapters.rabbitmq.connection import queue_depths
from hub.adapters.sql.ledger import SqlLedger
from hub.bootstrap import Hub
from hub.errors import LedgerUnavailable, TransientError
from hub.pipeline import Dispatcher, RetryPolicy
from hub.records import AlertState
from hub.settings.load import load_settings
from hub.testing.fake_trust import FakeTrust
from hub.wire import Disposition, Envelope
from tests.cluster import PgCluster, pg_cluster
from tests.conftest import ID_KEY, SERVICES, Justice, free_port, wait_until, write_config
from tests.delivery_audit import DLQ_QUEUES, AlertStream, routing_key

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

N_ALERTS = 100
PUBLISH_SECONDS = 10.0
RESTART_AT_FRACTIONS = (0.3, 0.65)
DRAIN_TIMEOUT = 90.0


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    with pg_cluster() as made:
        yield made


@pytest.fixture
def trust() -> Iterator[FakeTrust]:
    trust = FakeTrust(services=SERVICES).start()
    yield trust
    trust.stop()


class AckProbe:
    """Stands between each Dispatcher and its QueueWorker: records every disposition, and
    before an intake ack reads the alert back from the ledger (waiting out a restart: what was
    committed is still there afterwards; what was not, is not)."""

    def __init__(self, reader: SqlLedger) -> None:
        self.reader = reader
        self.dispositions: Counter[tuple[str, str]] = Counter()
        self.retries: Counter[str] = Counter()
        self.uncommitted_acks: list[str] = []
        self._lock = threading.Lock()

    def dispatcher_class(self) -> type[Dispatcher]:
        probe = self

        class ProbedDispatcher(Dispatcher):
            def __call__(self, envelope: Envelope) -> Disposition:
                disposition = super().__call__(envelope)
                if disposition is Disposition.ACK and self.stage.name == "intake":
                    probe.check_committed(envelope)
                with probe._lock:
                    probe.dispositions[(self.stage.name, str(disposition))] += 1
                return disposition

            def _retry_or_dead_letter(self, envelope: Envelope, error: TransientError) -> None:
                with probe._lock:
                    probe.retries[self.stage.name] += 1
                super()._retry_or_dead_letter(envelope, error)

        return ProbedDispatcher

    def check_committed(self, envelope: Envelope) -> None:
        alert_id = envelope.message_id or ""
        deadline = time.monotonic() + 60
        while True:
            try:
                record = self.reader.get_alert(alert_id)
                break
            except LedgerUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if record is None or record.state is not AlertState.ROUTED:
            with self._lock:
                self.uncommitted_acks.append(alert_id)


def test_the_ledger_restarting_twice_under_load_loses_and_duplicates_nothing(
    amqp_url: str,
    pg: PgCluster,
    tmp_path: Path,
    trust: FakeTrust,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    # No pool pre-ping for the hub's ledger: a lost connection must be handled as such.
    ledger = SqlLedger(pg.url, pre_ping=False)
    probe = AckProbe(SqlLedger(pg.url))
    monkeypatch.setattr(hub.bootstrap, "Dispatcher", probe.dispatcher_class())
    port = free_port()
    config = write_config(tmp_path / "config", trust=trust, api_port=port)
    settings = load_settings(
        config, env={"HUB_AMQP_URL": amqp_url, "HUB_DB_URL": pg.url, "HUB_ID_KEY": ID_KEY}
    )
    the_hub = Hub(
        settings,
        ledger=ledger,
        retry=RetryPolicy(delays=(1, 2), deadline=timedelta(seconds=120)),
        park_dead_letters=False,
        serve_api=False,
        watch_pauses=False,
    )
    stream = AlertStream(N_ALERTS)
    justice: Justice | None = None
    away_seen = 0
    restarts: list[float] = []
    try:
        the_hub.start()
        justice = Justice(amqp_url)

        def publish(alert: dict[str, Any]) -> None:
            assert justice is not None
            justice.publish(alert, routing_key=routing_key(alert))  # confirmed

        thread = stream.publish_steadily(publish, seconds=PUBLISH_SECONDS)
        for fraction in RESTART_AT_FRACTIONS:
            at = int(len(stream.expected) * fraction)
            wait_until(lambda at=at: len(trust.delivered()) >= at, timeout=60, what=f"{at}")
            begin = time.monotonic()
            pg.ctl("stop", "-m", "fast")  # every session ends, as in a failover
            # /readyz says the database is away meanwhile.
            assert the_hub.readiness()["database"] is False
            away_seen += 1
            time.sleep(1.0)
            pg.ctl("start")
            restarts.append(time.monotonic() - begin)
        assert thread.is_alive() or stream.confirmed == N_ALERTS
        thread.join(timeout=PUBLISH_SECONDS + 60)
        assert not stream.errors, f"publishing failed: {stream.errors!r}"
        assert stream.confirmed == N_ALERTS
        last_confirm = time.monotonic()
        wait_until(
            lambda: stream.all_delivered(trust),
            timeout=DRAIN_TIMEOUT,
            what="every expected referral at the trust",
        )
        drain = time.monotonic() - last_confirm
        time.sleep(1.0)
        repeats = stream.audit(trust)
        assert probe.uncommitted_acks == [], "acked before the ledger committed"
        assert sum(probe.retries.values()) == 0, f"retry path taken: {probe.retries}"
        requeued = sum(n for (_, d), n in probe.dispositions.items() if d == "requeue")
        assert requeued > 0, "the restarts should have caught some messages mid-stage"
        depths = queue_depths(amqp_url, [*DLQ_QUEUES, "hub.retry.1s", "hub.retry.2s"])
        assert set(depths.values()) == {0}, depths
        assert the_hub.readiness()["database"]
        assert away_seen == len(RESTART_AT_FRACTIONS)

        summary = (
            f"database restarts: {N_ALERTS} alerts confirmed, {len(stream.expected)} referrals "
            f"delivered once each, 0 lost, 0 duplicated in effect ({repeats} repeat POSTs "
            f"answered 409 duplicate); {len(restarts)} PostgreSQL restarts "
            f"({', '.join(f'{r:.1f}s' for r in restarts)}), {requeued} messages requeued "
            f"unacked while the ledger was away, 0 acked uncommitted, 0 retries, 0 dead "
            f"letters; drained {drain:.1f}s after the last confirm; "
            f"{time.monotonic() - started:.1f}s in all"
        )
        print(summary)
        request.node.user_properties.append(("summary", summary))
    finally:
        the_hub.stop()
        if justice is not None:
            justice.close()
        ledger.close()
        probe.reader.close()
