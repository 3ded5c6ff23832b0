"""The per-endpoint circuit breaker as a pure state machine: it decides, it does no I/O, no
logging and no sleeping (time comes from an injected clock; state changes go to listeners).

    closed ──(failure_threshold consecutive transient failures)──▶ open
    open ──(cooldown_seconds later, a consumer asks)──▶ half-open: ONE consumer may take ONE probe
    half-open ──(probe delivered, or answered permanently)──▶ closed
    half-open ──(probe failed transiently)──▶ open (the cool-down starts again)

While open, the endpoint's consumers cancel consumption
(hub.adapters.rabbitmq.consumer.QueueWorker), so its referrals wait in hub.deliver.<endpoint>
on the broker, never in a consumer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"  # full flow
    OPEN = "open"  # no consuming, no sending, until the cool-down ends
    HALF_OPEN = "half_open"  # one consumer, one probe message


@dataclass(frozen=True, slots=True)
class CircuitConfig:
    failure_threshold: int = 5
    cooldown_seconds: float = 30.0


Listener = Callable[["CircuitState", "CircuitState"], None]  # (old, new)


class CircuitBreaker:
    """One endpoint's breaker, shared by its consumers (thread-safe by a lock).

    `may_consume(holder)` is asked by each consumer between messages; `before_send()` just
    before each attempt; `record_success()` / `record_failure()` after it."""

    def __init__(
        self,
        config: CircuitConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or CircuitConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_holder: object | None = None
        self._probe_in_flight = False
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Called with (old, new) on every change of state, outside the breaker's lock."""
        self._listeners.append(listener)

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def may_consume(self, holder: object) -> bool:
        """Whether consumer `holder` may consume now. Once the cool-down is over, the first
        consumer to ask becomes the probe holder; the others wait for the verdict."""
        with self._lock:
            old = self._state
            if old is CircuitState.CLOSED:
                return True
            if old is CircuitState.OPEN:
                if self._clock() - self._opened_at < self.config.cooldown_seconds:
                    return False
                self._state = CircuitState.HALF_OPEN
                self._probe_holder = holder
                self._probe_in_flight = False
            allowed = self._probe_holder is holder
        self._notify(old)
        return allowed

    def before_send(self) -> bool:
        """Whether one attempt may go to the endpoint now: always when closed, once (the
        probe) when half-open, never when open."""
        with self._lock:
            if self._state is CircuitState.CLOSED:
                return True
            if self._state is CircuitState.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        """The endpoint answered (delivered, or refused permanently: it is up either way)."""
        with self._lock:
            old = self._state
            self._failures = 0
            self._state = CircuitState.CLOSED
            self._probe_holder = None
            self._probe_in_flight = False
        self._notify(old)

    def record_failure(self) -> None:
        """One attempt failed transiently (refused, timed out, 5xx, 429 …)."""
        with self._lock:
            old = self._state
            self._failures += 1
            if old is CircuitState.HALF_OPEN or (
                old is CircuitState.CLOSED and self._failures >= self.config.failure_threshold
            ):
                self._state = CircuitState.OPEN
                self._opened_at = self._clock()
                self._probe_holder = None
                self._probe_in_flight = False
        self._notify(old)

    def _notify(self, old: CircuitState) -> None:
        new = self._state
        if new is not old:
            for listener in self._listeners:
                listener(old, new)
