"""The quorum queues' initial group size on the real broker: new queues carry it, and queues an
earlier hub made without it (or with another size) do not stop start-up, since the argument
only counts when a queue is created and RabbitMQ refuses a redeclaration that differs."""

from __future__ import annotations

import pika
import pytest
import structlog

from hub.adapters.rabbitmq.connection import GROUP_SIZE_ARG, connected
from hub.adapters.rabbitmq.topology import Topology
from hub.errors import ConfigError
from hub.wire import ALERT_QUEUES

pytestmark = pytest.mark.integration


def _redeclare(amqp_url: str, queue: str, arguments: dict[str, object]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(queue, durable=True, arguments=arguments)
    finally:
        if connection.is_open:
            connection.close()


def _arguments(queue: str, **extra: object) -> dict[str, object]:
    # What the hub declares for an alert queue, plus `extra`.
    topology = Topology(endpoints=[], retry_delays=[], group_size=None)
    (found,) = (q for q, _ in topology._queues() if q.name == queue)
    return {**found.queue_arguments, **extra}


def test_new_queues_are_created_with_the_initial_group_size(amqp_url: str) -> None:
    with connected(amqp_url) as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10]).declare(conn)
    queue = ALERT_QUEUES["custody"]
    _redeclare(amqp_url, queue, _arguments(queue, **{GROUP_SIZE_ARG: 3}))  # equivalent
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        _redeclare(amqp_url, queue, _arguments(queue))
    assert GROUP_SIZE_ARG in str(refused.value)


@pytest.mark.parametrize("made_with", [None, 5], ids=["made-without-a-size", "made-with-5"])
def test_queues_an_earlier_hub_made_keep_their_members_and_start_up_goes_on(
    amqp_url: str, made_with: int | None
) -> None:
    with connected(amqp_url) as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10], group_size=made_with).declare(conn)
    with structlog.testing.capture_logs() as logs, connected(amqp_url) as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10], group_size=3).declare(conn)
    kept = [e for e in logs if e["event"] == "queue_group_size_kept"]
    assert len(kept) == len(Topology(endpoints=["wy-ld"], retry_delays=[10]).all_queue_names())
    assert all(e["wanted"] == 3 and "rabbitmq-queues grow" in e["hint"] for e in kept)


def test_a_queue_differing_in_another_argument_still_stops_start_up(amqp_url: str) -> None:
    queue = ALERT_QUEUES["custody"]
    _redeclare(amqp_url, queue, _arguments(queue, **{"x-delivery-limit": 3}))
    with pytest.raises(ConfigError) as refused, connected(amqp_url) as conn:
        Topology(endpoints=["wy-ld"], retry_delays=[10]).declare(conn)
    assert "x-delivery-limit" in str(refused.value)
