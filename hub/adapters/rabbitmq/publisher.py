"""Publishing with confirms: the Publisher port over kombu."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kombu import Connection

from hub.adapters.rabbitmq.connection import (
    CONFIRM_TIMEOUT_SECONDS,
    PUBLISH_ATTEMPTS,
    RETRY_PAUSE_SECONDS,
    Broker,
    connect,
)
from hub.errors import TransientError
from hub.log import get_logger
from hub.wire import Outgoing

log = get_logger("hub.rabbitmq")


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
        self._confirms: _Confirms | None = None

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
        self.publish_many(
            [
                Outgoing(
                    exchange=exchange,
                    routing_key=routing_key,
                    body=body,
                    headers=dict(headers or {}),
                    message_id=message_id,
                    correlation_id=correlation_id,
                    content_type=content_type,
                )
            ]
        )

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """All of them sent before any confirm is waited for (py-amqp on RabbitMQ: one
        round trip for the batch, not one per message); on kombu's memory transport, which has
        no confirms, one by one. A batch not wholly confirmed is sent again, whole."""
        if not messages:
            return
        with self._lock:
            timestamp = int(time.time())  # the same on every attempt: the same messages
            for attempt in range(1, PUBLISH_ATTEMPTS + 1):
                try:
                    self._send_confirmed(messages, timestamp)
                    return
                except Exception as exc:  # noqa: BLE001 - broker library errors vary; translated here
                    self._reset()
                    self._turns += 1  # the next connection starts at the next node
                    first = messages[0]
                    if attempt == PUBLISH_ATTEMPTS:
                        raise TransientError(
                            f"publish to {first.exchange or '(default)'}/{first.routing_key} "
                            f"not confirmed: {self._broker.explain(exc)}"
                        ) from exc
                    log.warning(
                        "publish_retried",
                        exchange=first.exchange or "(default)",
                        attempt=attempt,
                        messages=len(messages),
                        reason=self._broker.explain_lost(exc),
                    )
                    # A quorum queue that lost its leader nacks or stalls until it has a new
                    # one (a few seconds): give the election a moment.
                    time.sleep(RETRY_PAUSE_SECONDS * attempt)

    def _send_confirmed(self, messages: Sequence[Outgoing], timestamp: int) -> None:
        producer = self._ensure_producer()
        confirms = self._confirms
        if confirms is None:  # kombu's memory transport: no confirms to pipeline
            for m in messages:
                producer.publish(m.body, **self._properties(m, timestamp), **_route(m))
            return
        channel = producer.channel
        last = confirms.published + len(messages)
        for m in messages:
            props = self._properties(m, timestamp)
            message = channel.prepare_message(
                m.body,
                None,
                props.pop("content_type"),
                props.pop("content_encoding"),
                props.pop("headers"),
                props,
            )
            # py-amqp's basic_publish would wait for this one's confirm (confirm_publish is on
            # for the connection); its _basic_publish sends and returns.
            channel._basic_publish(message, exchange=m.exchange, routing_key=m.routing_key)
            confirms.published += 1
        confirms.wait_until(last, self._connection, timeout=CONFIRM_TIMEOUT_SECONDS)

    @staticmethod
    def _properties(m: Outgoing, timestamp: int) -> dict[str, Any]:
        return {
            "headers": dict(m.headers),
            "message_id": m.message_id,
            "correlation_id": m.correlation_id,
            "content_type": m.content_type,
            "content_encoding": "utf-8",
            "delivery_mode": 2,
            # Read back when the message is taken (QueueWorker.on_take), and as
            # head_message_timestamp where the management API reports one: the queue-age
            # metric (hub.operations.queue_ages).
            "timestamp": timestamp,
        }

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            broker = self._broker.starting_after(self._turns)
            self._connection = connect(broker)
            self._connection.ensure_connection(
                max_retries=broker.attempts(3), interval_start=0.2, interval_step=0.5
            )
            self._producer = self._connection.Producer()
            self._confirms = _Confirms.on(self._producer.channel)
        return self._producer

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self._connection = None
        self._producer = None
        self._confirms = None

    def close(self) -> None:
        with self._lock:
            self._reset()


def _route(m: Outgoing) -> dict[str, Any]:
    return {
        "exchange": m.exchange,
        "routing_key": m.routing_key,
        "confirm_timeout": CONFIRM_TIMEOUT_SECONDS,
    }


class _Confirms:
    """Publisher confirms on one py-amqp channel, counted by delivery tag: after
    confirm.select the broker numbers this channel's publishes 1, 2, 3… and acks (or nacks)
    each, or every one up to a tag at once (`multiple`)."""

    def __init__(self) -> None:
        self.published = 0
        self.acked_upto = 0  # every tag up to this one is acked
        self.acked: set[int] = set()  # acked singly, above acked_upto
        self.nacked = False

    @classmethod
    def on(cls, channel: Any) -> _Confirms | None:
        events = getattr(channel, "events", None)
        if events is None or not hasattr(channel, "_basic_publish"):
            return None  # not py-amqp (kombu's memory transport)
        confirms = cls()
        events["basic_ack"].add(confirms._on_ack)
        events["basic_nack"].add(confirms._on_nack)
        if not channel._confirm_selected:
            channel._confirm_selected = True  # as py-amqp's basic_publish_confirm does
            channel.confirm_select()
        return confirms

    def _on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.acked_upto = max(self.acked_upto, tag)
        else:
            self.acked.add(tag)
        while self.acked_upto + 1 in self.acked:
            self.acked_upto += 1
        self.acked = {t for t in self.acked if t > self.acked_upto}

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked = True

    def wait_until(self, last: int, connection: Any, *, timeout: float) -> None:
        """Return once every publish up to tag `last` is acked; raise if one is nacked or the
        confirms do not come within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.acked_upto < last:
            if self.nacked:
                raise TransientError("the broker refused (nacked) a message")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no confirm within {timeout:.0f} s")
            connection.drain_events(timeout=left)
        if self.nacked:
            raise TransientError("the broker refused (nacked) a message")
