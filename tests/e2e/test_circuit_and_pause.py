"""The circuit breaker and operators' pause on the real broker: a failing endpoint's circuit
opens and its referrals wait in hub.deliver.<endpoint> with hardly a POST reaching the trust;
once the trust is back a probe closes the circuit and everything is delivered. `hub endpoint
pause` holds a running hub's deliveries on the broker and `resume` lets them all through."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hub.cli.main import main
from hub.pipeline import RetryPolicy
from hub.stages.circuit import CircuitState
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e


class Outage:
    """One endpoint answers 503 while `down`; every POST to it is counted."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.down = True
        self.posts = 0
        self.lock = threading.Lock()

    def __call__(self, endpoint: str, bundle: dict[str, Any]) -> Any:
        if endpoint != self.endpoint:
            return None
        with self.lock:
            self.posts += 1
            if self.down:
                return 503, {}, b"{}"
        return None


def test_a_failing_endpoint_opens_its_circuit_and_a_probe_closes_it_on_recovery(
    rig_factory: Any,
) -> None:
    from datetime import timedelta

    # given an endpoint that is down, with a circuit of 3 failures and a 3 s cool-down
    outage = Outage("wy-ld")
    rig: HubRig = rig_factory(
        behaviour=outage,
        replies=None,
        retry=RetryPolicy(delays=(1, 2), deadline=timedelta(minutes=5)),
        endpoint_yaml={"wy-ld": "circuit: {failure_threshold: 3, cooldown_seconds: 3}"},
    )
    circuit = rig.hub.gates["wy-ld"].circuit
    alerts = [fresh_custody() for _ in range(8)]

    # when referrals arrive for it
    for alert in alerts:
        rig.justice.publish(alert, routing_key=key_for(alert))

    # then the circuit opens, the referrals wait on the broker, and during the cool-downs that
    # follow only the odd probe reaches the trust
    wait_until(lambda: circuit.state is CircuitState.OPEN, timeout=20, what="circuit open")
    posts_at_open = outage.posts
    wait_until(
        lambda: rig.justice.queue_depth("hub.deliver.wy-ld") >= 6,
        timeout=10,
        what="referrals waiting in hub.deliver.wy-ld",
    )
    time.sleep(7)  # two cool-downs of 3 s
    assert outage.posts - posts_at_open <= 3  # at most one probe per cool-down
    assert outage.posts > posts_at_open  # ... and the hub did probe: it was trying all along
    assert circuit.state in (CircuitState.OPEN, CircuitState.HALF_OPEN)
    assert rig.trust.delivered() == []

    # when the trust recovers, then a probe succeeds, the circuit closes and all are delivered
    outage.down = False
    wait_until(lambda: len(rig.trust.delivered()) == 8, timeout=40, what="all 8 delivered")
    assert circuit.state is CircuitState.CLOSED
    assert {r.correlation_id for r in rig.trust.delivered()} == {a["alert_id"] for a in alerts}
    assert rig.justice.queue_depth("hub.dlq.deliver") == 0


def _hub_cli(rig: HubRig, *args: str) -> str:
    result = CliRunner().invoke(
        main,
        ["endpoint", *args, "--config", str(rig.config_dir)],
        env={
            **rig.env,
            "HUB_DB_URL": rig.db_url,
            "HUB_AMQP_URL": rig.amqp_url,
            "HUB_OPERATOR": "ops-test",
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_paused_endpoint_keeps_its_referrals_on_the_broker_until_resumed(
    rig_factory: Any, tmp_path: Path
) -> None:
    # given a running hub (its own database: the pause switch is hub-wide state)
    rig: HubRig = rig_factory(replies=None, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    gate = rig.hub.gates["wy-ld"]

    # when an operator pauses wy-ld and referrals arrive for it
    assert "paused" in _hub_cli(rig, "pause", "wy-ld", "--reason", "trust maintenance")
    try:
        wait_until(lambda: gate.paused, timeout=10, what="the hub to see the pause")
        time.sleep(1.5)  # the consumer cancels between messages (at least every second)
        alerts = [fresh_custody() for _ in range(5)]
        for alert in alerts:
            rig.justice.publish(alert, routing_key=key_for(alert))

        # then nothing is sent: all five wait in hub.deliver.wy-ld
        wait_until(
            lambda: rig.justice.queue_depth("hub.deliver.wy-ld") == 5, timeout=15, what="5 queued"
        )
        time.sleep(2)
        assert rig.trust.delivered() == []
        # ... because all five still wait on the broker, not taken and lost on the way
        assert rig.justice.queue_depth("hub.deliver.wy-ld") == 5
        assert "paused by ops-test" in _hub_cli(rig, "list")
    finally:
        # when the operator resumes it, then every one of them is delivered once
        assert "resumed" in _hub_cli(rig, "resume", "wy-ld")
    wait_until(lambda: len(rig.trust.delivered()) == 5, timeout=20, what="5 delivered")
    assert {r.correlation_id for r in rig.trust.delivered()} == {a["alert_id"] for a in alerts}
    assert rig.justice.queue_depth("hub.deliver.wy-ld") == 0
