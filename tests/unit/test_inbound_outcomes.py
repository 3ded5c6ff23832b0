"""The inbound-outcome use case (hub.stages.inbound_outcomes) without HTTP: bytes, the request's
headers and the caller's identity in, a verdict out; what it publishes or parks."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.adapters.memory.ledger import MemoryLedger
from hub.errors import TransientError
from hub.messages import OutcomeStatus, Recipient
from hub.records import AlertFacts, ReferralRecord
from hub.stages.inbound_outcomes import InboundOutcomes, Verdict
from hub.transforms.response_to_outcome import build_service_response
from hub.wire import DLQ_EXCHANGE, H_ALERT_ID, H_ENDPOINT, OUTCOMES_INBOUND_QUEUE, WORK_EXCHANGE

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SERVICES = {"wy-ld": "RXX01", "leeds-dat": "RXX03"}
HEADERS = {"x-request-id": str(uuid.uuid4()), "x-correlation-id": str(uuid.uuid4())}


@dataclass
class ListPublisher:
    published: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def publish(self, **message: Any) -> None:
        if self.fail:
            raise TransientError("broker down")
        self.published.append(message)


def _setup(fail: bool = False) -> tuple[InboundOutcomes, ListPublisher, str, str]:
    ledger = MemoryLedger()
    alert_id, bundle_id = str(uuid.uuid4()), str(uuid.uuid4())
    ledger.record_alert(
        AlertFacts(
            alert_id=alert_id,
            body_sha256="a" * 64,
            source_kind="custody",
            organisation_code="WYP",
            reference="WY-26-000001",
            pathway="adult",
            urgency="urgent",
            consent_status="given",
            share_with_justice=True,
            received_at=T0,
        )
    )
    referral = ReferralRecord(bundle_id, alert_id, "wy-ld", request_id=str(uuid.uuid4()))
    ledger.mark_routed(alert_id, rule="default", referrals=[referral], at=T0)
    publisher = ListPublisher(fail=fail)
    outcomes = InboundOutcomes(
        ledger=ledger,
        publisher=publisher,
        recipients={n: Recipient(n, ods, f"{n} service") for n, ods in SERVICES.items()},
        clock=lambda: T0,
    )
    return outcomes, publisher, alert_id, bundle_id


def _response(bundle_id: str, ods: str = "RXX01") -> bytes:
    message = build_service_response(
        referral_bundle_id=bundle_id,
        service_ods=ods,
        service_name="a service",
        status=OutcomeStatus.ACCEPTED,
        at=T0,
        message_id=str(uuid.uuid4()),
    )
    return json.dumps(message).encode()


def test_the_referrals_service_gets_its_outcome_queued() -> None:
    outcomes, publisher, alert_id, bundle_id = _setup()
    result = outcomes.receive(_response(bundle_id), HEADERS, frozenset({"wy-ld"}))
    assert result.verdict is Verdict.QUEUED
    [sent] = publisher.published
    assert (sent["exchange"], sent["routing_key"]) == (WORK_EXCHANGE, OUTCOMES_INBOUND_QUEUE)
    assert sent["headers"][H_ALERT_ID] == alert_id
    assert sent["headers"]["x-hub-received-request-id"] == HEADERS["x-request-id"]


def test_another_service_sees_the_same_answer_as_for_no_referral() -> None:
    outcomes, publisher, _, bundle_id = _setup()
    other = outcomes.receive(_response(bundle_id, "RXX03"), HEADERS, frozenset({"leeds-dat"}))
    missing = outcomes.receive(_response(str(uuid.uuid4())), HEADERS, frozenset({"wy-ld"}))
    assert other.verdict is missing.verdict is Verdict.NOT_FOUND
    assert other.text == missing.text == ""
    assert publisher.published == []


def test_a_sender_that_is_not_the_recipient_is_refused() -> None:
    outcomes, publisher, _, bundle_id = _setup()
    result = outcomes.receive(_response(bundle_id, "RXX03"), HEADERS, frozenset({"wy-ld"}))
    assert result.verdict is Verdict.WRONG_SENDER
    assert publisher.published == []


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        (b"\xff not json", Verdict.UNREADABLE),
        (b"[" * 40 + b"]" * 40, Verdict.UNREADABLE),
        (b'{"resourceType": "Bundle"}', Verdict.UNMAPPABLE),
    ],
)
def test_what_cannot_be_read_or_mapped_is_parked(body: bytes, verdict: Verdict) -> None:
    outcomes, publisher, _, _ = _setup()
    result = outcomes.receive(body, HEADERS, frozenset({"wy-ld"}))
    assert result.verdict is verdict and result.text
    [parked] = publisher.published
    assert parked["exchange"] == DLQ_EXCHANGE and parked["body"] == body
    assert parked["headers"][H_ENDPOINT] == "wy-ld"


def test_an_unconfirmed_publish_asks_the_caller_to_retry() -> None:
    outcomes, _, _, bundle_id = _setup(fail=True)
    result = outcomes.receive(_response(bundle_id), HEADERS, frozenset({"wy-ld"}))
    assert result.verdict is Verdict.NOT_QUEUED
