"""Delivery failures on the real broker: transient answers come back through the TTL retry
queues, permanent ones are dead-lettered with their reasons, and a dead endpoint holds up
nobody else."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e


class Script:
    """Answers the first `n` POSTs to one endpoint with `status`, then behaves normally."""

    def __init__(
        self,
        endpoint: str,
        status: int,
        n: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"{}",
    ) -> None:
        self.endpoint, self.status, self.left = endpoint, status, n
        self.headers = headers or {}
        self.body = body
        self.lock = threading.Lock()

    def __call__(self, endpoint: str, bundle: dict[str, Any]) -> Any:
        with self.lock:
            if endpoint != self.endpoint or self.left == 0:
                return None
            self.left -= 1
            return self.status, self.headers, self.body


def test_transient_failures_are_retried_until_delivered(rig_factory: Any) -> None:
    # 3 quick in-process failures, then one more on the first broker redelivery (1 s TTL)
    rig: HubRig = rig_factory(behaviour=Script("wy-ld", 503, 4), replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(rig.trust.delivered()) == 1, timeout=30, what="the retried referral")
    ledger = rig.hub.ledger
    assert ledger is not None
    # the trust has it; the hub records the attempt once the answer is back
    wait_until(
        lambda: ledger.referrals_for(alert["alert_id"])[0].state == "delivered",
        what="the delivery recorded",
    )
    assert ledger.referrals_for(alert["alert_id"])[0].attempts == 5
    assert rig.justice.queue_depth("hub.dlq.deliver") == 0


def test_permanent_rejection_is_dead_lettered_with_the_operation_outcome(rig_factory: Any) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "REC_BAD_REQUEST unknown service",
            }
        ],
    }
    rig: HubRig = rig_factory(
        behaviour=Script("wy-ld", 400, 100, body=json.dumps(outcome).encode()), replies=None
    )
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    _, props, body = rig.justice.get_one("hub.dlq.deliver", timeout=15)
    headers = props.headers
    assert headers["x-hub-stage"] == "deliver"
    assert headers["x-hub-endpoint"] == "wy-ld"
    assert headers["x-hub-http-status"] == 400
    assert "unknown service" in headers["x-hub-operation-outcome"]
    assert headers["x-hub-original-queue"] == "hub.deliver.wy-ld"
    assert headers["x-hub-attempts"] == 1
    assert json.loads(body)["resourceType"] == "Bundle"


def test_retries_that_outlast_the_deadline_end_on_the_dead_letter_queue(rig_factory: Any) -> None:
    from datetime import timedelta

    from hub.pipeline import RetryPolicy

    rig: HubRig = rig_factory(
        behaviour=Script("wy-ld", 503, 10_000),
        replies=None,
        retry=RetryPolicy(delays=(1,), deadline=timedelta(seconds=3)),
        # Out of the way: an open circuit would hold the message for its 30 s cool-down
        # before the expired deadline could be seen (tests/e2e/test_circuit_and_pause.py).
        endpoint_yaml={"wy-ld": "circuit: {failure_threshold: 1000}"},
    )
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    _, props, _ = rig.justice.get_one("hub.dlq.deliver", timeout=30)
    assert props.headers["x-hub-error-class"] == "RetriesExhausted"
    assert props.headers["x-hub-attempts"] >= 2


def test_a_dead_endpoint_does_not_hold_up_the_others(rig_factory: Any) -> None:
    rig: HubRig = rig_factory(behaviour=Script("leeds-dat", 503, 10_000), replies=None)
    alerts = [
        fresh_custody(vulnerabilities=[{"type": "substance_misuse", "detail": "x"}])
        for _ in range(5)
    ]
    for alert in alerts:
        rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(rig.trust.delivered()) == 5, timeout=20, what="wy-ld deliveries")
    assert {r.endpoint for r in rig.trust.delivered()} == {"wy-ld"}
