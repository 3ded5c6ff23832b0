"""The mesh endpoint kind end to end: an alert routed to a mesh endpoint leaves the hub's mailbox
as the referral's FHIR Bundle, the pretend trust finds it in its mesh-sandbox inbox carrying the
X-Request-Id as MESH local id, downloads and acknowledges it, and the hub's tracking sees the
acknowledgement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from hub.adapters.mesh import MeshInboxReader, MeshSender
from hub.records import ReferralState
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.mesh_sandbox import (
    HUB_MAILBOX,
    PASSWORD,
    SHARED_KEY,
    TRUST_MAILBOX,
    WORKFLOW,
    Sandbox,
    start_sandbox,
)

pytestmark = pytest.mark.e2e

ROUTES = """\
default: [wy-ld]
rules:
  - name: custody-by-mesh
    match: {source_kind: custody}
    send_to: [leeds-mesh]
"""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("mesh-e2e"))
    yield running
    running.stop()


def mesh_rig(rig_factory: Any, sandbox: Sandbox) -> HubRig:
    endpoint = (
        "  leeds-mesh:\n    kind: mesh\n"
        f"    url: {sandbox.url}\n"
        f"    mailbox: {HUB_MAILBOX}\n    recipient_mailbox: {TRUST_MAILBOX}\n"
        f"    workflow_id: {WORKFLOW}\n"
        "    password_env: HUB_MESH_PASSWORD\n    shared_key_env: HUB_MESH_SHARED_KEY\n"
        "    timeout_seconds: 5\n"
        "    ods_code: XLM01\n    organisation_name: Leeds Mental Health (MESH)\n"
    )
    rig: HubRig = rig_factory(
        routes=ROUTES,
        replies=None,
        extra_endpoint_yaml=endpoint,
        env={"HUB_MESH_PASSWORD": PASSWORD, "HUB_MESH_SHARED_KEY": SHARED_KEY},
    )
    return rig


def test_a_referral_reaches_the_trust_mailbox_and_its_acknowledgement_is_tracked(
    rig_factory: Any, sandbox: Sandbox
) -> None:
    # given a hub with a mesh endpoint, and the trust reading its own mailbox
    rig = mesh_rig(rig_factory, sandbox)
    alert = fresh_custody()

    # when an alert is routed to it
    rig.justice.publish(alert, routing_key=key_for(alert))

    # then the ledger records it delivered with MESH's message id, and the justice side hears
    assert rig.hub.ledger is not None
    ledger = rig.hub.ledger

    def delivered() -> bool:
        found = ledger.referrals_for(alert["alert_id"])
        return bool(found) and found[0].state is ReferralState.DELIVERED

    wait_until(delivered, timeout=30, what="the MESH referral delivered")
    referral = ledger.referrals_for(alert["alert_id"])[0]
    assert referral.endpoint == "leeds-mesh" and referral.attempts == 1
    rig.justice.wait_for(
        lambda got: any(
            o["alert_id"] == alert["alert_id"] and o["status"] == "received" for o in got
        )
    )

    # and the trust finds the Bundle in its inbox, tagged with our X-Request-Id, and acks it
    with MeshInboxReader(sandbox.url, TRUST_MAILBOX, PASSWORD, SHARED_KEY, timeout=5) as inbox:
        waiting = [inbox.read(m) for m in inbox.list_ids()]
        mine = [m for m in waiting if m.local_id == referral.request_id]
        assert len(mine) == 1
        message = mine[0]
        bundle = json.loads(message.body)
        assert bundle["resourceType"] == "Bundle"
        assert bundle["id"] == referral.bundle_id
        assert message.sender == HUB_MAILBOX and message.workflow_id == WORKFLOW
        inbox.acknowledge(message.message_id)
        assert message.message_id not in inbox.list_ids()

    with MeshSender(
        sandbox.url,
        HUB_MAILBOX,
        PASSWORD,
        SHARED_KEY,
        recipient_mailbox=TRUST_MAILBOX,
        workflow_id=WORKFLOW,
        timeout=5,
    ) as hub_mailbox:
        assert hub_mailbox.track(message.message_id) == "acknowledged"
