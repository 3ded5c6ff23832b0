"""Whether the ledger's database answers, asked once a second by one thread: consumers hold
while it is away (so a requeued message does not come straight back, spending its quorum
queue's x-delivery-limit), and /readyz reports it without a query of its own.

Decides nothing about messages: the Dispatcher already requeues what a lost connection left
uncommitted (hub.errors.LedgerUnavailable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from hub.errors import TransientError
from hub.log import get_logger

log = get_logger("hub.database_watch")


class DatabaseWatch:
    """`ping()` returns when the database answers and raises TransientError when not."""

    def __init__(self, ping: Callable[[], None], *, interval: float = 1.0) -> None:
        self._ping = ping
        self._interval = interval
        self._up = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reason: str | None = None  # why it is away, for /readyz and logs
        self.thread_name = "database-watch"

    @property
    def up(self) -> bool:
        return self._up

    def may_consume(self, _worker: object) -> bool:
        """A QueueWorker gate: consume only while the database answers. Should the watch
        itself have died, consumers go on (a lost connection still requeues, unacked) rather
        than hold for ever on a stale "away"."""
        return self._up or self._thread is None or not self._thread.is_alive()

    def check(self) -> bool:
        """Ask the database now; log each change between up and away."""
        try:
            self._ping()
        except TransientError as exc:
            if self._up:
                log.warning("database_away", reason=exc.message)
            self._up, self.reason = False, exc.message
            return False
        if not self._up:
            log.info("database_back")
        self._up, self.reason = True, None
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a background loop's boundary: never dies
                log.error("database_check_crashed", error_class=type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
