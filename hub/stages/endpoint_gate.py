"""Whether an endpoint's consumers may consume and its Sender may send: the circuit breaker
(hub.stages.circuit) and the operators' pause switch, joined in one EndpointGate per endpoint.

No broker or database code here: QueueWorker asks the gate between messages and cancels or
resumes consumption; PauseWatcher reads the switches through a small port.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

from hub.errors import CircuitOpen, PermanentError, TransientError
from hub.log import get_logger
from hub.ports import Sender
from hub.records import Delivered, DeliveryJob
from hub.stages.circuit import CircuitBreaker, CircuitConfig, CircuitState

log = get_logger("hub.endpoint_control")

_EVENTS = {
    CircuitState.OPEN: "circuit_opened",
    CircuitState.HALF_OPEN: "circuit_half_open",
    CircuitState.CLOSED: "circuit_closed",
}


class EndpointGate:
    """One endpoint's say on consuming: not paused by an operator, and the circuit allows it.
    `circuit.state` is what a metrics gauge reads; `circuit.subscribe` sees every change."""

    def __init__(self, endpoint: str, circuit: CircuitBreaker) -> None:
        self.endpoint = endpoint
        self.circuit = circuit
        self.paused = False
        circuit.subscribe(self._log_change)

    def may_consume(self, holder: object) -> bool:
        return not self.paused and self.circuit.may_consume(holder)

    def set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            log.warning("endpoint_paused" if paused else "endpoint_resumed", endpoint=self.endpoint)

    def _log_change(self, old: CircuitState, new: CircuitState) -> None:
        log.warning(
            _EVENTS[new],
            endpoint=self.endpoint,
            previous=str(old),
            failures=self.circuit.consecutive_failures,
            cooldown_s=self.circuit.config.cooldown_seconds,
        )


def gate_for(endpoint: str, config: CircuitConfig) -> EndpointGate:
    return EndpointGate(endpoint, CircuitBreaker(config))


class CircuitSender:
    """hub.ports.Sender wrapping an endpoint kind's Sender: refuses (CircuitOpen, nothing sent)
    while the circuit is open or a probe is already out, and tells the circuit each verdict. A
    permanent refusal counts as success: the endpoint is up and answering."""

    def __init__(self, inner: Sender, circuit: CircuitBreaker, *, endpoint: str) -> None:
        self.inner = inner
        self.circuit = circuit
        self.endpoint = endpoint

    def send(self, job: DeliveryJob) -> Delivered:
        if not self.circuit.before_send():
            raise CircuitOpen(
                f"not sent: the circuit for {self.endpoint} is {self.circuit.state}",
                endpoint=self.endpoint,
            )
        try:
            delivered = self.inner.send(job)
        except TransientError:
            self.circuit.record_failure()
            raise
        except PermanentError:
            self.circuit.record_success()
            raise
        self.circuit.record_success()
        return delivered


class PauseSwitches(Protocol):
    def paused(self) -> frozenset[str]: ...


class PauseWatcher:
    """Polls the operators' pause switches every `interval` seconds and applies them to the
    gates. A database that cannot be read leaves every gate as it was."""

    def __init__(
        self,
        switches: PauseSwitches,
        gates: Mapping[str, EndpointGate],
        *,
        interval: float = 2.0,
    ) -> None:
        self.switches = switches
        self.gates = gates
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_name = "pause-watcher"

    def poll_once(self) -> None:
        try:
            paused = self.switches.paused()
        except TransientError as exc:
            log.warning("endpoint_switches_unreadable", reason=exc.message)
            return
        for name, gate in self.gates.items():
            gate.set_paused(name in paused)

    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - a background loop's boundary: never dies
                log.error("endpoint_switches_poll_crashed", error_class=type(exc).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
