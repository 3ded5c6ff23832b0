"""The outcome stage: its plan (build_outcome through the consent filter, resolves_overdue) and
its shell on the in-memory hub."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.messages import OutcomeStatus
from hub.stages.outcomes import resolves_overdue
from hub.transforms.response_to_outcome import build_service_response
from hub.wire import WORK_EXCHANGE, Envelope
from tests.fixtures.alerts import custody_alert, to_body
from tests.unit.stages.harness import NOW, RECIPIENTS, MemoryHub

pytestmark = pytest.mark.unit

MENTAL_HEALTH = [{"type": "mental_health", "detail": "Low mood."}]


def delivered_alert(hub: MemoryHub, **consent: object) -> str:
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    if consent:
        alert["consent"] = {**alert["consent"], **consent}
    hub.send(alert)
    hub.deliver_all()
    return str(alert["alert_id"])


def response_from(hub: MemoryHub, alert_id: str, status: OutcomeStatus, **extra: str) -> None:
    (referral,) = hub.ledger.referrals_for(alert_id)
    recipient = RECIPIENTS[referral.endpoint]
    bundle = build_service_response(
        referral_bundle_id=referral.bundle_id,
        service_ods=recipient.ods_code,
        service_name=recipient.organisation_name,
        status=status,
        at=NOW + timedelta(minutes=5),
        message_id=f"m-{status}-{alert_id}",
        **extra,
    )
    hub.outcome.process(
        Envelope(
            body=to_body(bundle),
            queue="hub.outcomes.inbound",
            exchange=WORK_EXCHANGE,
            routing_key="hub.outcomes.inbound",
            headers={},
            message_id=None,
            user_id=None,
            content_type="application/fhir+json",
        )
    )


@pytest.mark.parametrize(
    ("status", "resolves"),
    [("accepted", True), ("completed", True), ("received", False), ("overdue", False)],
)
def test_only_an_outcome_the_service_sent_resolves_an_overdue_referral(
    status: str, resolves: bool
) -> None:
    assert resolves_overdue(status) is resolves


def test_with_consent_to_share_the_justice_side_sees_the_service_and_its_recommendation() -> None:
    hub = MemoryHub()
    alert_id = delivered_alert(hub)

    response_from(hub, alert_id, OutcomeStatus.ACCEPTED, recommendation="Community order")

    outcome = hub.outcomes(alert_id)[-1]
    assert outcome["status"] == "accepted"
    assert outcome["service"]["code"] == RECIPIENTS["wy-ld"].ods_code
    assert outcome["detail"] == {"recommendation": "Community order"}
    assert hub.events(alert_id)[-1] == "outcome_returned"


def test_without_consent_to_share_the_justice_side_sees_only_the_status() -> None:
    hub = MemoryHub()
    alert_id = delivered_alert(hub, share_with_justice=False)

    response_from(hub, alert_id, OutcomeStatus.ACCEPTED, recommendation="Community order")

    outcome = hub.outcomes(alert_id)[-1]
    assert outcome["status"] == "accepted"
    assert outcome["service"]["code"] != RECIPIENTS["wy-ld"].ods_code
    assert not outcome.get("detail")
    returned = [e for e in hub.ledger.journey(alert_id) if e.event == "outcome_returned"]
    assert returned[-1].detail["detail_shared"] is False


def test_a_response_redelivered_gives_the_same_outcome_recorded_once() -> None:
    hub = MemoryHub()
    alert_id = delivered_alert(hub)

    response_from(hub, alert_id, OutcomeStatus.ACCEPTED)
    response_from(hub, alert_id, OutcomeStatus.ACCEPTED)

    received, first, again = hub.outcomes(alert_id)
    assert first == again and received["status"] == "received"
    assert hub.events(alert_id).count("outcome_returned") == 2  # received, accepted
