"""The real hub, run as `hub run` with intake taking alerts in large batches (amqp.batch_size
200, prefetch 200), SIGKILLed while it works through a backlog queued before it started, then
started again: every alert is routed once in the ledger (one referral per endpoint, each
DELIVERED), every Bundle reaches the trust (repeats only under the same X-Request-Id, which the
BaRS idempotency answers 409 duplicate), the justice side hears `received` for each referral,
and nothing is rejected or parked. The helpers are test_crash_recovery's."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.adapters.sql.ledger import SqlLedger
from hub.records import AlertState, ReferralState
from hub.testing.fake_trust import FakeTrust
from hub.transforms.referral_ids import referral_ids
from hub.wire import ALERT_QUEUES
from tests.conftest import ID_KEY, Justice, free_port, wait_until, write_config
from tests.e2e.test_crash_recovery import (  # noqa: F401 - `trust` is a fixture
    DLQ_QUEUES,
    KEY,
    ONE_ENDPOINT,
    TWO_ENDPOINTS,
    HubProcess,
    assert_received_once_per_referral,
    log_tail,
    now_iso,
    routing_key,
    trust,
)
from tests.fixtures.alerts import custody_alert

pytestmark = pytest.mark.e2e

N_ALERTS = 1500
BATCH = 200
KILL_AFTER_DELIVERED = 20  # Bundles at the trust: intake's first batches are through
DRAIN_TIMEOUT = 240.0
# A backlog streams in at well under a millisecond a message: 100 ms after the first is ample
# for a batch to fill (at the default 5 ms the first batch takes about a third of 200).
AMQP_YAML = f"amqp: {{batch_size: {BATCH}, prefetch: {BATCH}, batch_wait_ms: 100}}\n"


def endpoints_for(i: int) -> tuple[str, ...]:
    # By conftest's routes: substance misuse → [leeds-dat, wy-ld]; otherwise → [wy-ld].
    return ("leeds-dat", "wy-ld") if i % 2 else ("wy-ld",)


def settled_depth(justice: Justice, queue: str) -> int:
    """The queue's depth once the broker has taken back what a killed consumer held."""
    last = -1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = justice.queue_depth(queue)
        if now == last:
            return now
        last = now
        time.sleep(0.3)
    return last


def kill_when_a_batch_is_in_hand(db_url: str, alert_ids: list[str], hub: HubProcess) -> None:
    """SIGKILL the hub the moment the ledger holds two or more of these alerts recorded but
    not yet routed (polled every few milliseconds on one connection)."""
    engine = sa.create_engine(db_url)
    query = sa.text(
        "SELECT count(*) FROM hub_alerts WHERE alert_id = ANY(:ids) AND state = 'received'"
    )
    deadline = time.monotonic() + 60
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                if conn.execute(query, {"ids": alert_ids}).scalar_one() >= 2:
                    hub.kill()
                    return
                conn.rollback()  # a fresh snapshot for the next look
                time.sleep(0.003)
    finally:
        engine.dispose()
    raise AssertionError("no intake batch was ever seen in hand")


def ledger_states(db_url: str, alert_ids: list[str]) -> Counter[str]:
    """How many of these alerts the ledger holds, by state."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT state, count(*) FROM hub_alerts WHERE alert_id = ANY(:ids) "
                    "GROUP BY state"
                ),
                {"ids": alert_ids},
            ).all()
    finally:
        engine.dispose()
    return Counter({str(state): int(count) for state, count in rows})


def rejections(db_url: str, alert_ids: list[str]) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM hub_rejections WHERE alert_id = ANY(:ids)"),
                    {"ids": alert_ids},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_hub_killed_while_intake_works_on_large_batches_routes_and_delivers_every_alert_once(
    amqp_url: str,
    pg_url: str,
    tmp_path: Path,
    trust: FakeTrust,  # noqa: F811
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    port = free_port()
    config = write_config(
        tmp_path / "config", trust=trust, api_port=port, extra_endpoint_yaml=AMQP_YAML
    )
    env = {**os.environ, "HUB_AMQP_URL": amqp_url, "HUB_DB_URL": pg_url, "HUB_API_PORT": str(port)}
    env["HUB_ID_KEY"] = ID_KEY
    hub = HubProcess(config, env, port, tmp_path / "hub.log")

    alerts = [
        custody_alert(sent_at=now_iso(), vulnerabilities=TWO_ENDPOINTS if i % 2 else ONE_ENDPOINT)
        for i in range(N_ALERTS)
    ]
    alert_ids = [a["alert_id"] for a in alerts]
    expected_pairs = {
        (a["alert_id"], endpoint) for i, a in enumerate(alerts) for endpoint in endpoints_for(i)
    }
    expected_request_ids = {
        referral_ids(KEY, alert_id, endpoint).bundle_id: referral_ids(
            KEY, alert_id, endpoint
        ).request_id
        for alert_id, endpoint in expected_pairs
    }
    expected = len(expected_pairs)
    assert expected == N_ALERTS // 2 * 3
    queue = ALERT_QUEUES["custody"]

    justice: Justice | None = None
    ledger: SqlLedger | None = None
    try:
        # A first start declares the topology; the backlog is queued while the hub is down,
        # so its first batches are full.
        hub.start()
        justice = Justice(amqp_url)
        hub.terminate()
        for alert in alerts:
            justice.publish(alert, routing_key=routing_key(alert))  # confirmed
        assert justice.queue_depth(queue) == N_ALERTS

        hub.start()
        wait_until(
            lambda: len(trust.delivered()) >= KILL_AFTER_DELIVERED,
            timeout=60,
            what=f"{KILL_AFTER_DELIVERED} Bundles at the trust before the kill",
        )
        # Then kill at a moment a batch is in hand: alerts recorded but not yet routed (their
        # batch's jobs are being published; routed, then acked, comes after).
        kill_when_a_batch_is_in_hand(pg_url, alert_ids, hub)
        delivered_before_kill = len(trust.delivered())
        alerts_left_at_kill = settled_depth(justice, queue)
        at_kill = ledger_states(pg_url, alert_ids)
        recorded_at_kill = sum(at_kill.values())
        # Mid-stream: some Bundles delivered but far from all.
        assert 1 <= delivered_before_kill <= expected - BATCH, delivered_before_kill
        # Mid-batch: intake acks a batch only once all of it is committed and routed, so an
        # alert in the ledger whose message is still on the queue was in a batch in hand.
        acked_at_kill = N_ALERTS - alerts_left_at_kill
        in_hand = recorded_at_kill - acked_at_kill
        assert in_hand > 1, (recorded_at_kill, acked_at_kill, at_kill)
        assert alerts_left_at_kill > 0  # and batches were still to come
        hub.start()

        wait_until(
            lambda: {r.bundle_id for r in trust.delivered()} >= set(expected_request_ids),
            timeout=DRAIN_TIMEOUT,
            what="every expected referral at the trust",
        )
        wait_until(
            lambda: justice is not None and justice.queue_depth(queue) == 0,
            what="the alert queue drained",
        )
        time.sleep(0.5)  # let a late repeat (if any) land before counting

        # The trust: every Bundle acted on once, under the ids the hub derives from the alert.
        delivered = trust.delivered()
        received = list(trust.received)
        repeats = [r for r in received if r.duplicate]
        assert {r.bundle_id for r in delivered} == set(expected_request_ids)
        assert {(r.correlation_id, r.endpoint) for r in delivered} == expected_pairs
        assert len(delivered) == expected, "a request id was answered 200 twice"
        by_bundle: dict[str, set[str]] = defaultdict(set)
        for r in received:
            by_bundle[r.bundle_id].add(r.request_id)
        assert {b: ids for b, ids in by_bundle.items() if len(ids) > 1} == {}
        assert {b: next(iter(ids)) for b, ids in by_bundle.items()} == expected_request_ids
        # Repeats are only what BaRS idempotency absorbs: a request id already answered 200,
        # with the very same bytes.
        first_body = {r.request_id: r.body for r in delivered}
        assert all(r.request_id in first_body for r in repeats)
        changed = [r.bundle_id for r in repeats if r.body != first_body[r.request_id]]
        assert not changed, f"a redelivered Bundle differs from the first: {changed[:5]}"

        # The ledger: each alert routed once, one referral per endpoint, every one DELIVERED.
        ledger = SqlLedger(pg_url)
        states: Counter[str] = Counter()
        for i, alert_id in enumerate(alert_ids):
            stored = ledger.get_alert(alert_id)
            assert stored is not None, alert_id
            states[stored.state.value] += 1
            referrals = ledger.referrals_for(alert_id)
            assert sorted(r.endpoint for r in referrals) == sorted(endpoints_for(i)), alert_id
            assert {r.state for r in referrals} == {ReferralState.DELIVERED}, alert_id
        assert states == Counter({AlertState.ROUTED.value: N_ALERTS})
        assert rejections(pg_url, alert_ids) == 0

        # Nothing parked or dead-lettered.
        for dlq in DLQ_QUEUES:
            assert justice.queue_depth(dlq) == 0, f"{dlq} is not empty"

        # The justice side: `received` for every referral, one outcome id each.
        repeated_outcomes = assert_received_once_per_referral(
            justice, expected_pairs, expected, timeout=60
        )

        elapsed = time.monotonic() - started
        print(
            f"crash mid-batch: {N_ALERTS} alerts, {expected} referrals, batches of {BATCH}; "
            f"killed after {delivered_before_kill} delivered with {alerts_left_at_kill} alerts "
            f"left on {queue}, the ledger holding {dict(at_kill)} ({in_hand} in hand); "
            f"{len(repeats)} repeat POSTs answered 409 duplicate; "
            f"{repeated_outcomes} repeated received outcomes; {elapsed:.1f}s"
        )
        request.node.user_properties.append(("duplicates_409", len(repeats)))
        request.node.user_properties.append(("repeated_outcomes", repeated_outcomes))
    except BaseException:
        print(f"hub log tail ({hub.log}):\n{log_tail(hub.log)}")
        raise
    finally:
        hub.terminate()
        if ledger is not None:
            ledger.close()
        if justice is not None:
            justice.close()
