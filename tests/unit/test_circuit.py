"""The circuit breaker's state machine with an injected clock, and the CircuitSender around a
fake Sender."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hub.errors import CircuitOpen, PermanentError, TransientError
from hub.records import Delivered, DeliveryJob, ReferralRecord
from hub.stages.circuit import CircuitBreaker, CircuitConfig, CircuitState
from hub.stages.endpoint_gate import CircuitSender, EndpointGate, PauseWatcher

pytestmark = pytest.mark.unit


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, cooldown: float = 30.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(CircuitConfig(threshold, cooldown), clock=clock), clock


def test_the_circuit_opens_after_the_threshold_of_consecutive_failures() -> None:
    circuit, _ = breaker(threshold=3)
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.may_consume("consumer-1")
    assert not circuit.before_send()


def test_a_success_resets_the_run_of_failures() -> None:
    circuit, _ = breaker(threshold=3)
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state is CircuitState.CLOSED


def test_after_the_cooldown_one_consumer_takes_one_probe() -> None:
    circuit, clock = breaker(threshold=1, cooldown=30)
    circuit.record_failure()
    clock.now += 29.9
    assert not circuit.may_consume("a")

    clock.now += 0.2
    assert circuit.may_consume("a")
    assert circuit.state is CircuitState.HALF_OPEN
    assert circuit.may_consume("a")  # the probe holder keeps its slot
    assert not circuit.may_consume("b")  # the others wait for the verdict
    assert circuit.before_send()  # the probe
    assert not circuit.before_send()  # and nothing else


def test_a_successful_probe_closes_the_circuit_for_everyone() -> None:
    circuit, clock = breaker(threshold=1, cooldown=5)
    circuit.record_failure()
    clock.now += 5
    assert circuit.may_consume("a") and circuit.before_send()
    circuit.record_success()
    assert circuit.state is CircuitState.CLOSED
    assert circuit.may_consume("b") and circuit.before_send() and circuit.before_send()


def test_a_failed_probe_reopens_the_circuit_for_another_cooldown() -> None:
    circuit, clock = breaker(threshold=1, cooldown=5)
    circuit.record_failure()
    clock.now += 5
    assert circuit.may_consume("a") and circuit.before_send()
    circuit.record_failure()
    assert circuit.state is CircuitState.OPEN
    clock.now += 4
    assert not circuit.may_consume("a")
    clock.now += 1
    assert circuit.may_consume("b")  # whoever asks first after the new cooldown


def test_every_change_of_state_is_told_to_listeners_once() -> None:
    circuit, clock = breaker(threshold=2, cooldown=1)
    seen: list[tuple[str, str]] = []
    circuit.subscribe(lambda old, new: seen.append((old, new)))
    circuit.record_failure()
    circuit.record_failure()
    circuit.record_failure()  # already open: no change
    clock.now += 1
    circuit.may_consume("a")
    circuit.may_consume("a")
    circuit.record_success()
    assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


REFERRAL = ReferralRecord(bundle_id="b", alert_id="a", endpoint="wy-ld", request_id="r")
JOB = DeliveryJob(referral=REFERRAL, body=b"{}", content_type="application/fhir+json")


@dataclass
class ScriptedSender:
    outcomes: list[Exception | None]
    sent: list[DeliveryJob] = field(default_factory=list)

    def send(self, job: DeliveryJob) -> Delivered:
        self.sent.append(job)
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return Delivered(answer="HTTP 200", status=200, elapsed_ms=1.0)


def test_the_circuit_sender_stops_sending_once_the_circuit_opens() -> None:
    circuit, _ = breaker(threshold=2)
    inner = ScriptedSender([TransientError("503"), TransientError("503")])
    sender = CircuitSender(inner, circuit, endpoint="wy-ld")
    for _ in range(2):
        with pytest.raises(TransientError):
            sender.send(JOB)
    with pytest.raises(CircuitOpen):
        sender.send(JOB)
    assert len(inner.sent) == 2


def test_a_permanent_refusal_counts_as_the_endpoint_being_up() -> None:
    circuit, _ = breaker(threshold=2)
    inner = ScriptedSender([TransientError("503"), PermanentError("400"), TransientError("503")])
    sender = CircuitSender(inner, circuit, endpoint="wy-ld")
    for _ in range(3):
        with pytest.raises((TransientError, PermanentError)):
            sender.send(JOB)
    assert circuit.state is CircuitState.CLOSED


@dataclass
class Switches:
    names: frozenset[str] = frozenset()
    broken: bool = False

    def paused(self) -> frozenset[str]:
        if self.broken:
            raise TransientError("database away")
        return self.names


def test_the_pause_watcher_pauses_and_resumes_gates_and_keeps_them_when_unreadable() -> None:
    gates = {name: EndpointGate(name, breaker()[0]) for name in ("wy-ld", "leeds-dat")}
    switches = Switches(frozenset({"wy-ld"}))
    watcher = PauseWatcher(switches, gates)

    watcher.poll_once()
    assert not gates["wy-ld"].may_consume("c") and gates["leeds-dat"].may_consume("c")

    switches.broken = True
    watcher.poll_once()
    assert gates["wy-ld"].paused

    switches.broken, switches.names = False, frozenset()
    watcher.poll_once()
    assert gates["wy-ld"].may_consume("c")
