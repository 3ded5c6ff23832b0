"""RabbitMQ through kombu: the connection (plain or TLS), topology, confirmed publishing, and the
consumer loop.

The only module that imports kombu/amqp. Broker exceptions become hub errors here, in words an
operator can act on. It decides nothing about messages: a handler returns whether to ack or to
requeue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from amqp.serialization import GenericContent
from kombu import Connection, Consumer, Exchange, Queue
from kombu.exceptions import OperationalError
from kombu.mixins import ConsumerMixin

from hub.adapters import rabbitmq_tls
from hub.broker_tls import AmqpTls
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


def _work_queue(name: str, stage: str, group: dict[str, Any]) -> Queue:
    return Queue(
        name,
        exchange=declared_exchange(WORK_EXCHANGE),
        routing_key=name,
        durable=True,
        queue_arguments=_quorum(
            **group,
            **{
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DLQ_EXCHANGE,
                "x-dead-letter-routing-key": stage,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        ),
    )


GROUP_SIZE_ARG = "x-quorum-initial-group-size"
DEFAULT_GROUP_SIZE = 3  # RabbitMQ's own default is every node of the cluster


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything the hub declares. Declaring is idempotent; a queue that exists with other
    arguments stops start-up with a ConfigError saying which.

    `group_size` is each quorum queue's initial number of members
    (`x-quorum-initial-group-size`; RabbitMQ uses all nodes when it exceeds the cluster's
    size, None leaves the broker's default). It matters only when a queue is created, so a
    queue that already exists with another size, or none (made by an earlier hub), is
    declared without it and keeps its members: `queue_group_size_kept` says so, and
    `rabbitmq-queues grow` changes its membership (README, "Broker cluster")."""

    endpoints: Sequence[str]
    retry_delays: Sequence[int]
    group_size: int | None = DEFAULT_GROUP_SIZE

    def declare(self, connection: Connection) -> None:
        channel = connection.channel()
        try:
            for exchange in self._exchanges():
                exchange(channel).declare()
            for queue, extra_bindings in self._queues():
                channel = self._declare_queue(connection, channel, queue)
                bound = queue(channel)
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
            try:
                channel.close()
            except connection.connection_errors:
                pass  # the connection went with it: the error above says so

    def _declare_queue(self, connection: Connection, channel: Any, queue: Queue) -> Any:
        """Declares `queue`; returns the channel to carry on with (a refusal closes one)."""
        try:
            queue(channel).declare()
            return channel
        except connection.channel_errors as exc:
            if GROUP_SIZE_ARG not in str(exc):
                raise
        # The queue exists with another initial group size (or none): that argument only
        # counts at creation, so declare it without, keeping every other argument checked.
        given: dict[str, Any] = getattr(queue, "queue_arguments", None) or {}
        args = {k: v for k, v in given.items() if k != GROUP_SIZE_ARG}
        channel = connection.channel()
        try:
            Queue(**{**queue.as_dict(), "queue_arguments": args})(channel).declare()
        except connection.channel_errors as exc:
            if GROUP_SIZE_ARG not in str(exc):
                raise
            # It was made with a size of its own: a passive declare only checks it exists.
            channel = connection.channel()
            channel.queue_declare(queue=queue.name, passive=True)
        log.warning(
            "queue_group_size_kept",
            queue=queue.name,
            wanted=self.group_size,
            hint="the queue existed before; see its members with `rabbitmq-queues "
            "quorum_status` and add some with `rabbitmq-queues grow`",
        )
        return channel

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
        group = {} if self.group_size is None else {GROUP_SIZE_ARG: self.group_size}
        yield (
            Queue(
                UNROUTED_QUEUE,
                exchange=declared_exchange(UNROUTED_EXCHANGE),
                durable=True,
                queue_arguments=_quorum(**group),
            ),
            [],
        )
        for kind, name in ALERT_QUEUES.items():
            # Bound to the justice side's topic exchange, and to hub.work for retries/replays.
            yield _work_queue(name, "intake", group), [(ALERTS_EXCHANGE, f"{kind}.#")]
        yield _work_queue(OUTCOMES_INBOUND_QUEUE, "outcome", group), []
        for endpoint in self.endpoints:
            yield _work_queue(delivery_queue(endpoint), "deliver", group), []
        for stage in STAGES:
            yield (
                Queue(
                    dlq_queue(stage),
                    exchange=declared_exchange(DLQ_EXCHANGE),
                    routing_key=stage,
                    durable=True,
                    queue_arguments=_quorum(**group),
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
                        **group,
                        **{
                            "x-message-ttl": delay * 1000,
                            "x-dead-letter-exchange": WORK_EXCHANGE,
                            "x-dead-letter-strategy": "at-least-once",
                            "x-overflow": "reject-publish",
                        },
                    ),
                ),
                [],
            )


@dataclass(frozen=True, slots=True)
class Broker:
    """Where RabbitMQ is and how to reach it: the AMQP URL, or several (`;`-separated, kombu's
    failover form: the nodes of one cluster, tried in turn on connect and on every reconnect),
    and, for amqps://, the TLS options (None: verify the broker against the system's CA store,
    present no client certificate). The broker's certificate is always verified
    (hub.adapters.rabbitmq_tls), against the host name of the node actually connected to."""

    url: str = field(repr=False)  # may carry credentials
    tls: AmqpTls | None = None

    @classmethod
    def of(cls, broker: Broker | str) -> Broker:
        """A Broker from a plain URL too (amqps:// then verifies against the system store)."""
        return broker if isinstance(broker, Broker) else cls(broker)

    @property
    def urls(self) -> list[str]:
        """Each node's URL, in the order they are tried."""
        return [u.strip() for u in self.url.split(";") if u.strip()] or [self.url]

    @property
    def uses_tls(self) -> bool:
        return self.urls[0].startswith("amqps://")

    @property
    def address(self) -> str:
        """host:port of each node, for messages (the URL itself may carry a password)."""
        return ", ".join(_address(u, self.uses_tls) for u in self.urls)

    def connection(self, **options: Any) -> Connection:
        """A kombu Connection (not yet connected) with this broker's TLS options; with several
        URLs, kombu fails over round-robin and `_FailoverConnection` re-makes the TLS options
        for each node it switches to."""
        urls = self.urls
        first = urls[0]
        if len(urls) == 1:
            return Connection(first, ssl=rabbitmq_tls.ssl_options(first, self.tls), **options)
        connection = _FailoverConnection(
            ";".join(urls),
            failover_strategy="round-robin",
            ssl=rabbitmq_tls.ssl_options(first, self.tls),
            **options,
        )
        connection.hub_tls = self.tls
        return connection

    def explain(self, exc: BaseException) -> str:
        """Why a connection failed, in words an operator can act on."""
        return rabbitmq_tls.explain(exc, address=self.address, uses_tls=self.uses_tls, tls=self.tls)

    def explain_lost(self, exc: BaseException) -> str:
        """Why a connection that was working stopped (a node went down or was restarted):
        `explain` speaks of handshakes, which this was not."""
        detail = str(exc).strip() or "no detail"
        return f"connection to the broker lost ({type(exc).__name__}: {detail[:200]})"

    def attempts(self, retries: int) -> int:
        """kombu's `max_retries` for `retries` rounds after the first: it counts one retry per
        node tried, and waits its interval only after each round over all of them."""
        return (retries + 1) * len(self.urls) - 1

    def starting_after(self, turns: int) -> Broker:
        """The same nodes, tried from the `turns`-th onwards (then round): where a publisher
        goes after the node it was on failed it."""
        urls = self.urls
        k = turns % len(urls)
        return Broker(";".join(urls[k:] + urls[:k]), self.tls)


def _address(url: str, uses_tls: bool) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port or (5671 if uses_tls else 5672)
    except ValueError:
        return "(unparsable AMQP URL)"
    return f"{parts.hostname or 'localhost'}:{port}"


class _FailoverConnection(Connection):
    """kombu's Connection over several nodes. kombu keeps the `ssl=` options it was built with
    for every alternate, so the host name verified would stay the first node's: each switch
    re-makes them for the node switched to (amqp.tls.server_hostname still wins)."""

    hub_tls: AmqpTls | None = None

    def switch(self, conn_str: str) -> None:
        super().switch(conn_str)
        self.ssl: Any = rabbitmq_tls.ssl_options(conn_str, self.hub_tls)

    def clone(self, **kwargs: Any) -> Connection:
        # ConsumerMixin reconnects through a clone: it must keep failing over the same way.
        cloned = super().clone(**kwargs)
        cloned.hub_tls = self.hub_tls
        return cloned


def connect(broker: Broker | str, *, heartbeat: int = 30) -> Connection:
    """A kombu connection; publisher confirms on for the AMQP transport."""
    broker = Broker.of(broker)
    options: dict[str, Any] = {}
    if broker.urls[0].startswith(("amqp://", "amqps://", "pyamqp://")):
        options["confirm_publish"] = True
    elif broker.urls[0].startswith("memory://"):
        options["polling_interval"] = 0.01  # the embedded demo: no 1 s polling per hop
    return broker.connection(heartbeat=heartbeat, transport_options=options, connect_timeout=10)


@contextmanager
def connected(
    broker: Broker | str, *, max_retries: int = 3, interval_start: float = 0.5
) -> Iterator[Connection]:
    """An established connection, released on exit; one that cannot be made raises
    TransientError saying why (`Broker.explain`), never a library traceback."""
    broker = Broker.of(broker)
    connection = connect(broker)
    errors = (OSError, OperationalError, *connection.connection_errors, *connection.channel_errors)
    try:
        try:
            connection.ensure_connection(
                max_retries=broker.attempts(max_retries), interval_start=interval_start
            )
        except errors as exc:
            raise TransientError(
                f"cannot connect to RabbitMQ at {broker.address}: {broker.explain(exc)}"
            ) from exc
        yield connection
    finally:
        connection.release()


# How long a publish waits for its confirm. A quorum queue confirms once a majority of its
# members have the message; while its leader is being re-elected (a node lost) that takes a few
# seconds. Past this, the publish is tried again on the next node: the same message id and
# bytes, so at worst a duplicate, which the ledger and the receivers absorb.
CONFIRM_TIMEOUT_SECONDS = 15.0
PUBLISH_ATTEMPTS = 4
RETRY_PAUSE_SECONDS = 0.5


class KombuPublisher:
    """hub.ports.Publisher over one kombu connection; thread-safe by a lock.

    A publish whose confirm does not come (connection lost, node down, no confirm within
    CONFIRM_TIMEOUT_SECONDS) is tried again over a new connection, starting at the next node
    of the broker's list, up to PUBLISH_ATTEMPTS times; then TransientError."""

    def __init__(self, broker: Broker | str) -> None:
        self._broker = Broker.of(broker)
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Any = None
        self._turns = 0  # nodes moved past after failures (Broker.starting_after)

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
            timestamp = int(time.time())  # the same on every attempt: the same message
            for attempt in range(1, PUBLISH_ATTEMPTS + 1):
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
                        # Read back when the message is taken (QueueWorker.on_take), and as
                        # head_message_timestamp where the management API reports one: the
                        # queue-age metric (hub.queue_ages).
                        timestamp=timestamp,
                        confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
                    )
                    return
                except Exception as exc:  # noqa: BLE001 - broker library errors vary; translated here
                    self._reset()
                    self._turns += 1  # the next connection starts at the next node
                    if attempt == PUBLISH_ATTEMPTS:
                        raise TransientError(
                            f"publish to {exchange or '(default)'}/{routing_key} not confirmed: "
                            f"{self._broker.explain(exc)}"
                        ) from exc
                    log.warning(
                        "publish_retried",
                        exchange=exchange or "(default)",
                        attempt=attempt,
                        reason=self._broker.explain_lost(exc),
                    )
                    # A quorum queue that lost its leader nacks or stalls until it has a new
                    # one (a few seconds): give the election a moment.
                    time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            broker = self._broker.starting_after(self._turns)
            self._connection = connect(broker)
            self._connection.ensure_connection(
                max_retries=broker.attempts(3), interval_start=0.2, interval_step=0.5
            )
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

_load_properties = GenericContent._load_properties


def _tolerant_load_properties(content: Any, class_id: int, buf: Any, offset: int) -> int:
    """py-amqp's property decoding, except that properties it cannot decode (a message_id or
    content_type that is not UTF-8, header tables nested past the recursion limit) leave the
    message without properties instead of raising out of the connection's frame reader, where
    the error would kill the consumer thread and leave the message to do it again on every
    redelivery. The body still arrives, and the hub judges it without its properties."""
    try:
        result: int = _load_properties(content, class_id, buf, offset)
        return result
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        log.warning("message_properties_unreadable", error_class=type(exc).__name__)
        content.properties = {}
        return offset  # unused by py-amqp's inbound_header


def tolerate_unreadable_properties() -> None:
    """Install `_tolerant_load_properties` (idempotent; py-amqp offers no hook for it)."""
    GenericContent._load_properties = _tolerant_load_properties


class QueueWorker(ConsumerMixin):
    """Consumes one queue with bounded prefetch and manual acks; reconnects on its own.

    `stop()` lets the message in hand finish; prefetched, unacked messages go back to the
    queue when the connection closes.

    `gate(worker)`, when given, is asked between messages whether to consume: a "no" (circuit
    open, endpoint paused) cancels the consumer so messages wait on the broker, never here;
    a later "yes" resumes it. Nothing is requeued for it (quorum queues count requeues towards
    x-delivery-limit).

    `on_take(queue, enqueued_at)`, when given, hears of each message as it is taken, before the
    handler runs: `enqueued_at` is `enqueued_no_earlier_than` (the queue-age metric).
    """

    def __init__(
        self,
        broker: Broker | str,
        queue: str,
        handler: Handler,
        *,
        prefetch: int,
        gate: Callable[[object], bool] | None = None,
        on_take: Callable[[str, float | None], None] | None = None,
    ) -> None:
        tolerate_unreadable_properties()
        self.broker = Broker.of(broker)
        self.connection = connect(self.broker)
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.gate = gate
        self.on_take = on_take
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
        # Called by kombu before each retry of a failed (re)connection.
        self.ready.clear()  # /readyz reports the gap until consuming resumes
        if self.should_stop:
            raise exc  # stopping: give up reconnecting (kombu would retry for ever)
        log.warning(
            "broker_connection_lost",
            queue=self.queue,
            retry_in=interval,
            error=type(exc).__name__,
            reason=self.broker.explain(exc),
        )

    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """kombu's ConsumerMixin loop, but a dropped connection is logged in words, not as a
        traceback (the reconnect attempts that follow say why they fail), and a stop while
        the broker is away ends it."""
        errors = (
            OperationalError,
            *self.connection.connection_errors,
            *self.connection.channel_errors,
        )
        while not self.should_stop:
            try:
                if self.restart_limit.can_consume(_tokens):
                    for _ in self.consume(limit=None, **kwargs):
                        pass
                else:
                    time.sleep(self.restart_limit.expected_time(_tokens))
            except errors as exc:
                self.ready.clear()
                if not self.should_stop:
                    log.warning(
                        "consumer_disconnected",
                        queue=self.queue,
                        reason=self.broker.explain_lost(exc),
                    )

    def _on_message(self, message: Any) -> None:
        try:
            disposition = self._handle(message)
        except self._broker_errors():
            raise  # the connection went: kombu reconnects, the message comes back
        except Exception as exc:  # noqa: BLE001 - the consumer's last-resort boundary
            # The handler (a Dispatcher, the DLQ ingester) is meant never to raise; if it does,
            # the thread lives on and the message goes back (x-delivery-limit bounds it).
            log.error("message_handler_crashed", queue=self.queue, error_class=type(exc).__name__)
            disposition = Disposition.REQUEUE
        if disposition is Disposition.ACK:
            message.ack()
            self._requeue_pause = 0.0
        else:
            # Nothing durable happened (broker or database away): back off a little so a
            # requeue does not spin, then hand the message back.
            self._requeue_pause = min(max(self._requeue_pause * 2, 0.5), 10.0)
            time.sleep(self._requeue_pause)
            message.requeue()

    def _handle(self, message: Any) -> Disposition:
        props = message.properties
        if self.on_take is not None:
            self.on_take(self.queue, enqueued_no_earlier_than(props, message.headers or {}))
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
        return self.handler(envelope)

    def _broker_errors(self) -> tuple[type[BaseException], ...]:
        return (
            OperationalError,
            *self.connection.connection_errors,
            *self.connection.channel_errors,
        )

    def stop(self) -> None:
        self.should_stop = True

    def close(self) -> None:
        """Stop and release the connection: a dead worker's unacked messages go back to its
        queue at once, not when the broker notices the connection gone."""
        self.should_stop = True
        errors: tuple[type[BaseException], ...] = (OSError, *self._broker_errors())
        try:
            self.connection.release()
        except errors:
            pass  # already broken: releasing it is all that was wanted


def enqueued_no_earlier_than(
    properties: Mapping[str, Any], headers: Mapping[str, Any]
) -> float | None:
    """The latest moment (Unix time) known to come before a message entered the queue it was
    taken from: its AMQP `timestamp` (whoever published it set it: every hub publish does) or,
    later, a time the broker dead-lettered it (`x-death`: a retry back from its TTL queue, a
    message the broker parked). None when it carries neither."""
    deaths = headers.get("x-death")
    times = [properties.get("timestamp")]
    if isinstance(deaths, list | tuple):
        times += [d.get("time") for d in deaths if isinstance(d, Mapping)]
    known = [t for t in map(_unix_time, times) if t is not None]
    return max(known, default=None)


def _unix_time(value: Any) -> float | None:
    if isinstance(value, datetime):
        # py-amqp decodes AMQP timestamps as naive UTC datetimes.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _raw_body(message: Any) -> bytes:
    body = message.body
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return str(body).encode(message.content_encoding or "utf-8")


def start_worker(worker: QueueWorker, name: str) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    return thread


def queue_depth(broker: Broker | str, queue: str, *, timeout: float = 3.0) -> int | None:
    """Messages ready on `queue` (a passive declare, which creates nothing); None when the
    queue does not exist or the broker cannot be reached, for a status page that must render."""
    broker = Broker.of(broker)
    try:
        with broker.connection(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=broker.attempts(0))
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


def queue_depths(
    broker: Broker | str, queues: Sequence[str], *, timeout: float = 5.0
) -> dict[str, int]:
    """Messages ready on each queue, by passive declares over one connection (creates
    nothing; RabbitMQ counts ready messages, not unacked ones). A queue that does not exist is
    left out; an unreachable broker raises TransientError."""
    depths: dict[str, int] = {}
    broker = Broker.of(broker)
    connection = broker.connection(connect_timeout=timeout)
    try:
        connection.ensure_connection(max_retries=broker.attempts(1))
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
        raise TransientError(
            f"cannot read queue depths: broker unreachable ({broker.explain(exc)})"
        ) from exc
    finally:
        connection.release()
    return depths
