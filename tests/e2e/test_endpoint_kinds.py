"""Endpoint kinds end to end on the real broker: an alert routed to an hl7v2-mllp endpoint
arrives as a REF^I12 that hl7apy's MLLPServer parses STRICT, one routed to a webhook endpoint
arrives as JSON whose X-Hub-Signature-256 verifies with the key from the environment, and an
MLLP AR is dead-lettered with the receiver's text."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hl7apy.mllp import MLLPServer

from hub.endpoints.hl7v2_mllp import hl7v2_control_id
from hub.security.ids import IdKey
from tests.conftest import ID_KEY, HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.integration.test_mllp_delivery import Receiver, RefI12Handler

pytestmark = pytest.mark.e2e

SECRET = "whsec-e2e-0f3a9c"
ROUTES = """\
default: [wy-ld]
rules:
  - name: custody-to-pas-and-social-care
    match: {source_kind: custody}
    send_to: [leeds-pas, leeds-asc]
"""


@dataclass
class Hook:
    """A social-care webhook receiver: records each POST, answers 204."""

    port: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def mllp_trust() -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver(answer="AA")
    server = MLLPServer("127.0.0.1", 0, {"REF^I12^REF_I12": (RefI12Handler, receiver)}, timeout=10)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield receiver, int(server.server_address[1])
    receiver.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def hook() -> Iterator[Hook]:
    found = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            found.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def kinds_rig(rig_factory: Any, mllp_port: int, hook: Hook) -> HubRig:
    endpoints = (
        "  leeds-pas:\n    kind: hl7v2-mllp\n    host: 127.0.0.1\n"
        f"    port: {mllp_port}\n    timeout_seconds: 3\n"
        "    ods_code: XLP01\n    organisation_name: Leeds Patient Administration\n"
        "  leeds-asc:\n    kind: webhook\n"
        f"    url: http://127.0.0.1:{hook.port}/hooks/ld-referral\n"
        "    secret_env: LEEDS_ASC_WEBHOOK_KEY\n    timeout_seconds: 3\n"
        "    ods_code: XLA01\n    organisation_name: Leeds Adult Social Care\n"
    )
    rig: HubRig = rig_factory(
        routes=ROUTES,
        replies=None,
        extra_endpoint_yaml=endpoints,
        env={"LEEDS_ASC_WEBHOOK_KEY": SECRET},
    )
    return rig


def received_from(rig: HubRig, alert_id: str) -> set[str]:
    return {
        o["service"]["code"]
        for o in rig.justice.for_alert(alert_id)
        if o["status"] == "received" and o["service"]
    }


def test_an_alert_routed_to_an_mllp_endpoint_arrives_as_a_strictly_valid_ref_i12(
    rig_factory: Any, mllp_trust: tuple[Receiver, int], hook: Hook
) -> None:
    receiver, port = mllp_trust
    rig = kinds_rig(rig_factory, port, hook)
    alert = fresh_custody()

    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(receiver.received) == 1, what="the REF^I12 at the MLLP receiver")
    [message] = receiver.received  # the handler parsed and validated it at level STRICT
    assert message.name == "REF_I12"
    assert message.msh.msh_10.to_er7() == hl7v2_control_id(
        IdKey.of(ID_KEY), alert["alert_id"], "leeds-pas"
    )
    assert message.msh.msh_6.to_er7() == "XLP01"
    assert alert["person"]["nhs_number"] in message.pid.pid_3.to_er7()
    assert alert["alert_id"] in message.rf1.rf1_11.to_er7()
    wait_until(lambda: "XLP01" in received_from(rig, alert["alert_id"]), what="received outcome")
    assert rig.hub.ledger is not None
    [pas] = [
        r for r in rig.hub.ledger.referrals_for(alert["alert_id"]) if r.endpoint == "leeds-pas"
    ]
    assert (pas.state, pas.attempts) == ("delivered", 1)
    assert rig.trust.delivered() == []  # nothing went to the FHIR trust


def test_an_alert_routed_to_a_webhook_arrives_signed_with_the_key_from_the_environment(
    rig_factory: Any, mllp_trust: tuple[Receiver, int], hook: Hook
) -> None:
    rig = kinds_rig(rig_factory, mllp_trust[1], hook)
    alert = fresh_custody()

    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(hook.posts) == 1, what="the webhook POST")
    [(headers, body)] = hook.posts
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
    assert headers["content-type"] == "application/json"
    assert headers["x-correlation-id"] == alert["alert_id"]
    assert headers["x-request-id"]
    document = json.loads(body)
    assert document["schema"] == "ld.webhook-referral/1"
    assert document["alert_id"] == alert["alert_id"]
    assert document["reference"] == alert["source"]["reference"]
    assert document["person"]["nhs_number"] == alert["person"]["nhs_number"]
    assert [v["type"] for v in document["vulnerabilities"]] == ["mental_health"]
    assert document["consent"]["status"] == alert["consent"]["status"]
    wait_until(lambda: "XLA01" in received_from(rig, alert["alert_id"]), what="received outcome")


def test_an_mllp_rejection_is_dead_lettered_with_the_receivers_text(
    rig_factory: Any, mllp_trust: tuple[Receiver, int], hook: Hook
) -> None:
    receiver, port = mllp_trust
    receiver.answer = "AR"
    rig = kinds_rig(rig_factory, port, hook)
    alert = fresh_custody()

    rig.justice.publish(alert, routing_key=key_for(alert))

    _, props, body = rig.justice.get_one("hub.dlq.deliver", timeout=15)
    assert props.headers["x-hub-endpoint"] == "leeds-pas"
    assert props.headers["x-hub-error-class"] == "PermanentError"
    assert props.headers["x-hub-operation-outcome"] == (
        "Referral rejected; 200 Unsupported message type; REF not accepted on this interface"
    )
    assert body.startswith(b"MSH|")  # the dead letter holds exactly what was sent
    assert props.content_type.startswith("x-application/hl7-v2+er7")
