"""Runs and supervises what hub/bootstrap/ built (`Runtime`), and keeps its threads alive
(`Supervisor`): every `interval` seconds each consumer and watcher it was
told about is checked, and one found dead is restarted, logged as `thread_restarted` and counted
(`hub_thread_restarts_total{thread}`). Readiness asks it which are down.

It knows nothing of what the threads do: each comes with how to tell it is alive and how to
start it again. Boundaries inside the threads should mean nothing dies; this is the net below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from hub.adapters.inbound.api import ApiServer
from hub.adapters.rabbitmq.connection import Broker, connected
from hub.adapters.rabbitmq.consumer import QueueWorker, start_worker
from hub.errors import TransientError
from hub.log import get_logger
from hub.operations.database_watch import DatabaseWatch
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


class Watcher(Protocol):
    """A background thread the hub runs besides its consumers (overdue, queue, pause and
    database watches, the report summary's refresh)."""

    thread_name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def is_alive(self) -> bool: ...


@dataclass
class Runtime:
    """What a started hub runs, as hub/bootstrap/ built it: consumer threads, watcher threads
    and the HTTP API. Starts them, supervises them (a dead thread is restarted), says which
    are down and whether the hub is ready, and stops them in order."""

    broker: Broker
    workers: list[tuple[QueueWorker, threading.Thread]] = field(default_factory=list)
    # How to make each consumer's worker again (by thread name), for the supervisor.
    factories: dict[str, Callable[[], QueueWorker]] = field(default_factory=dict)
    api: ApiServer | None = None
    pause_watcher: Watcher | None = None
    overdue_watch: Watcher | None = None
    queue_watch: Watcher | None = None
    database_watch: DatabaseWatch | None = None
    report_refresh: Watcher | None = None  # the report summary's refresh (reporting.*)
    supervisor: Supervisor | None = None
    topology_declared: bool = False  # /readyz: the topology was declared this run
    ping: Callable[[], None] | None = None  # the ledger's database (LedgerHealth.ping)
    # Closed last, senders (MESH sessions) then publishers.
    close_senders: list[Callable[[], None]] = field(default_factory=list)
    close_publishers: list[Callable[[], None]] = field(default_factory=list)

    def start_consumer(self, name: str, make: Callable[[], QueueWorker]) -> None:
        self.factories[name] = make
        worker = make()
        self.workers.append((worker, start_worker(worker, name)))

    def wait_until_consuming(self, timeout: float = 15) -> None:
        """Every consumer consuming; TransientError (after stopping everything) when one is
        not within `timeout` seconds."""
        for worker, _ in self.workers:
            if not worker.ready.wait(timeout=timeout):
                self.stop()
                raise TransientError(f"consumer for {worker.queue} did not start within 15 s")

    def restart_consumer(self, name: str) -> None:
        """A new worker (and connection) in place of the one whose thread died; closing the old
        connection hands its unacked messages back to the broker."""
        for index, (worker, thread) in enumerate(self.workers):
            if thread.name == name:
                worker.close()
                fresh = self.factories[name]()
                self.workers[index] = (fresh, start_worker(fresh, name))
                return

    def consumer_alive(self, name: str) -> bool:
        return any(t.is_alive() for _, t in self.workers if t.name == name)

    def supervise(self, *, metrics: Metrics | None, interval: float) -> None:
        """Every consumer and background thread, watched by the supervisor."""
        supervisor = Supervisor(metrics=metrics, interval=interval)
        for _, thread in self.workers:
            name = thread.name
            supervisor.watch(
                name,
                alive=partial(self.consumer_alive, name),
                restart=partial(self.restart_consumer, name),
            )
        watchers: list[Watcher | None] = [
            self.overdue_watch,
            self.queue_watch,
            self.pause_watcher,
            self.database_watch,
            self.report_refresh,
        ]
        for watcher in watchers:
            if watcher is not None:
                supervisor.watch(watcher.thread_name, alive=watcher.is_alive, restart=watcher.start)
        supervisor.start()
        self.supervisor = supervisor

    def down(self) -> list[str]:
        """Threads not doing their job right now, by name: consumers that died or are not
        consuming (e.g. reconnecting), background watchers that died."""
        consumers = [t.name for w, t in self.workers if not (w.ready.is_set() and t.is_alive())]
        watchers = self.supervisor.down() if self.supervisor is not None else []
        return list(dict.fromkeys([*consumers, *watchers]))

    def readiness(self) -> dict[str, Any]:
        """The checks /readyz reports (each true or false) and `down`, the threads by name."""
        down = self.down()
        consumer_names = {t.name for _, t in self.workers}
        checks: dict[str, Any] = {"consumers": not any(n in consumer_names for n in down)}
        checks["topology"] = self.topology_declared
        try:
            if self.ping is None:
                raise TransientError("no ledger yet")
            self.ping()
            checks["database"] = True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = False
        try:
            with connected(self.broker, max_retries=1):
                checks["broker"] = True
        except TransientError as exc:
            log.warning("broker_not_ready", reason=exc.message)  # says why, e.g. TLS refused
            checks["broker"] = False
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks["broker"] = False
        checks["down"] = down
        return checks

    def stop(self) -> None:
        """Stop consuming; each worker finishes the message in hand, unacked prefetched
        messages return to their queues when the connections close."""
        if self.supervisor is not None:
            self.supervisor.stop()  # first: nothing stopping below is restarted
        if self.api:
            self.api.stop()
        for watcher in (
            self.pause_watcher,
            self.overdue_watch,
            self.queue_watch,
            self.report_refresh,
        ):
            if watcher is not None:
                watcher.stop()
        if self.database_watch is not None:
            self.database_watch.stop()
        for worker, _ in self.workers:
            worker.stop()
        for _, thread in self.workers:
            thread.join(timeout=15)
        for close in (*self.close_senders, *self.close_publishers):
            close()
        log.info("hub_stopped")
