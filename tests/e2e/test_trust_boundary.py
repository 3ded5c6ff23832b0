"""The hub trusts only what it wrote itself (issue 9 §2), on the real broker: headers in the hub's
namespace from a publisher are never believed, what the failed-message store says about a
message's origin is the hub's own record, a replay goes back only to the stage that record names,
and a message put straight onto a hub queue without the hub's seal is not believed either."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pika
import pytest

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.messages import OutcomeStatus
from hub.operations.failed import replay
from hub.records import FailedMessage
from hub.transforms.response_to_outcome import build_service_response
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for, now_iso
from tests.e2e.test_console_browser import _login, console, operators_yaml
from tests.e2e.test_failed_messages import Outage, only_row
from tests.fixtures.alerts import court_alert, routing_key_of, update_of

pytestmark = pytest.mark.e2e
__all__ = ["console", "operators_yaml"]  # fixtures shared with the console tests


def parked_row(store: SqlFailedStore, alert_id: str) -> FailedMessage:
    wait_until(lambda: len(store.list(alert_id=alert_id)) == 1, what="the parked row")
    (row,) = store.list(alert_id=alert_id)
    return row


def test_a_forged_original_queue_cannot_turn_an_alert_into_a_service_outcome(
    rig_factory: Any,
) -> None:
    """The incident: a custody publisher sent a servicerequest-response Bundle as an alert with
    `x-hub-original-queue: hub.outcomes.inbound`; a replay fed it to the outcome stage."""
    rig: HubRig = rig_factory(park_dead_letters=True)
    store = SqlFailedStore(rig.db_url)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the real referral")
    forged_id = str(uuid.uuid4())
    forged = build_service_response(
        referral_bundle_id=rig.trust.delivered()[0].bundle_id,
        service_ods="RXX01",
        service_name="West Yorkshire Liaison and Diversion Service",
        status=OutcomeStatus.ATTENDED,
        at=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
        recommendation="Forged clinical text",
    )

    rig.justice.publish(
        json.dumps(forged).encode(),
        routing_key=key_for(alert),
        message_id=forged_id,
        headers={"x-hub-original-queue": "hub.outcomes.inbound", "x-hub-endpoint": "wy-ld"},
    )

    try:
        row = parked_row(store, forged_id)
        assert (row.failure.stage, row.failure.original_queue) == ("intake", "hub.alerts.custody")
        assert row.failure.endpoint is None
        assert row.failure.original_routing_key == key_for(alert)
        publisher = rig.publisher()
        try:
            result = replay(store, publisher, [row.id], by="alice", reason="fixed", now=now())
        finally:
            publisher.close()
        assert result.done == [row.id]
        # Back to intake, which refuses it again: a second `rejected`, never an outcome.
        rig.justice.wait_for(
            lambda got: sum(o["alert_id"] == forged_id for o in got) == 2, timeout=30
        )
        time.sleep(1.0)
        statuses = {o["status"] for o in rig.justice.for_alert(alert["alert_id"])}
        assert "attended" not in statuses
        assert {o["status"] for o in rig.justice.for_alert(forged_id)} == {"rejected"}
    finally:
        store.close()


def _court_alert_under_a_custody_key(rig: HubRig) -> tuple[dict[str, Any], str]:
    """A custody publisher sends a court's alert under its own routing key, claiming the
    court's key in `x-hub-original-routing-key`."""
    custody_org = fresh_custody()["source"]["organisation"]["code"]
    alert = court_alert(sent_at=now_iso())
    rig.justice.publish(
        alert,
        routing_key=f"custody.{custody_org}.identification",
        user_id="guest",
        headers={"x-hub-original-routing-key": key_for(alert, "court")},
    )
    return alert, custody_org


def test_a_forged_original_routing_key_does_not_make_an_alert_another_agencys(
    rig_factory: Any,
) -> None:
    rig: HubRig = rig_factory()

    alert, custody_org = _court_alert_under_a_custody_key(rig)

    (rejected,) = rig.justice.wait_for(lambda got: len(got) >= 1)
    assert rejected["status"] == "rejected"
    assert rejected["_routing_key"] == f"custody.{custody_org}.rejected"
    time.sleep(1.0)
    assert rig.trust.received == []


def test_with_sources_set_a_forged_routing_key_sends_no_rejection_to_the_other_agency(
    rig_factory: Any,
) -> None:
    custody_org = fresh_custody()["source"]["organisation"]["code"]
    court_org = court_alert()["source"]["organisation"]["code"]
    rig: HubRig = rig_factory(
        sources_yaml=f"sources:\n  {custody_org}: [guest]\n  {court_org}: [court-system]\n"
    )

    _court_alert_under_a_custody_key(rig)

    outcomes = rig.justice.wait_for(lambda got: len(got) >= 1)
    time.sleep(1.0)
    rig.justice.drain()
    assert [o["_routing_key"] for o in outcomes] == [f"custody.{custody_org}.rejected"]
    assert rig.trust.received == []


def test_an_alert_carrying_x_death_headers_from_its_publisher_is_rejected(
    rig_factory: Any,
) -> None:
    """RabbitMQ keeps a publisher's x-death entry (exchange, routing keys) when it later
    dead-letters the message itself, so one set by a publisher must never get that far."""
    rig: HubRig = rig_factory()
    alert = fresh_custody()
    forged_death = {
        "queue": "hub.alerts.custody",
        "reason": "delivery_limit",
        "exchange": "justice.alerts",
        "routing-keys": ["court.LMC01.identification"],
        "count": 9,
    }

    rig.justice.publish(alert, routing_key=key_for(alert), headers={"x-death": [forged_death]})

    (rejected,) = rig.justice.wait_for(lambda got: len(got) >= 1)
    assert rejected["status"] == "rejected"
    assert rejected["reasons"][0]["path"] == "$headers"
    assert rejected["_routing_key"] == f"custody.{alert['source']['organisation']['code']}.rejected"
    time.sleep(1.0)
    assert rig.trust.received == []


def test_a_replayed_follow_up_keeps_the_user_the_broker_vouched_for(rig_factory: Any) -> None:
    """With `sources` set, a replay (back through hub.work, published by the hub) is judged by
    the AMQP user that first published it, recorded by the hub, not refused as spoofing."""
    alert = fresh_custody()
    org = alert["source"]["organisation"]["code"]
    rig: HubRig = rig_factory(park_dead_letters=True, sources_yaml=f"sources:\n  {org}: [guest]\n")
    store = SqlFailedStore(rig.db_url)
    update = update_of(alert)
    rig.justice.publish(update, routing_key=routing_key_of(update), user_id="guest")
    try:
        wait_until(lambda: len(store.list(alert_id=alert["alert_id"])) == 1, 30, what="the update")
        (row,) = store.list(alert_id=alert["alert_id"])
        assert row.failure.stage == "intake"  # an update for an alert the hub does not know
        rig.justice.publish(alert, routing_key=key_for(alert), user_id="guest")
        wait_until(lambda: len(rig.trust.delivered()) == 1, 30, what="the referral")

        publisher = rig.publisher()
        try:
            replay(store, publisher, [row.id], by="alice", reason="alert now here", now=now())
        finally:
            publisher.close()

        wait_until(lambda: len(rig.trust.delivered()) == 2, 30, what="the replayed update")
        assert len(store.list(alert_id=alert["alert_id"])) == 1  # not parked again
    finally:
        store.close()


def _publish_to_hub_work(
    rig: HubRig, queue: str, body: bytes, headers: dict[str, Any], message_id: str | None = None
) -> None:
    """Someone with broker access (the test vhost lets guest do anything) bypassing the
    justice side: straight onto a hub queue, with hub headers but no seal."""
    connection = pika.BlockingConnection(pika.URLParameters(rig.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "hub.work",
            queue,
            body,
            pika.BasicProperties(
                headers=headers, delivery_mode=2, message_id=message_id or str(uuid.uuid4())
            ),
            mandatory=True,
        )
    finally:
        connection.close()


def test_an_unsealed_delivery_job_put_straight_on_hub_work_is_not_delivered(
    rig_factory: Any,
) -> None:
    outage = Outage("wy-ld")
    rig: HubRig = rig_factory(behaviour=outage, replies=None)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    rig.justice.get_one("hub.dlq.deliver")  # the referral was refused and parked
    assert rig.hub.ledger is not None
    (referral,) = rig.hub.ledger.referrals_for(alert["alert_id"])
    outage.fix()  # from now on the trust takes (and records) whatever it is sent

    _publish_to_hub_work(
        rig,
        "hub.deliver.wy-ld",
        b'{"resourceType": "Bundle", "type": "message", "entry": []}',
        {"x-hub-bundle-id": referral.bundle_id, "x-hub-alert-id": alert["alert_id"]},
    )

    _, props, _ = rig.justice.get_one("hub.dlq.deliver")
    assert "no referral known" in props.headers["x-hub-error"]
    assert "x-hub-bundle-id" not in props.headers
    assert rig.trust.received == []


def test_an_unsealed_alert_put_straight_on_an_alert_queue_is_parked_unanswered(
    rig_factory: Any,
) -> None:
    rig: HubRig = rig_factory()
    alert = fresh_custody()

    _publish_to_hub_work(
        rig,
        "hub.alerts.custody",
        json.dumps(alert).encode(),
        {"x-hub-original-routing-key": key_for(alert), "x-hub-original-exchange": "justice.alerts"},
        message_id=alert["alert_id"],
    )

    _, props, _ = rig.justice.get_one("hub.dlq.intake")
    assert "sender is unknown" in props.headers["x-hub-error"]
    assert props.headers["x-hub-original-exchange"] == "hub.work"
    time.sleep(1.0)
    assert rig.trust.received == [] and rig.justice.for_alert(alert["alert_id"]) == []


def now() -> datetime:
    return datetime.now(UTC)


def test_the_console_refuses_a_replay_to_a_queue_the_stage_never_reads_and_says_why(
    console: Any,
) -> None:
    """A row whose origin says hub.outcomes.inbound for an intake failure (stored before the hub
    sealed its headers): the operator is told, and nothing is published."""
    rig, _, store, alert = console
    parked = only_row(store, alert["alert_id"]).failure
    forged = dataclasses.replace(
        parked,
        fingerprint=uuid.uuid4().hex,
        stage="intake",
        endpoint="wy-ld",
        original_queue="hub.outcomes.inbound",
        alert_id=str(uuid.uuid4()),
        # A group of its own: the store is the shared test database, and a row left in the
        # deliver rows' group under another stage would show that group twice in the console.
        group_key=uuid.uuid4().hex,
    )
    _, failed_id = store.add(forged, at=now())
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.api_port}", timeout=10) as client:
        token = _login(client)

        answer = client.post(
            f"/ops/messages/{failed_id}/replay", data={"reason": "looks fine", "csrf": token}
        )

    assert answer.status_code == 400
    assert "a intake failure cannot be replayed to hub.outcomes.inbound" in answer.text
    message = store.get(failed_id)
    assert message is not None and message.state.value == "failed"
    assert rig.justice.queue_depth("hub.outcomes.inbound") == 0
