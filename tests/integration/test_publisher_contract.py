"""The Publisher contract (hub.ports.Publisher), written once as a behaviour base class and run
against KombuPublisher on the real RabbitMQ (a vhost per test, read back with pika as another
client would), KombuPublisher on kombu's memory transport (what `hub demo` runs on) and
MemoryPublisher (read back from its records), so the fake cannot drift from the real thing.

Each backend reads back what reached the exchange as hub.adapters.memory.publisher.Published
records, so one assertion compares bytes, routing key, headers, ids, content type, timestamp and
persistence for all three.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pika
import pytest
from kombu import Connection, Exchange, Queue

from hub.adapters.memory.publisher import MemoryPublisher, Published
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.errors import TransientError
from hub.ports import Publisher
from hub.wire import Outgoing

pytestmark = pytest.mark.integration

HOSTILE_BODIES = [
    b'{"alert_id": "a-1"}',
    b"",
    b"\x00\xff\xfe not utf-8 \x80",
    "Zoë 🚓 ١٢٣ \u202e".encode(),
    b"\r\n\r\nHTTP/1.1 200 OK\r\n" * 50,
    bytes(range(256)) * 40,  # 10 KiB of every byte value
]
HEADERS: dict[str, Any] = {
    "x-hub-alert-id": "a-1",
    "x-hub-attempts": 3,
    "x-hub-big": 2**40,
    "x-hub-negative": -7,
    "x-hub-flag": True,
    "x-hub-off": False,
    "x-hub-list": ["one", 2, "três"],
    "x-hub-table": {"stage": "deliver", "count": 1, "nested": {"k": "v"}},
    "x-hub-unicode": "Zoë \u202e",
}


class Readback(Protocol):
    """A publisher under test and the means to read back what reached its exchange."""

    publisher: Publisher
    exchange: str  # declared, its every routing key bound to one queue

    def read(self, count: int, timeout: float = 5.0) -> list[Published]:
        """The next `count` messages, in order; AssertionError if fewer arrive in time."""
        ...

    def marker(self) -> Published:
        """Publish a marker and read it back: proof that whatever was published before it
        and is not seen never arrived (the queue is FIFO)."""
        ...


class _MarkerMixin:
    publisher: Publisher
    exchange: str

    def read(self, count: int, timeout: float = 5.0) -> list[Published]:
        raise NotImplementedError

    def marker(self) -> Published:
        marker_id = f"marker-{uuid.uuid4()}"
        self.publisher.publish(
            exchange=self.exchange, routing_key="marker", body=b"{}", message_id=marker_id
        )
        (got,) = self.read(1)
        assert got.message_id == marker_id
        return got


@dataclass
class RabbitReadback(_MarkerMixin):
    publisher: KombuPublisher
    exchange: str
    queue: str
    channel: Any  # pika BlockingChannel

    def read(self, count: int, timeout: float = 5.0) -> list[Published]:
        got: list[Published] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            method, props, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                time.sleep(0.02)
                continue
            got.append(
                Published(
                    exchange=method.exchange,
                    routing_key=method.routing_key,
                    body=body,
                    # x-delivery-count is the quorum queue's, added on delivery.
                    headers={
                        k: v for k, v in (props.headers or {}).items() if k != "x-delivery-count"
                    },
                    message_id=props.message_id,
                    correlation_id=props.correlation_id,
                    content_type=props.content_type,
                    timestamp=props.timestamp,
                    persistent=props.delivery_mode == 2,
                )
            )
        assert len(got) == count, f"{len(got)} of {count} messages arrived on {self.queue}"
        return got


@dataclass
class MemoryTransportReadback(_MarkerMixin):
    publisher: KombuPublisher
    exchange: str
    queue: Any  # kombu Queue bound to a channel

    def read(self, count: int, timeout: float = 5.0) -> list[Published]:
        got: list[Published] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            message = self.queue.get(no_ack=True)
            if message is None:
                time.sleep(0.02)
                continue
            props = message.properties
            body = message.body
            got.append(
                Published(
                    exchange=message.delivery_info["exchange"],
                    routing_key=message.delivery_info["routing_key"],
                    body=body if isinstance(body, bytes) else str(body).encode(),
                    headers=message.headers or {},
                    message_id=props.get("message_id"),
                    correlation_id=props.get("correlation_id"),
                    content_type=message.content_type,
                    timestamp=props.get("timestamp"),
                    persistent=props.get("delivery_mode") == 2,
                )
            )
        assert len(got) == count, f"{len(got)} of {count} messages arrived"
        return got


@dataclass
class MemoryReadback(_MarkerMixin):
    publisher: MemoryPublisher
    exchange: str
    _taken: int = 0

    def read(self, count: int, timeout: float = 5.0) -> list[Published]:
        got = self.publisher.published[self._taken : self._taken + count]
        self._taken += len(got)
        assert len(got) == count, f"{len(got)} of {count} messages were recorded"
        return got


def published(exchange: str, routing_key: str, body: bytes, **props: Any) -> Published:
    """What a consumer must read back; the timestamp is compared separately."""
    return Published(
        exchange=exchange,
        routing_key=routing_key,
        body=body,
        headers=props.get("headers") or {},
        message_id=props.get("message_id"),
        correlation_id=props.get("correlation_id"),
        content_type=props.get("content_type", "application/json"),
        timestamp=0,
        persistent=True,
    )


def untimed(record: Published) -> Published:
    return replace(record, timestamp=0, headers=dict(record.headers))


# -- the contract -------------------------------------------------------------------------------


class PublisherContract:
    """What every Publisher does. Subclasses provide the `rb` fixture."""

    @pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
    def test_a_publish_arrives_with_its_exact_bytes_ids_headers_and_content_type(
        self, rb: Readback, body: bytes
    ) -> None:
        props: dict[str, Any] = {
            "headers": HEADERS,
            "message_id": f"m-{uuid.uuid4()}",
            "correlation_id": f"c-{uuid.uuid4()}",
            "content_type": "application/fhir+json",
        }

        rb.publisher.publish(
            exchange=rb.exchange, routing_key="hub.deliver.wy-ld", body=body, **props
        )

        (got,) = rb.read(1)
        assert untimed(got) == published(rb.exchange, "hub.deliver.wy-ld", body, **props)

    def test_without_options_a_publish_is_json_with_no_headers_or_ids(self, rb: Readback) -> None:
        rb.publisher.publish(exchange=rb.exchange, routing_key="k", body=b"{}")

        (got,) = rb.read(1)
        assert untimed(got) == published(rb.exchange, "k", b"{}")
        assert got.persistent

    def test_a_publish_carries_the_time_it_was_made_in_whole_seconds(self, rb: Readback) -> None:
        before = int(time.time())
        rb.publisher.publish(exchange=rb.exchange, routing_key="k", body=b"{}")
        after = time.time()

        (got,) = rb.read(1)
        assert before <= got.timestamp <= after

    def test_the_headers_given_are_copied_so_changing_them_afterwards_changes_nothing(
        self, rb: Readback
    ) -> None:
        headers: dict[str, Any] = {"x-hub-attempts": 1, "x-hub-list": ["a"]}

        rb.publisher.publish(exchange=rb.exchange, routing_key="k", body=b"{}", headers=headers)
        headers["x-hub-attempts"] = 2
        headers["x-hub-list"].append("b")

        (got,) = rb.read(1)
        assert dict(got.headers) == {"x-hub-attempts": 1, "x-hub-list": ["a"]}

    def test_publishes_arrive_in_the_order_they_were_made(self, rb: Readback) -> None:
        for n in range(20):
            rb.publisher.publish(exchange=rb.exchange, routing_key=f"k.{n}", body=b"%d" % n)

        got = rb.read(20)
        assert [(g.routing_key, g.body) for g in got] == [(f"k.{n}", b"%d" % n) for n in range(20)]

    def test_publishes_from_many_threads_each_arrive_exactly_once(self, rb: Readback) -> None:
        errors: list[BaseException] = []

        def publish_some(thread: int) -> None:
            try:
                for n in range(10):
                    rb.publisher.publish(
                        exchange=rb.exchange,
                        routing_key="k",
                        body=b"{}",
                        message_id=f"t{thread}-{n}",
                    )
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=publish_some, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        assert errors == []
        got = rb.read(40)
        assert sorted(g.message_id or "" for g in got) == sorted(
            f"t{t}-{n}" for t in range(4) for n in range(10)
        )
        rb.marker()  # nothing more than the 40 arrived before the marker

    # -- publish_many: many confirms in flight ------------------------------------------------

    def test_publish_many_delivers_200_messages_complete_in_order_with_their_properties(
        self, rb: Readback
    ) -> None:
        batch = [
            Outgoing(
                exchange=rb.exchange,
                routing_key=f"hub.deliver.{n % 3}",
                body=HOSTILE_BODIES[n % len(HOSTILE_BODIES)] + b"%d" % n,
                headers={"x-hub-n": n, "x-hub-alert-id": f"a-{n}", "x-hub-list": ["x", n]},
                message_id=f"m-{n}-{uuid.uuid4()}",
                correlation_id=f"c-{n}" if n % 2 else None,
                content_type="application/fhir+json" if n % 2 else "application/json",
            )
            for n in range(200)
        ]
        before = int(time.time())

        rb.publisher.publish_many(batch)

        after = time.time()
        got = rb.read(200, timeout=15)
        assert [untimed(g) for g in got] == [
            published(
                m.exchange,
                m.routing_key,
                m.body,
                headers=m.headers,
                message_id=m.message_id,
                correlation_id=m.correlation_id,
                content_type=m.content_type,
            )
            for m in batch
        ]
        assert all(g.persistent for g in got)
        assert all(before <= g.timestamp <= after for g in got)
        rb.marker()  # each arrived once: nothing more before the marker

    def test_publish_many_of_nothing_publishes_nothing(self, rb: Readback) -> None:
        rb.publisher.publish_many([])

        assert rb.marker().routing_key == "marker"  # the first thing to arrive

    def test_publish_many_and_publish_interleave_in_the_order_they_were_made(
        self, rb: Readback
    ) -> None:
        def one(n: int) -> Outgoing:
            return Outgoing(exchange=rb.exchange, routing_key="k", body=b"%d" % n)

        rb.publisher.publish_many([one(0), one(1)])
        rb.publisher.publish(exchange=rb.exchange, routing_key="k", body=b"2")
        rb.publisher.publish_many([one(3)])

        assert [g.body for g in rb.read(4)] == [b"0", b"1", b"2", b"3"]
        rb.marker()


class RefusesUnknownExchanges:
    """RabbitMQ never confirms a publish to an exchange that does not exist: the Publisher says
    so with TransientError instead of dropping the message silently. (kombu's memory transport
    drops it with a warning, so the demo's backend does not run this one.)"""

    def test_a_publish_to_an_exchange_that_does_not_exist_raises_transient_and_arrives_nowhere(
        self, rb: Readback
    ) -> None:
        with pytest.raises(TransientError, match="not confirmed"):
            rb.publisher.publish(exchange="no.such.exchange", routing_key="k", body=b"lost")

        # The publisher still works afterwards, and the marker is the first thing to arrive.
        assert rb.marker().body == b"{}"

    def test_a_publish_many_to_an_exchange_that_does_not_exist_raises_transient_and_arrives_nowhere(
        self, rb: Readback
    ) -> None:
        lost = [
            Outgoing(exchange="no.such.exchange", routing_key="k", body=b"lost %d" % n)
            for n in range(5)
        ]

        with pytest.raises(TransientError, match="not confirmed"):
            rb.publisher.publish_many(lost)

        assert rb.marker().body == b"{}"

    def test_a_publish_many_with_one_message_to_a_missing_exchange_raises_transient(
        self, rb: Readback
    ) -> None:
        # Then any of the batch may or may not have been taken (the caller sends it all again,
        # receivers de-duplicate by message id); the one to the missing exchange arrives nowhere.
        good = [
            Outgoing(exchange=rb.exchange, routing_key="k", body=b"{}", message_id=f"good-{n}")
            for n in range(3)
        ]
        batch = [
            good[0],
            Outgoing(exchange="no.such.exchange", routing_key="k", body=b"x"),
            *good[1:],
        ]

        with pytest.raises(TransientError, match="not confirmed"):
            rb.publisher.publish_many(batch)

        marker_id = f"marker-{uuid.uuid4()}"
        rb.publisher.publish(
            exchange=rb.exchange, routing_key="marker", body=b"{}", message_id=marker_id
        )
        arrived: list[str | None] = []
        while not arrived or arrived[-1] != marker_id:
            arrived += [g.message_id for g in rb.read(1)]
        assert set(arrived[:-1]) <= {m.message_id for m in good}


# -- backends -----------------------------------------------------------------------------------


class TestKombuPublisherOnRabbitMQ(PublisherContract, RefusesUnknownExchanges):
    @pytest.fixture
    def rb(self, amqp_url: str) -> Iterator[RabbitReadback]:
        exchange, queue = f"contract.{uuid.uuid4().hex[:8]}", f"contract.q.{uuid.uuid4().hex[:8]}"
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue, exchange, routing_key="#")
        publisher = KombuPublisher(amqp_url)
        yield RabbitReadback(publisher, exchange, queue, channel)
        publisher.close()
        connection.close()


class TestKombuPublisherOnMemoryTransport(PublisherContract):
    @pytest.fixture
    def rb(self) -> Iterator[MemoryTransportReadback]:
        name = uuid.uuid4().hex[:8]
        exchange = Exchange(f"contract.{name}", type="topic", durable=True)
        connection = Connection("memory://")
        channel = connection.channel()
        queue = Queue(f"contract.q.{name}", exchange=exchange, routing_key="#")(channel)
        queue.declare()
        publisher = KombuPublisher("memory://")
        yield MemoryTransportReadback(publisher, exchange.name, queue)
        publisher.close()
        queue.delete()
        connection.release()

    def test_the_headers_given_are_copied_so_changing_them_afterwards_changes_nothing(
        self, rb: Readback
    ) -> None:
        # Known divergence of the demo's transport: it keeps the message in process without
        # serialising it, and KombuPublisher copies the headers one level deep only, so a list
        # or table inside a header is shared with the caller until consumed. The hub never
        # changes headers after publishing them; on RabbitMQ the bytes are on the wire.
        headers: dict[str, Any] = {"x-hub-attempts": 1, "x-hub-list": ["a"]}

        rb.publisher.publish(exchange=rb.exchange, routing_key="k", body=b"{}", headers=headers)
        headers["x-hub-attempts"] = 2
        headers["x-hub-list"].append("b")

        (got,) = rb.read(1)
        assert dict(got.headers) == {"x-hub-attempts": 1, "x-hub-list": ["a", "b"]}


class TestMemoryPublisher(PublisherContract, RefusesUnknownExchanges):
    @pytest.fixture
    def rb(self) -> MemoryReadback:
        exchange = f"contract.{uuid.uuid4().hex[:8]}"
        return MemoryReadback(MemoryPublisher(exchanges={exchange}), exchange)
