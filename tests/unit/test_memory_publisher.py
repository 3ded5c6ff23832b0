"""What MemoryPublisher adds for tests beyond the Publisher contract
(tests/integration/test_publisher_contract.py): failure injection and reading back by exchange
and routing key."""

from __future__ import annotations

import pytest

from hub.adapters.memory.publisher import MemoryPublisher
from hub.errors import TransientError

pytestmark = pytest.mark.unit


def test_an_injected_failure_raises_transient_once_and_keeps_nothing() -> None:
    publisher = MemoryPublisher()
    publisher.fail_next()

    with pytest.raises(TransientError, match="not confirmed"):
        publisher.publish(exchange="hub.work", routing_key="q", body=b"first")
    publisher.publish(exchange="hub.work", routing_key="q", body=b"second")

    assert publisher.bodies() == [b"second"]


def test_a_failure_for_one_routing_key_leaves_the_others_alone() -> None:
    publisher = MemoryPublisher()
    publisher.fail_next(2, routing_key="hub.deliver.a")

    publisher.publish(exchange="hub.work", routing_key="hub.deliver.b", body=b"b")
    for _ in range(2):
        with pytest.raises(TransientError):
            publisher.publish(exchange="hub.work", routing_key="hub.deliver.a", body=b"a")
    publisher.publish(exchange="hub.work", routing_key="hub.deliver.a", body=b"a")

    assert [(p.routing_key, p.body) for p in publisher.published] == [
        ("hub.deliver.b", b"b"),
        ("hub.deliver.a", b"a"),
    ]


def test_a_kept_failure_records_the_message_yet_raises_as_an_unconfirmed_publish_may() -> None:
    publisher = MemoryPublisher()
    publisher.fail_next(kept=True)

    with pytest.raises(TransientError):
        publisher.publish(exchange="hub.work", routing_key="q", body=b"maybe", message_id="m-1")
    publisher.publish(exchange="hub.work", routing_key="q", body=b"maybe", message_id="m-1")

    assert [p.message_id for p in publisher.messages("hub.work", "q")] == ["m-1", "m-1"]


def test_reading_back_filters_by_exchange_and_routing_key() -> None:
    publisher = MemoryPublisher(clock=lambda: 1700000000.9)
    publisher.publish(exchange="justice.outcomes", routing_key="custody.x", body=b"1")
    publisher.publish(exchange="hub.work", routing_key="custody.x", body=b"2")
    publisher.publish(exchange="hub.work", routing_key="hub.deliver.a", body=b"3")

    assert publisher.bodies("hub.work") == [b"2", b"3"]
    assert publisher.bodies(routing_key="custody.x") == [b"1", b"2"]
    assert publisher.last("hub.work").body == b"3"
    assert publisher.last().timestamp == 1700000000
    assert len(publisher) == 3
    with pytest.raises(AssertionError, match="nothing published to justice.alerts"):
        publisher.last("justice.alerts")


def test_a_record_cannot_be_changed() -> None:
    publisher = MemoryPublisher()
    publisher.publish(exchange="x", routing_key="k", body=b"{}", headers={"a": 1})
    record = publisher.last()

    with pytest.raises(AttributeError):
        record.body = b"changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.headers["a"] = 2  # type: ignore[index]
    assert record.headers == {"a": 1}
