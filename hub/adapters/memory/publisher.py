"""In-memory hub.ports.Publisher for tests and the demo: keeps every publish as a frozen record,
in order, and can be told to fail the next publishes as the real one does when no confirm comes.

No broker and no third-party imports. tests/integration/test_publisher_contract.py runs the same
behaviour against it and KombuPublisher on RabbitMQ, so the two cannot drift.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from hub.errors import TransientError
from hub.pipeline import publish_each
from hub.wire import Outgoing


@dataclass(frozen=True, slots=True)
class Published:
    """One confirmed publish, as a consumer would read it back. `persistent` is always True
    (KombuPublisher publishes with delivery_mode 2): it is here so the contract can say so."""

    exchange: str
    routing_key: str
    body: bytes
    headers: Mapping[str, Any]  # a deep, read-only copy of what was given
    message_id: str | None
    correlation_id: str | None
    content_type: str
    timestamp: int  # Unix seconds, as KombuPublisher sets the AMQP timestamp
    persistent: bool = True


@dataclass(slots=True)
class _Failure:
    times: int
    exchange: str | None
    routing_key: str | None
    kept: bool
    reason: str

    def matches(self, exchange: str, routing_key: str) -> bool:
        return (self.exchange is None or self.exchange == exchange) and (
            self.routing_key is None or self.routing_key == routing_key
        )


class MemoryPublisher:
    """hub.ports.Publisher that remembers. Thread-safe by a lock.

    `exchanges`: when given, a publish to any other exchange raises TransientError, as RabbitMQ
    refuses a publish to an exchange that was never declared (the real one never confirms it);
    None accepts every exchange. `clock` gives the record's timestamp (seconds)."""

    def __init__(
        self,
        *,
        exchanges: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._exchanges = None if exchanges is None else frozenset(exchanges)
        self._clock = clock
        self._lock = threading.Lock()
        self._published: list[Published] = []
        self._failures: list[_Failure] = []

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
        record = Published(
            exchange=exchange,
            routing_key=routing_key,
            body=bytes(body),
            headers=MappingProxyType(copy.deepcopy(dict(headers or {}))),
            message_id=message_id,
            correlation_id=correlation_id,
            content_type=content_type,
            timestamp=int(self._clock()),
        )
        where = f"{exchange or '(default)'}/{routing_key}"
        with self._lock:
            failure = next((f for f in self._failures if f.matches(exchange, routing_key)), None)
            if failure is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                if failure.kept:
                    self._published.append(record)
                raise TransientError(f"publish to {where} not confirmed: {failure.reason}")
            if self._exchanges is not None and exchange not in self._exchanges:
                raise TransientError(
                    f"publish to {where} not confirmed: exchange {exchange!r} does not exist"
                )
            self._published.append(record)

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Each in turn, as `publish`: a failure stops there (the ones before it are kept, as
        the broker may have taken them), which is what the real one's caller must expect."""
        publish_each(self, messages)

    # -- failure injection -------------------------------------------------------------------

    def fail_next(
        self,
        times: int = 1,
        *,
        exchange: str | None = None,
        routing_key: str | None = None,
        kept: bool = False,
        reason: str = "no confirm from the broker (injected)",
    ) -> None:
        """The next `times` publishes (to `exchange` / `routing_key` when given) raise
        TransientError. `kept=True`: the message is recorded all the same, as the broker may
        have taken a message whose confirm never arrived (so the caller's retry duplicates)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._failures.append(_Failure(times, exchange, routing_key, kept, reason))

    # -- reading back ------------------------------------------------------------------------

    @property
    def published(self) -> list[Published]:
        """Every publish kept, in order (a copy)."""
        with self._lock:
            return list(self._published)

    def messages(
        self, exchange: str | None = None, routing_key: str | None = None
    ) -> list[Published]:
        """What was published to `exchange` and/or `routing_key` (None: any), in order."""
        with self._lock:
            return [
                p
                for p in self._published
                if (exchange is None or p.exchange == exchange)
                and (routing_key is None or p.routing_key == routing_key)
            ]

    def bodies(self, exchange: str | None = None, routing_key: str | None = None) -> list[bytes]:
        return [p.body for p in self.messages(exchange, routing_key)]

    def last(self, exchange: str | None = None, routing_key: str | None = None) -> Published:
        """The latest publish matching; AssertionError (a test's failure) when there is none."""
        found = self.messages(exchange, routing_key)
        if not found:
            raise AssertionError(
                f"nothing published to {exchange or '(any exchange)'}/"
                f"{routing_key or '(any routing key)'}; published: "
                f"{[(p.exchange, p.routing_key) for p in self.published]}"
            )
        return found[-1]

    def clear(self) -> None:
        with self._lock:
            self._published.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._published)
