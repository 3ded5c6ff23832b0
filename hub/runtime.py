"""Keeps a running hub's threads alive: every `interval` seconds each consumer and watcher it was
told about is checked, and one found dead is restarted, logged as `thread_restarted` and counted
(`hub_thread_restarts_total{thread}`). Readiness asks it which are down.

It knows nothing of what the threads do: each comes with how to tell it is alive and how to
start it again. Boundaries inside the threads should mean nothing dies; this is the net below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hub.log import get_logger
from hub.ports import Metrics

log = get_logger("hub.supervisor")


@dataclass(frozen=True, slots=True)
class Supervised:
    name: str  # the thread's name: bounded, ours (e.g. intake-custody-0, overdue-watch)
    alive: Callable[[], bool]
    restart: Callable[[], None]  # starts a fresh thread (and, for a consumer, a new worker)


class Supervisor:
    def __init__(self, *, metrics: Metrics | None = None, interval: float = 2.0) -> None:
        self.metrics = metrics
        self.interval = interval
        self._watched: dict[str, Supervised] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, *, alive: Callable[[], bool], restart: Callable[[], None]) -> None:
        with self._lock:
            self._watched[name] = Supervised(name, alive, restart)

    def down(self) -> list[str]:
        """The watched threads that are not alive right now, by name."""
        with self._lock:
            watched = list(self._watched.values())
        return [w.name for w in watched if not w.alive()]

    def check_once(self) -> list[str]:
        """Restart every watched thread found dead; the names restarted."""
        restarted = []
        for name in self.down():
            with self._lock:
                supervised = self._watched.get(name)
            if supervised is None or self._stop.is_set():
                continue
            log.error("thread_restarted", thread=name)
            if self.metrics is not None:
                self.metrics.thread_restarted(name)
            try:
                supervised.restart()
                restarted.append(name)
            except Exception as exc:  # noqa: BLE001 - the supervisor's boundary: try next round
                log.error("thread_restart_failed", thread=name, error_class=type(exc).__name__)
        return restarted

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the supervisor itself never dies
                log.error("supervisor_check_crashed", error_class=type(exc).__name__)
