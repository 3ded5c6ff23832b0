"""Each row of the delivery rule table on the real broker, and poison messages: a message that
crashes processing, or one that keeps coming back, ends on the dead-letter queue."""

from __future__ import annotations

import json
import time
from typing import Any

import pika
import pytest

from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.e2e.test_delivery_failures import Script

pytestmark = pytest.mark.e2e

OO_DUPLICATE = json.dumps(
    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "duplicate"}]}
).encode()
OO_INVALID = json.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "unknown patient"}],
    }
).encode()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_transient_answer_is_retried_and_then_delivered(rig_factory: Any, status: int) -> None:
    rig: HubRig = rig_factory(behaviour=Script("wy-ld", status, 1), replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, timeout=20, what="the retried referral")
    ledger = rig.hub.ledger
    assert ledger is not None
    wait_until(
        lambda: ledger.referrals_for(alert["alert_id"])[0].state == "delivered",
        what="the delivery recorded",
    )
    assert ledger.referrals_for(alert["alert_id"])[0].attempts == 2


def test_a_2xx_without_the_echo_headers_is_retried(rig_factory: Any) -> None:
    # the trust's normal answer echoes; this one strips the echo on the first try
    script = Script("wy-ld", 200, 1, headers={"X-Request-Id": "", "X-Correlation-Id": ""})
    rig: HubRig = rig_factory(behaviour=script, replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, timeout=20, what="the retried referral")
    ledger = rig.hub.ledger
    assert ledger is not None
    wait_until(
        lambda: ledger.referrals_for(alert["alert_id"])[0].state == "delivered",
        what="the delivery recorded",
    )
    assert ledger.referrals_for(alert["alert_id"])[0].attempts == 2


def test_a_409_duplicate_counts_as_delivered_at_once(rig_factory: Any) -> None:
    rig: HubRig = rig_factory(behaviour=Script("wy-ld", 409, 100, body=OO_DUPLICATE), replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    rig.justice.wait_for(lambda got: any(o["status"] == "received" for o in got))
    assert rig.hub.ledger is not None
    referral = rig.hub.ledger.referrals_for(alert["alert_id"])[0]
    assert (referral.state, referral.attempts) == ("delivered", 1)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_are_dead_lettered_at_once(rig_factory: Any, status: int) -> None:
    rig: HubRig = rig_factory(behaviour=Script("wy-ld", status, 100, body=OO_INVALID), replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    _, props, _ = rig.justice.get_one("hub.dlq.deliver", timeout=15)
    assert props.headers["x-hub-http-status"] == status
    assert "unknown patient" in props.headers["x-hub-operation-outcome"]
    assert props.headers["x-hub-attempts"] == 1


def test_a_message_the_worker_cannot_process_is_dead_lettered_not_looped(rig: HubRig) -> None:
    # a delivery job whose headers name no referral: processing fails, the worker survives
    params = pika.URLParameters(rig.amqp_url)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            "hub.work",
            "hub.deliver.wy-ld",
            b"\x00not a bundle",
            pika.BasicProperties(headers={"x-hub-bundle-id": 7}, delivery_mode=2),
        )
    _, props, body = rig.justice.get_one("hub.dlq.deliver", timeout=15)
    assert body == b"\x00not a bundle"
    assert props.headers["x-hub-stage"] == "deliver"
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the next referral")


def test_a_message_redelivered_past_the_delivery_limit_is_dead_lettered_by_the_broker(
    rig: HubRig,
) -> None:
    # A worker that dies on a message hands it back each time; the quorum queue's
    # x-delivery-limit makes the broker dead-letter it instead of looping forever.
    rig.hub.stop()  # nobody consumes; this test plays the crashing worker
    params = pika.URLParameters(rig.amqp_url)
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            "hub.work", "hub.outcomes.inbound", b"poison", pika.BasicProperties(delivery_mode=2)
        )
        for _ in range(30):
            method, _, _ = ch.basic_get("hub.outcomes.inbound")
            if method is None:
                break
            ch.basic_nack(method.delivery_tag, requeue=True)
            time.sleep(0.05)
    _, props, body = rig.justice.get_one("hub.dlq.outcome", timeout=15)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "delivery_limit"
