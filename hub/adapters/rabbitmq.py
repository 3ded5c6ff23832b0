"""RabbitMQ through kombu: topology, confirmed publishing, and the consumer loop.

The only module that imports kombu/amqp. Broker exceptions become hub errors here. It decides
nothing about messages: a handler returns whether to ack or to requeue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kombu import Connection, Consumer, Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.mixins import ConsumerMixin

from hub.errors import ConfigError, TransientError
from hub.log import get_logger
from hub.ports import Envelope

log = get_logger("hub.rabbitmq")

# Exchange and queue names are part of the contract with the justice side and operators.
ALERTS_EXCHANGE = "justice.alerts"
OUTCOMES_EXCHANGE = "justice.outcomes"
WORK_EXCHANGE = "hub.work"  # direct: every hub queue is bound under its own name
DLQ_EXCHANGE = "hub.dlq"  # direct: routing key = stage
UNROUTED_EXCHANGE = "hub.unrouted"  # alternate exchange: nothing published disappears
UNROUTED_QUEUE = "hub.unrouted"
ALERT_QUEUES = {"custody": "hub.alerts.custody", "court": "hub.alerts.court"}
OUTCOMES_INBOUND_QUEUE = "hub.outcomes.inbound"
STAGES = ("intake", "deliver", "outcome")
# A message redelivered this many times (a worker crashed on it) is dead-lettered by the
# broker itself (quorum queue x-delivery-limit): poison never loops.
DELIVERY_LIMIT = 10


def delivery_queue(endpoint: str) -> str:
    return f"hub.deliver.{endpoint}"


def retry_exchange(delay_seconds: int) -> str:
    return f"hub.retry.{delay_seconds}s"


def dlq_queue(stage: str) -> str:
    return f"hub.dlq.{stage}"


class Disposition(StrEnum):
    ACK = "ack"  # what the message produced is durable
    REQUEUE = "requeue"  # nothing durable happened; let the broker redeliver


def _quorum(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


_ALT = {"alternate-exchange": UNROUTED_EXCHANGE}


def declared_exchange(name: str) -> Exchange:
    """Every exchange the hub declares, always with the same type and arguments (a
    redeclaration with others is refused by the broker)."""
    if name == UNROUTED_EXCHANGE or name.startswith("hub.retry."):
        return Exchange(name, type="fanout", durable=True)
    kind = "topic" if name in (ALERTS_EXCHANGE, OUTCOMES_EXCHANGE) else "direct"
    return Exchange(name, type=kind, durable=True, arguments=_ALT)


def _work_queue(name: str, stage: str) -> Queue:
    return Queue(
        name,
        exchange=declared_exchange(WORK_EXCHANGE),
        routing_key=name,
        durable=True,
        queue_arguments=_quorum(
            **{
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DLQ_EXCHANGE,
                "x-dead-letter-routing-key": stage,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        ),
    )


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything the hub declares. Declaring is idempotent; a queue that exists with other
    arguments stops start-up with a ConfigError saying which."""

    endpoints: Sequence[str]
    retry_delays: Sequence[int]

    def declare(self, connection: Connection) -> None:
        channel = connection.channel()
        try:
            for exchange in self._exchanges():
                exchange(channel).declare()
            for queue, extra_bindings in self._queues():
                bound = queue(channel)
                bound.declare()
                for exchange_name, key in extra_bindings:
                    bound.bind_to(exchange=exchange_name, routing_key=key)
        except connection.channel_errors as exc:
            raise ConfigError(
                [
                    f"RabbitMQ refused the hub's topology ({exc}); a queue or exchange probably "
                    "exists with other arguments: delete it or rename it"
                ]
            ) from exc
        except connection.connection_errors as exc:
            raise TransientError(f"cannot declare topology: broker unreachable ({exc})") from exc
        finally:
            channel.close()

    def _exchanges(self) -> list[Exchange]:
        names = [
            UNROUTED_EXCHANGE,
            ALERTS_EXCHANGE,
            OUTCOMES_EXCHANGE,
            WORK_EXCHANGE,
            DLQ_EXCHANGE,
            *(retry_exchange(d) for d in self.retry_delays),
        ]
        return [declared_exchange(n) for n in names]

    def all_queue_names(self) -> list[str]:
        return [q.name for q, _ in self._queues()]

    def _queues(self) -> Iterable[tuple[Queue, list[tuple[str, str]]]]:
        yield (
            Queue(
                UNROUTED_QUEUE,
                exchange=declared_exchange(UNROUTED_EXCHANGE),
                durable=True,
                queue_arguments=_quorum(),
            ),
            [],
        )
        for kind, name in ALERT_QUEUES.items():
            # Bound to the justice side's topic exchange, and to hub.work for retries/replays.
            yield _work_queue(name, "intake"), [(ALERTS_EXCHANGE, f"{kind}.#")]
        yield _work_queue(OUTCOMES_INBOUND_QUEUE, "outcome"), []
        for endpoint in self.endpoints:
            yield _work_queue(delivery_queue(endpoint), "deliver"), []
        for stage in STAGES:
            yield (
                Queue(
                    dlq_queue(stage),
                    exchange=declared_exchange(DLQ_EXCHANGE),
                    routing_key=stage,
                    durable=True,
                    queue_arguments=_quorum(),
                ),
                [],
            )
        for delay in self.retry_delays:
            # Messages wait out the TTL here, then the broker dead-letters them back to
            # hub.work under their original routing key (the queue they came from).
            yield (
                Queue(
                    f"hub.retry.{delay}s",
                    exchange=declared_exchange(retry_exchange(delay)),
                    durable=True,
                    queue_arguments=_quorum(
                        **{
                            "x-message-ttl": delay * 1000,
                            "x-dead-letter-exchange": WORK_EXCHANGE,
                            "x-dead-letter-strategy": "at-least-once",
                            "x-overflow": "reject-publish",
                        }
                    ),
                ),
                [],
            )


def connect(url: str, *, heartbeat: int = 30) -> Connection:
    """A kombu connection; publisher confirms on for the AMQP transport."""
    options: dict[str, Any] = {}
    if url.startswith(("amqp://", "amqps://", "pyamqp://")):
        options["confirm_publish"] = True
    elif url.startswith("memory://"):
        options["polling_interval"] = 0.01  # the embedded demo: no 1 s polling per hop
    return Connection(url, heartbeat=heartbeat, transport_options=options, connect_timeout=10)


class KombuPublisher:
    """hub.ports.Publisher over one kombu connection; thread-safe by a lock."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Any = None

    def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    producer = self._ensure_producer()
                    producer.publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        headers=dict(headers or {}),
                        message_id=message_id,
                        correlation_id=correlation_id,
                        content_type=content_type,
                        content_encoding="utf-8",
                        delivery_mode=2,
                        # Read back as the management API's head_message_timestamp: how long
                        # a queue's oldest message has waited (the queue-age metric).
                        timestamp=int(time.time()),
                    )
                    return
                except Exception as exc:  # noqa: BLE001 - broker library errors vary; translated here
                    self._reset()
                    if attempt == 2:
                        raise TransientError(
                            f"publish to {exchange or '(default)'}/{routing_key} not confirmed: "
                            f"{type(exc).__name__}: {exc}"
                        ) from exc

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            self._connection = connect(self._url)
            self._connection.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.5)
            self._producer = self._connection.Producer()
        return self._producer

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._connection = None
        self._producer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


Handler = Callable[[Envelope], Disposition]


class QueueWorker(ConsumerMixin):
    """Consumes one queue with bounded prefetch and manual acks; reconnects on its own.

    `stop()` lets the message in hand finish; prefetched, unacked messages go back to the
    queue when the connection closes.

    `gate(worker)`, when given, is asked between messages whether to consume: a "no" (circuit
    open, endpoint paused) cancels the consumer so messages wait on the broker, never here;
    a later "yes" resumes it. Nothing is requeued for it (quorum queues count requeues towards
    x-delivery-limit).
    """

    def __init__(
        self,
        url: str,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        gate: Callable[[object], bool] | None = None,
    ) -> None:
        self.connection = connect(url)
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.gate = gate
        self.ready = threading.Event()
        self._requeue_pause = 0.0
        self._consumers: list[Consumer] = []
        self._consuming = True

    def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Consumer]:
        # py-amqp decodes bodies by their declared content_encoding by default, silently
        # keeping bytes it cannot decode: the hub wants the bytes exactly as published.
        if hasattr(channel, "auto_decode"):
            channel.auto_decode = False
        return [
            consumer_cls(
                queues=[Queue(self.queue, no_declare=True)],
                on_message=self._on_message,
                prefetch_count=self.prefetch,
                auto_declare=False,
            )
        ]

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kw: Any) -> None:
        self._consumers, self._consuming = list(consumers), True
        self.ready.set()
        log.info("consumer_started", queue=self.queue, prefetch=self.prefetch)
        self.on_iteration()

    def on_iteration(self) -> None:
        # Called by ConsumerMixin between messages (at least every second).
        if self.gate is None:
            return
        allowed = self.gate(self)
        if allowed and not self._consuming:
            for consumer in self._consumers:
                consumer.consume()
            self._consuming = True
            log.info("consumer_resumed", queue=self.queue)
        elif not allowed and self._consuming:
            for consumer in self._consumers:
                consumer.cancel()
            self._consuming = False
            log.info("consumer_held", queue=self.queue)

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        self.ready.clear()  # /readyz reports the gap until consuming resumes
        log.warning(
            "broker_connection_lost", queue=self.queue, retry_in=interval, error=type(exc).__name__
        )

    def _on_message(self, message: Any) -> None:
        props = message.properties
        envelope = Envelope(
            body=_raw_body(message),
            queue=self.queue,
            exchange=message.delivery_info.get("exchange", ""),
            routing_key=message.delivery_info.get("routing_key", ""),
            headers=dict(message.headers or {}),
            message_id=props.get("message_id"),
            user_id=props.get("user_id"),
            content_type=props.get("content_type") or message.content_type,
            redelivered=bool(message.delivery_info.get("redelivered")),
        )
        disposition = self.handler(envelope)
        if disposition is Disposition.ACK:
            message.ack()
            self._requeue_pause = 0.0
        else:
            # Nothing durable happened (broker or database away): back off a little so a
            # requeue does not spin, then hand the message back.
            self._requeue_pause = min(max(self._requeue_pause * 2, 0.5), 10.0)
            time.sleep(self._requeue_pause)
            message.requeue()

    def stop(self) -> None:
        self.should_stop = True


def _raw_body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return str(body).encode(message.content_encoding or "utf-8")


def start_worker(worker: QueueWorker, name: str) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    return thread


def queue_depth(url: str, queue: str, *, timeout: float = 3.0) -> int | None:
    """Messages ready on `queue` (a passive declare, which creates nothing); None when the
    queue does not exist or the broker cannot be reached, for a status page that must render."""
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
                return int(count)
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - the channel dies with a 404 anyway
                    pass
    except Exception:  # noqa: BLE001 - a status read reports, never raises
        return None


def queue_depths(url: str, queues: Sequence[str], *, timeout: float = 5.0) -> dict[str, int]:
    """Messages ready on each queue, by passive declares over one connection (creates
    nothing; RabbitMQ counts ready messages, not unacked ones). A queue that does not exist is
    left out; an unreachable broker raises TransientError."""
    depths: dict[str, int] = {}
    connection = Connection(url, connect_timeout=timeout)
    try:
        connection.ensure_connection(max_retries=1)
        channel = connection.channel()
        for name in queues:
            try:
                _, count, _ = channel.queue_declare(queue=name, passive=True)
                depths[name] = int(count)
            except connection.channel_errors:
                # 404: the broker closed the channel; carry on with a fresh one.
                channel = connection.channel()
        channel.close()
    except (OSError, OperationalError, *connection.connection_errors) as exc:
        raise TransientError(f"cannot read queue depths: broker unreachable ({exc})") from exc
    finally:
        connection.release()
    return depths
