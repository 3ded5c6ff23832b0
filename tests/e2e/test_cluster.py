"""Past one machine, on this machine: a 3-node RabbitMQ cluster of the test's own
(tests/cluster.py), two hubs connected to different nodes, alerts published at a steady rate by
a publisher that fails over too; the node leading the hub's queues is killed (kill -9 of its
Erlang VM) mid-stream and started again. Every confirmed alert is delivered, none twice in
effect, no dead letter; the drain time after the node returns is reported."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu import Queue

from hub.adapters.rabbitmq.connection import Broker, connected, queue_depths
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.rabbitmq.topology import declared_exchange
from hub.bootstrap import Hub
from hub.pipeline import RetryPolicy
from hub.settings.load import load_settings
from hub.testing.fake_trust import FakeTrust
from hub.wire import ALERT_QUEUES, ALERTS_EXCHANGE, OUTCOMES_EXCHANGE
from tests.cluster import RabbitCluster, rabbit_cluster
from tests.conftest import ID_KEY, SERVICES, free_port, wait_until, write_config
from tests.delivery_audit import DLQ_QUEUES, AlertStream, routing_key

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

N_ALERTS = 120
PUBLISH_SECONDS = 12.0  # a steady 10 alerts a second
KILL_AFTER_FRACTION = 0.3
NODE_DOWN_SECONDS = 5.0
DRAIN_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[RabbitCluster]:
    with rabbit_cluster(3) as made:
        yield made


@pytest.fixture
def trust() -> Iterator[FakeTrust]:
    trust = FakeTrust(services=SERVICES).start()
    yield trust
    trust.stop()


def _hub(tmp_path: Path, name: str, trust: FakeTrust, urls: list[str], db_url: str) -> Hub:
    port = free_port()
    config = write_config(tmp_path / f"config-{name}", trust=trust, api_port=port)
    settings = load_settings(
        config, env={"HUB_AMQP_URL": ";".join(urls), "HUB_DB_URL": db_url, "HUB_ID_KEY": ID_KEY}
    )
    return Hub(
        settings,
        retry=RetryPolicy(delays=(1, 2), deadline=timedelta(seconds=120)),
        park_dead_letters=False,  # dead letters stay on hub.dlq.*, where the test counts them
        serve_api=False,
        watch_pauses=False,
    )


def _rotated(urls: list[str], k: int) -> list[str]:
    return urls[k:] + urls[:k]


def test_a_node_killed_under_load_loses_and_duplicates_nothing(
    cluster: RabbitCluster,
    pg_url: str,
    tmp_path: Path,
    trust: FakeTrust,
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    vhost = f"hubcl-{uuid.uuid4().hex[:8]}"
    cluster.add_vhost(vhost)
    urls = cluster.urls(vhost)
    stream = AlertStream(N_ALERTS)
    hubs: list[Hub] = []
    publisher: KombuPublisher | None = None
    try:
        # Hub A declares the topology through node 1, so node 1 leads its queues; hub B works
        # through node 2. Both list every node, each starting at its own.
        hubs.append(_hub(tmp_path, "a", trust, urls, pg_url))
        hubs[0].start()
        hubs.append(_hub(tmp_path, "b", trust, _rotated(urls, 1), pg_url))
        hubs[1].start()
        everyone = Broker(";".join(urls))
        with connected(everyone) as conn:
            # The justice side's outcome queue, so outcomes are routed (not hub.unrouted).
            outcomes = Queue(
                f"justice.test.{vhost}",
                exchange=declared_exchange(OUTCOMES_EXCHANGE),
                routing_key="#",
                durable=True,
                queue_arguments={"x-queue-type": "quorum"},
            )
            outcomes(conn.channel()).declare()
        queue = ALERT_QUEUES["custody"]
        leader = cluster.queue_leader(vhost, queue)
        assert leader == cluster.nodes[0].name
        assert sorted(cluster.members(vhost, queue)) == sorted(n.name for n in cluster.nodes)

        # The custody system publishes through the node that is about to die, failing over.
        publisher = KombuPublisher(Broker(";".join(urls)))

        def publish(alert: dict[str, Any]) -> None:
            assert publisher is not None
            publisher.publish(
                exchange=ALERTS_EXCHANGE,
                routing_key=routing_key(alert),
                body=json.dumps(alert).encode(),
                message_id=alert["alert_id"],
            )

        thread = stream.publish_steadily(publish, seconds=PUBLISH_SECONDS)
        kill_at = int(len(stream.expected) * KILL_AFTER_FRACTION)
        wait_until(
            lambda: len(trust.delivered()) >= kill_at, timeout=60, what=f"{kill_at} delivered"
        )
        victim = cluster.node_by_name(leader)
        delivered_at_kill, confirmed_at_kill = len(trust.delivered()), stream.confirmed
        victim.kill()
        killed_at = time.monotonic()
        assert thread.is_alive(), "the kill must land mid-stream"
        # While the node is down the hub still reaches the broker (another node).
        wait_until(
            lambda: all(h.readiness()["broker"] for h in hubs),
            timeout=20,
            what="readiness through another node",
        )
        time.sleep(max(0.0, NODE_DOWN_SECONDS - (time.monotonic() - killed_at)))
        victim.start()
        victim.wait()
        back_at = time.monotonic()
        down_seconds = back_at - killed_at

        thread.join(timeout=PUBLISH_SECONDS + 60)
        assert not thread.is_alive(), "the publisher did not finish"
        assert not stream.errors, f"publishing failed: {stream.errors!r}"
        assert stream.confirmed == N_ALERTS
        wait_until(
            lambda: stream.all_delivered(trust),
            timeout=DRAIN_TIMEOUT,
            what="every expected referral at the trust",
        )
        drained_at = time.monotonic()
        time.sleep(1.0)  # let a late repeat (if any) land before counting
        repeats = stream.audit(trust)
        depths = queue_depths(everyone, list(DLQ_QUEUES))
        assert depths == dict.fromkeys(DLQ_QUEUES, 0), depths
        new_leader = cluster.queue_leader(vhost, queue)

        summary = (
            f"cluster node loss: {N_ALERTS} alerts published and confirmed "
            f"({stream.publish_retries} publisher retries), {len(stream.expected)} referrals "
            f"delivered once each, 0 lost, 0 duplicated in effect ({repeats} repeat POSTs "
            f"answered 409 duplicate), 0 dead letters; 1 node kill ({leader}, the queues' "
            f"leader, now {new_leader}) after {delivered_at_kill} delivered / "
            f"{confirmed_at_kill} confirmed, down {down_seconds:.1f}s; drained "
            f"{drained_at - back_at:.1f}s after the node was back; "
            f"{time.monotonic() - started:.1f}s in all"
        )
        print(summary)
        request.node.user_properties.append(("summary", summary))
    finally:
        if publisher is not None:
            publisher.close()
        for hub in hubs:
            hub.stop()
