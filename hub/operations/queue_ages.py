"""How long the oldest ready message on a queue has waited, bounded from what the hub sees without
reading the queue: the messages its own consumers take, and the queue's ready count.

AMQP cannot tell a message's age without taking it, quorum queues report no head-message
timestamp (rabbitmq/rabbitmq-server#6813), and peeking (basic.get, then requeue) would count
towards the queue's x-delivery-limit. Pure and thread-safe: consumers report from their threads,
the queue watch asks from its own; no clock, no broker.

The bound, for a queue with ready messages at time `at`, is the smaller of
  (a) `at` − the newest enqueue time among the messages the hub has taken from the queue
      (delivery is first in, first out, so every message still ready entered after it), and
  (b) `at` − the last time the queue was seen with no ready message (every message ready now
      arrived since).
0 when no message is ready; None (unknown) when the ready count is unknown, or neither (a) nor
(b) is known yet (the queue has held messages since the hub started and none taken so far
carried a time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Seen:
    newest_taken: float | None = None  # Unix time
    empty_at: float | None = None


class ObservedAges:
    """Upper bounds on the age of the oldest ready message of each queue `covers` accepts;
    takes and samples of other queues are ignored."""

    def __init__(self, covers: Callable[[str], bool]) -> None:
        self.covers = covers
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}

    def taken(self, queue: str, enqueued_at: float | None) -> None:
        """A consumer took a message off `queue`. `enqueued_at` (Unix time) is the latest moment
        known to come before the message entered the queue (its AMQP timestamp, or a time the
        broker dead-lettered it); None when it carries neither."""
        if enqueued_at is None or not self.covers(queue):
            return
        with self._lock:
            seen = self._seen.setdefault(queue, _Seen())
            if seen.newest_taken is None or enqueued_at > seen.newest_taken:
                seen.newest_taken = enqueued_at

    def estimate(self, queue: str, *, ready: int | None, at: float) -> float | None:
        """Seconds, as of `at` (Unix time, read before `ready` was counted); see the module
        docstring. Also records an empty queue for later bounds."""
        if ready is None or not self.covers(queue):
            return None
        with self._lock:
            seen = self._seen.setdefault(queue, _Seen())
            if ready == 0:
                seen.empty_at = at
                return 0.0
            known = (seen.newest_taken, seen.empty_at)
            bounds = [at - since for since in known if since is not None]
        return max(0.0, min(bounds)) if bounds else None
