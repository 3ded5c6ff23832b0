"""Consuming: one worker per queue hands each message to its handler and settles it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from kombu import Consumer, Queue
from kombu.exceptions import OperationalError
from kombu.mixins import ConsumerMixin

from hub.adapters.rabbitmq.connection import Broker, connect, tolerate_unreadable_properties
from hub.log import get_logger
from hub.wire import (
    Disposition,
    Envelope,
)

log = get_logger("hub.rabbitmq")


Handler = Callable[[Envelope], Disposition]


class BatchHandler(Protocol):
    """Handles a batch, one Disposition each in order; `stopping()` turns true once the worker
    is asked to stop, so a slow batch can leave the rest of its messages to the queue."""

    def __call__(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool]
    ) -> Sequence[Disposition]: ...


# A backlog arrives back to back (prefetched messages are already in the socket's buffer): a
# pause this long after the last message means there is nothing more to take for now.
BATCH_GAP_SECONDS = 0.002


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

    `batch=(handler, size, wait)`: messages are taken in batches, of what is there up to
    `size`, waiting for more while they keep coming but at most `wait` seconds after the
    first, and the batch handler gets
    them together (one disposition each, in order). A batch is never held past its handler:
    each message is acked or requeued as soon as the handler returns, before the next batch.
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
        batch: tuple[BatchHandler, int, float] | None = None,
    ) -> None:
        tolerate_unreadable_properties()
        self.batch = batch if batch is not None and batch[1] > 1 else None
        self._pending: list[Any] = []
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
        # Messages taken on a connection that is gone come back from the broker: never settle
        # them on the new one.
        self._pending = []
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

    def consume(
        self,
        limit: int | None = None,
        timeout: float | None = None,
        safety_interval: float = 1,
        **kwargs: Any,
    ) -> Iterator[None]:
        """kombu's loop, one message at a time; in batch mode, each wait that brings a message
        is followed by a short gathering of what else is there, then the batch is handled."""
        if self.batch is None:
            yield from super().consume(limit, timeout, safety_interval, **kwargs)
            return
        _, size, wait = self.batch
        with self.consumer_context(**kwargs) as (conn, _channel, _consumers):
            while not self.should_stop:
                self.on_iteration()
                try:
                    conn.drain_events(timeout=safety_interval)
                except TimeoutError:
                    conn.heartbeat_check()
                    continue
                except OSError:
                    if not self.should_stop:
                        raise
                    break
                # Take what is there: more messages while they keep coming (a gap of
                # BATCH_GAP_SECONDS ends the batch, so a lone message waits no longer than
                # that), up to `size`, and never past `wait` after the first.
                deadline = time.monotonic() + wait
                while len(self._pending) < size and (left := deadline - time.monotonic()) > 0:
                    try:
                        conn.drain_events(timeout=min(left, BATCH_GAP_SECONDS))
                    except TimeoutError:
                        break
                self._flush()
                yield

    def _flush(self) -> None:
        assert self.batch is not None
        messages, self._pending = self._pending, []
        if not messages:
            return
        envelopes: list[Envelope] = []
        taken: list[Any] = []
        for message in messages:
            try:
                envelopes.append(self._envelope(message))
                taken.append(message)
            except Exception as exc:  # noqa: BLE001 - the consumer's last-resort boundary
                # As for one message at a time: it goes back (x-delivery-limit bounds it);
                # the rest of the batch goes on.
                log.error(
                    "message_handler_crashed", queue=self.queue, error_class=type(exc).__name__
                )
                self._settle(message, Disposition.REQUEUE)
        messages = taken
        if not messages:
            return
        try:
            dispositions = list(self.batch[0](envelopes, stopping=lambda: self.should_stop))
            if len(dispositions) != len(messages):
                raise ValueError(f"{len(dispositions)} dispositions for {len(messages)} messages")
        except self._broker_errors():
            raise  # the connection went: kombu reconnects, the messages come back
        except Exception as exc:  # noqa: BLE001 - the consumer's last-resort boundary
            log.error("batch_handler_crashed", queue=self.queue, error_class=type(exc).__name__)
            dispositions = [Disposition.REQUEUE] * len(messages)
        self._settle_all(list(zip(messages, dispositions, strict=True)))

    def _on_message(self, message: Any) -> None:
        if self.batch is not None:
            self._pending.append(message)
            return
        try:
            disposition = self._handle(message)
        except self._broker_errors():
            raise  # the connection went: kombu reconnects, the message comes back
        except Exception as exc:  # noqa: BLE001 - the consumer's last-resort boundary
            # The handler (a Dispatcher, the DLQ ingester) is meant never to raise; if it does,
            # the thread lives on and the message goes back (x-delivery-limit bounds it).
            log.error("message_handler_crashed", queue=self.queue, error_class=type(exc).__name__)
            disposition = Disposition.REQUEUE
        self._settle(message, disposition)

    def _settle(self, message: Any, disposition: Disposition) -> None:
        self._settle_all([(message, disposition)])

    def _settle_all(self, settled: Sequence[tuple[Any, Disposition]]) -> None:
        back = [message for message, disposition in settled if disposition is not Disposition.ACK]
        if not back and len(settled) > 1 and self._acks_multiple():
            # All of it acked: the channel holds nothing unsettled but this batch (one
            # consumer, batches one after another, each message settled before the next
            # drain), so one basic.ack with multiple=True up to its highest tag acks exactly
            # it: one frame and one settle in the quorum queue's log instead of one each.
            last = max((message for message, _ in settled), key=lambda m: m.delivery_tag)
            last.ack(multiple=True)
            self._requeue_pause = 0.0
            return
        for message, disposition in settled:
            if disposition is Disposition.ACK:
                message.ack()
        if not back:
            self._requeue_pause = 0.0
            return
        # Nothing durable happened (broker or database away): back off a little (once for a
        # batch) so a requeue does not spin, then hand the messages back.
        self._requeue_pause = min(max(self._requeue_pause * 2, 0.5), 10.0)
        time.sleep(self._requeue_pause)
        for message in back:
            message.requeue()

    def _acks_multiple(self) -> bool:
        """RabbitMQ honours basic.ack's multiple flag; kombu's in-memory transport (the
        embedded demo) ignores it and acks only the tag given."""
        return bool(self.connection.transport.driver_type == "amqp")

    def _handle(self, message: Any) -> Disposition:
        return self.handler(self._envelope(message))

    def _envelope(self, message: Any) -> Envelope:
        props = message.properties
        if self.on_take is not None:
            self.on_take(self.queue, enqueued_no_earlier_than(props, message.headers or {}))
        return Envelope(
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
