"""The supervisor restarts what died, says so and counts it; the background loops (overdue
referrals, queue sampling, pause switches) survive any exception a round raises."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.adapters.memory.metrics import MemoryMetrics
from hub.operations.queue_watch import QueueWatch
from hub.runtime import Supervisor
from hub.security.ids import IdKey
from hub.stages.endpoint_gate import PauseWatcher
from hub.stages.overdue import OverdueWatch

ID_KEY = IdKey.of("unit-test-id-key-" + "k" * 32)


pytestmark = pytest.mark.unit


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


class Worker:
    """A thread that runs until told to die."""

    def __init__(self) -> None:
        self.starts = 0
        self._die = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.starts += 1
        self._die.clear()
        self.thread = threading.Thread(target=self._die.wait, daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def kill(self) -> None:
        self._die.set()
        assert self.thread is not None
        self.thread.join(5)


def test_a_dead_thread_is_named_restarted_and_counted() -> None:
    metrics = MemoryMetrics()
    supervisor = Supervisor(metrics=metrics)
    worker, other = Worker(), Worker()
    worker.start()
    other.start()
    supervisor.watch("intake-custody-0", alive=worker.alive, restart=worker.start)
    supervisor.watch("outcomes", alive=other.alive, restart=other.start)

    worker.kill()

    assert supervisor.down() == ["intake-custody-0"]
    assert supervisor.check_once() == ["intake-custody-0"]
    assert worker.alive() and worker.starts == 2 and other.starts == 1
    assert supervisor.down() == []
    assert metrics.counts[("thread_restarts", "intake-custody-0")] == 1
    other.kill()
    worker.kill()


def test_a_restart_that_fails_is_tried_again_next_round_and_the_supervisor_lives_on() -> None:
    metrics = MemoryMetrics()
    supervisor = Supervisor(metrics=metrics, interval=0.01)
    attempts: list[int] = []
    worker = Worker()

    def flaky_restart() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("broker away")
        worker.start()

    supervisor.watch("dlq-intake", alive=worker.alive, restart=flaky_restart)
    supervisor.start()
    try:
        wait_until(worker.alive)
    finally:
        supervisor.stop()
    assert len(attempts) == 3
    worker.kill()


class Exploding:
    """A dependency whose every call raises something nobody expects."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise self.error

    def __getattr__(self, name: str) -> Any:
        return self


def test_the_overdue_watch_survives_a_round_that_raises_anything() -> None:
    ledger = Exploding(KeyError("bundle"))
    watch = OverdueWatch(
        ids=ID_KEY,
        ledger=ledger,  # type: ignore[arg-type]
        publisher=Exploding(ValueError()),  # type: ignore[arg-type]
        recipients={},
        clock=lambda: datetime(2026, 11, 23, tzinfo=UTC),
        interval=0.01,
    )
    watch.start()
    try:
        wait_until(lambda: ledger.calls >= 3)
        assert watch.is_alive()
    finally:
        watch.stop()


def test_the_queue_watch_survives_a_round_that_raises_anything() -> None:
    depths = Exploding(RuntimeError("odd answer"))
    watch = QueueWatch(
        metrics=Exploding(TypeError()),  # type: ignore[arg-type]
        queues=["hub.alerts.custody"],
        depths=depths,
        interval=0.01,
    )
    watch.start()
    try:
        wait_until(lambda: depths.calls >= 3)
        assert watch.is_alive()
    finally:
        watch.stop()


def test_the_pause_watcher_survives_a_poll_that_raises_anything() -> None:
    class Switches:
        calls = 0

        def paused(self) -> set[str]:
            self.calls += 1
            if self.calls > 1:  # the first poll is at start-up, in the caller's thread
                raise LookupError("odd row")
            return set()

    switches = Switches()
    watcher = PauseWatcher(switches, {}, interval=0.01)  # type: ignore[arg-type]
    watcher.start()
    try:
        wait_until(lambda: switches.calls >= 4)
        assert watcher.is_alive()
    finally:
        watcher.stop()
