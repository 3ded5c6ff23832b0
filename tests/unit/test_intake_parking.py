"""Intake behind the Dispatcher, on the in-memory ledger: an alert that passes validation but
then crashes (a renderer bug) is parked, its ledger state says so with no referral claiming to
be queued, and its sender gets one `rejected` outcome naming what happened; a rejection whose
message_id is too long to keep still answers and parks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.adapters.memory.ledger import MemoryLedger
from hub.endpoints.fhir_rest import render_fhir_bundle
from hub.messages import Alert, HubIdentity, Recipient
from hub.pipeline import Dispatcher, RetryPolicy
from hub.records import AlertState, Payload
from hub.routes.rules import RouteTable
from hub.security.ids import IdKey
from hub.stages.intake import IntakeStage
from hub.wire import DLQ_EXCHANGE, OUTCOMES_EXCHANGE, Disposition, Envelope
from tests.fixtures.alerts import cancellation_of, custody_alert, to_body
from tests.fixtures.dead_letters import PROVENANCE

ID_KEY = IdKey.of("unit-test-id-key-" + "k" * 32)


pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 9, 31, tzinfo=UTC)
HUB = HubIdentity(ods_code="X26HUB", name="L&D hub", endpoint="http://127.0.0.1/fhir", ids=ID_KEY)
RECIPIENTS = {
    "wy-ld": Recipient("wy-ld", "RXX01", "WY L&D"),
    "dat": Recipient("dat", "RXX03", "DAT"),
}


@dataclass
class Publisher:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **kwargs: Any) -> None:
        self.published.append(kwargs)

    def to(self, exchange: str) -> list[dict[str, Any]]:
        return [p for p in self.published if p["exchange"] == exchange]


def crashing_render(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    if recipient.endpoint == "dat":
        "\ud800".encode()  # what a lone surrogate in a name did to the FHIR transform
    return render_fhir_bundle(alert, recipient, hub)


def intake(ledger: MemoryLedger, publisher: Publisher) -> Dispatcher:
    stage = IntakeStage(
        ids=ID_KEY,
        ledger=ledger,
        publisher=publisher,
        routes=RouteTable(default=("wy-ld", "dat"), rules=()),
        recipients=RECIPIENTS,
        hub=HUB,
        clock=lambda: NOW,
        max_body_bytes=65536,
        renderers={"wy-ld": crashing_render, "dat": crashing_render},
    )
    retry = RetryPolicy(delays=(1,), deadline=timedelta(hours=1))
    return Dispatcher(
        stage, publisher=publisher, retry=retry, provenance=PROVENANCE, clock=lambda: NOW
    )


def envelope(body: bytes, *, message_id: str | None) -> Envelope:
    return Envelope(
        body=body,
        queue="hub.alerts.custody",
        exchange="justice.alerts",
        routing_key="custody.WYP.identification",
        headers={},
        message_id=message_id,
        user_id=None,
        content_type="application/json",
    )


def test_an_alert_that_crashes_after_validation_is_parked_and_its_sender_told() -> None:
    ledger, publisher = MemoryLedger(), Publisher()
    alert = custody_alert()

    disposition = intake(ledger, publisher)(envelope(to_body(alert), message_id=alert["alert_id"]))

    assert disposition is Disposition.ACK
    record = ledger.get_alert(alert["alert_id"])
    assert record is not None and record.state is AlertState.PARKED
    assert ledger.referrals_for(alert["alert_id"]) == []  # none says "queued"
    assert [p["routing_key"] for p in publisher.to("hub.work")] == []  # none was sent
    (outcome,) = [json.loads(p["body"]) for p in publisher.to(OUTCOMES_EXCHANGE)]
    assert (outcome["alert_id"], outcome["status"]) == (alert["alert_id"], "rejected")
    assert "UnicodeEncodeError" in outcome["reasons"][0]["problem"]
    assert "parked" in outcome["reasons"][0]["problem"]
    (parked,) = publisher.to(DLQ_EXCHANGE)
    assert parked["headers"]["x-hub-error-class"] == "Unexpected"
    events = [e.event for e in ledger.journey(alert["alert_id"])]
    assert "alert_parked" in events


def test_an_unreadable_body_with_an_over_long_message_id_is_answered_and_parked() -> None:
    ledger, publisher = MemoryLedger(), Publisher()

    disposition = intake(ledger, publisher)(envelope(b"\xff not json", message_id="m" * 250))

    assert disposition is Disposition.ACK
    (outcome,) = [json.loads(p["body"]) for p in publisher.to(OUTCOMES_EXCHANGE)]
    assert outcome["status"] == "rejected" and outcome["alert_id"] == "unknown"
    assert "message_id" not in outcome or outcome["message_id"] is None
    assert len(publisher.to(DLQ_EXCHANGE)) == 1


def test_a_follow_up_of_a_parked_alert_is_rejected_not_retried_for_days() -> None:
    ledger, publisher = MemoryLedger(), Publisher()
    dispatcher = intake(ledger, publisher)
    alert = custody_alert()
    dispatcher(envelope(to_body(alert), message_id=alert["alert_id"]))
    cancellation = cancellation_of(alert, sent_at="2026-11-23T09:30:30Z")
    message = replace(
        envelope(to_body(cancellation), message_id=cancellation["cancellation_id"]),
        routing_key="custody.WYP.cancellation",
    )

    assert dispatcher(message) is Disposition.ACK

    outcomes = [json.loads(p["body"]) for p in publisher.to(OUTCOMES_EXCHANGE)]
    assert [o["status"] for o in outcomes] == ["rejected", "rejected"]
    assert outcomes[1]["reasons"][0]["path"] == "alert_id"
    assert publisher.to("hub.retry.1s") == []
