"""Each agency connects as itself: RabbitMQ vouches for the AMQP user_id, and the hub checks
it against the alert's source organisation (hub.yaml `sources`)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from tests.conftest import HubRig, Justice, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def force_user(amqp_url: str) -> Iterator[tuple[str, str]]:
    """A RabbitMQ user for West Yorkshire Police's custody system, allowed on the test vhost."""
    user, password = f"wyp-custody-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    vhost = amqp_url.rsplit("/", 1)[1]
    subprocess.run(["rabbitmqctl", "add_user", user, password], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    yield user, password
    subprocess.run(["rabbitmqctl", "delete_user", user], capture_output=True)


def _rig(rig_factory: Any, user: str) -> HubRig:
    org = fresh_custody()["source"]["organisation"]["code"]
    return rig_factory(sources_yaml=f"sources:\n  {org}: [{user}]\n")


def test_alert_published_by_the_forces_own_user_is_accepted(
    rig_factory: Any, force_user: tuple[str, str]
) -> None:
    user, password = force_user
    rig = _rig(rig_factory, user)
    as_force = Justice(rig.amqp_url.replace("guest:guest", f"{user}:{password}"))
    try:
        alert = fresh_custody()
        as_force.publish(alert, routing_key=key_for(alert), user_id=user)
        wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral")
    finally:
        as_force.close()


def test_alert_published_by_another_user_is_parked_as_spoofing(
    rig_factory: Any, force_user: tuple[str, str]
) -> None:
    user, _ = force_user
    rig = _rig(rig_factory, user)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert), user_id="guest")

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))
    assert outcomes[0]["reasons"][0]["path"] == "$user_id"
    _, props, _ = rig.justice.get_one("hub.dlq.intake")
    assert "not allowed" in props.headers["x-hub-error"]
    assert rig.trust.received == []


def test_broker_refuses_a_user_id_that_is_not_the_connections_user(
    rig_factory: Any, force_user: tuple[str, str]
) -> None:
    user, _ = force_user
    rig = _rig(rig_factory, user)
    alert = fresh_custody()
    with pytest.raises(pika.exceptions.AMQPError):
        rig.justice.publish(alert, routing_key=key_for(alert), user_id=user)
