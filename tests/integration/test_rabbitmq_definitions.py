"""config/rabbitmq/definitions.json on the real broker: each agency may publish only its own
alerts to justice.alerts and read only its own outcome queue; the hub's user can declare and
run the hub's topology."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from hub.adapters.rabbitmq.connection import connect
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.rabbitmq.topology import Topology
from hub.wire import ALERT_QUEUES, WORK_EXCHANGE, delivery_queue

pytestmark = pytest.mark.integration

DEFINITIONS = Path(__file__).parents[2] / "config" / "rabbitmq" / "definitions.json"


def ctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (
        f"rabbitmqctl {args[0]} failed: {result.stderr}; is RabbitMQ running? "
        "start it with: rabbitmq-server -detached"
    )


@pytest.fixture
def loaded(rabbitmq_available: None) -> Iterator[dict[str, str]]:
    doc = json.loads(DEFINITIONS.read_text())
    passwords = {u["name"]: uuid.uuid4().hex for u in doc["users"]}
    ctl("import_definitions", str(DEFINITIONS))
    for user, password in passwords.items():
        ctl("change_password", user, password)
    yield passwords
    ctl("delete_vhost", "ld-hub")
    for user in passwords:
        subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True, timeout=60)


def channel(user: str, password: str) -> pika.adapters.blocking_connection.BlockingChannel:
    conn = pika.BlockingConnection(
        pika.URLParameters(f"amqp://{user}:{password}@127.0.0.1:5672/ld-hub")
    )
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


def get_one(ch: pika.adapters.blocking_connection.BlockingChannel, queue: str) -> tuple[Any, bytes]:
    """The next message on `queue` (waiting a little for it), acked."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return props, body
        time.sleep(0.05)
    raise AssertionError(f"nothing arrived on {queue}")


def test_hub_user_can_declare_the_hub_topology(loaded: dict[str, str]) -> None:
    url = f"amqp://hub:{loaded['hub']}@127.0.0.1:5672/ld-hub"
    with connect(url) as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10]).declare(conn)
    # ... and run it: publish a delivery job on hub.work and take it off its queue.
    body = f'{{"job": "{uuid.uuid4()}"}}'.encode()
    publisher = KombuPublisher(url)
    try:
        publisher.publish(exchange=WORK_EXCHANGE, routing_key=delivery_queue("wy-ld"), body=body)
    finally:
        publisher.close()
    assert get_one(channel("hub", loaded["hub"]), delivery_queue("wy-ld"))[1] == body


def test_a_force_may_publish_its_own_alerts(loaded: dict[str, str]) -> None:
    with connect(f"amqp://hub:{loaded['hub']}@127.0.0.1:5672/ld-hub") as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10]).declare(conn)
    ch = channel("wyp-custody", loaded["wyp-custody"])
    body = f'{{"alert_id": "{uuid.uuid4()}"}}'.encode()
    ch.basic_publish(
        "justice.alerts",
        "custody.WYP01.identification",
        body,
        pika.BasicProperties(user_id="wyp-custody", delivery_mode=2),
    )
    # It reached the hub's custody queue, as the force that published it.
    props, got = get_one(channel("hub", loaded["hub"]), ALERT_QUEUES["custody"])
    assert (got, props.user_id) == (body, "wyp-custody")


def test_a_force_may_not_publish_for_another_organisation(loaded: dict[str, str]) -> None:
    ch = channel("wyp-custody", loaded["wyp-custody"])
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.basic_publish("justice.alerts", "court.LMC01.identification", b"{}")
    assert refused.value.reply_code == 403


def test_a_force_may_not_publish_into_the_hubs_own_exchanges(loaded: dict[str, str]) -> None:
    ch = channel("wyp-custody", loaded["wyp-custody"])
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.basic_publish("justice.outcomes", "custody.WYP01.accepted", b"{}")
    assert refused.value.reply_code == 403


def test_a_force_reads_its_own_outcome_queue_and_no_other(loaded: dict[str, str]) -> None:
    body = f'{{"outcome_id": "{uuid.uuid4()}"}}'.encode()
    channel("hub", loaded["hub"]).basic_publish(
        "justice.outcomes", "custody.WYP01.accepted", body, pika.BasicProperties(delivery_mode=2)
    )
    ch = channel("wyp-custody", loaded["wyp-custody"])
    assert get_one(ch, "justice.outcomes.WYP01")[1] == body
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.basic_get("justice.outcomes.LMC01", auto_ack=True)
    assert refused.value.reply_code == 403
