"""Publishing with confirms: the Publisher port over kombu."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
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
                        # queue-age metric (hub.operations.queue_ages).
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
