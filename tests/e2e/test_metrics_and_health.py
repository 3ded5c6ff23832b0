"""GET /metrics and /readyz on a running hub with the real RabbitMQ and PostgreSQL: counters
with their labels after real traffic, queue depths sampled off the broker, readiness checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.fixtures.alerts import to_body, with_changes

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(rig: HubRig) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{rig.api_port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def watched(rig_factory: Callable[..., HubRig]) -> HubRig:
    return rig_factory(queue_watch_seconds=0.2)


def test_metrics_count_a_delivered_and_a_rejected_alert_with_their_labels(watched: HubRig) -> None:
    rig = watched
    good = fresh_custody()
    bad = fresh_custody()
    rig.justice.publish(good, routing_key=key_for(good))
    rig.justice.publish(
        to_body(with_changes(bad, {"urgency": "whenever"})),
        routing_key=key_for(bad),
        message_id=bad["alert_id"],
    )

    rig.justice.wait_for(
        lambda got: (
            {(o["alert_id"], o["status"]) for o in got}
            >= {(good["alert_id"], "received"), (bad["alert_id"], "rejected")}
        )
    )
    samples = scrape(rig)

    assert metric(samples, "hub_alerts_received_total", source_kind="custody") == 2
    assert metric(samples, "hub_alerts_rejected_total", source_kind="custody") == 1
    assert metric(samples, "hub_referrals_delivered_total", endpoint="wy-ld") == 1
    assert metric(samples, "hub_delivery_attempt_seconds_count", endpoint="wy-ld") == 1
    assert metric(samples, "hub_dead_letters_total", stage="intake", endpoint="") == 1
    assert metric(samples, "hub_circuit_state", endpoint="wy-ld", state="closed") == 1
    # Counted over the whole (shared) database; its values are proved in test_overdue.py.
    assert metric(samples, "hub_overdue_referrals") >= 0
    # every hub queue has an age but the retry queues (where waiting is the point)
    aged = {
        dict(labels)["queue"]
        for name, labels in samples
        if name == "hub_queue_oldest_message_age_seconds"
    }
    assert {"hub.alerts.custody", "hub.outcomes.inbound", "hub.dlq.intake"} <= aged
    assert "hub.deliver.wy-ld" in aged
    assert not [queue for queue in aged if queue.startswith("hub.retry.")]


def test_queue_depth_gauge_follows_an_unconsumed_dead_letter_queue(watched: HubRig) -> None:
    rig = watched
    connection = pika.BlockingConnection(pika.URLParameters(rig.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(2):
        channel.basic_publish(
            "hub.dlq", "deliver", json.dumps({"n": n}).encode(), pika.BasicProperties()
        )
    connection.close()

    def depth() -> float | None:
        return metric(scrape(rig), "hub_queue_depth", queue="hub.dlq.deliver")

    wait_until(lambda: depth() == 2, timeout=10, what="hub.dlq.deliver depth 2 on /metrics")
    samples = scrape(rig)
    assert metric(samples, "hub_queue_depth", queue="hub.alerts.custody") == 0
    # The store is shared with other tests' hubs (one database): its size is reported, whatever.
    assert metric(samples, "hub_failed_messages") is not None


def test_readyz_is_200_with_broker_database_consumers_and_topology(rig: HubRig) -> None:
    response = httpx.get(f"http://127.0.0.1:{rig.api_port}/readyz", timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["checks"] == {"consumers": True, "topology": True, "database": True, "broker": True}


def test_oldest_message_age_of_a_delivery_queue_comes_from_the_ledger(
    rig_factory: Callable[..., HubRig],
) -> None:
    from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
    from tests.e2e.test_delivery_failures import Script

    rig = rig_factory(queue_watch_seconds=0.2, behaviour=Script("wy-ld", 503, 10_000), replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    def age() -> float | None:
        return metric(
            scrape(rig), "hub_queue_oldest_message_age_seconds", queue="hub.deliver.wy-ld"
        )

    wait_until(lambda: (age() or 0) > 1, timeout=15, what="a growing age on hub.deliver.wy-ld")


def test_a_dead_letter_nobody_takes_shows_a_growing_age_and_empty_queues_show_zero(
    rig_factory: Callable[..., HubRig], tmp_path: Path
) -> None:
    # This hub does not park dead letters (nothing consumes hub.dlq.*), and has a ledger of
    # its own (the shared one holds other tests' undelivered referrals).
    rig = rig_factory(queue_watch_seconds=0.2, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")

    def age(queue: str) -> float | None:
        return metric(scrape(rig), "hub_queue_oldest_message_age_seconds", queue=queue)

    wait_until(lambda: age("hub.dlq.outcome") == 0.0, timeout=10, what="hub.dlq.outcome seen empty")
    connection = pika.BlockingConnection(pika.URLParameters(rig.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("hub.dlq", "outcome", b"{}", pika.BasicProperties(delivery_mode=2))
    connection.close()

    wait_until(lambda: (age("hub.dlq.outcome") or 0) > 1, timeout=10, what="an age over 1 s")
    first = age("hub.dlq.outcome")
    wait_until(lambda: (age("hub.dlq.outcome") or 0) > (first or 0) + 1, timeout=10, what="growth")
    for queue in ("hub.alerts.custody", "hub.alerts.court", "hub.outcomes.inbound"):
        assert age(queue) == 0.0, queue
    assert age("hub.deliver.wy-ld") == 0.0  # no referral waiting, says the ledger
