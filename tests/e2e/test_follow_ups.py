"""Alert updates, cancellations and consent updates from the justice side, end to end on the real
RabbitMQ and PostgreSQL: what each service receives, in what order, and what the justice side
hears back."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.messages import OutcomeStatus
from hub.testing.fake_trust import Received, Reply
from hub.transforms.response_to_outcome import build_service_response
from tests.conftest import SERVICES, HubRig, standard_replies, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody
from tests.fixtures.alerts import (
    cancellation_of,
    consent_update_of,
    routing_key_of,
    update_of,
)

pytestmark = pytest.mark.e2e

MENTAL_HEALTH = [{"type": "mental_health", "detail": "Low mood"}]
WITH_DRUGS = [*MENTAL_HEALTH, {"type": "substance_misuse", "detail": "Daily heroin use"}]


def reason_of(bundle: dict[str, Any]) -> str:
    return str(bundle["entry"][0]["resource"]["reason"]["coding"][0]["code"])


def replies_to_referrals_only(endpoint: str, bundle: dict[str, Any]) -> list[Reply]:
    """The service answers the referral itself; follow-ups get no outcomes of their own."""
    return standard_replies(endpoint, bundle) if reason_of(bundle) == "new" else []


def resource(received: Received, kind: str) -> dict[str, Any]:
    bundle = json.loads(received.body)
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def at(rig: HubRig, endpoint: str) -> list[Received]:
    return [r for r in rig.trust.delivered() if r.endpoint == endpoint]


def publish(rig: HubRig, message: dict[str, Any]) -> None:
    rig.justice.publish(message, routing_key=routing_key_of(message))


def test_an_update_is_a_bars_update_with_a_new_request_id_and_the_same_correlation_id(
    rig_factory: Any,
) -> None:
    rig = rig_factory(replies=replies_to_referrals_only)
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")

    publish(rig, update_of(alert, urgency="urgent"))
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the update")

    referral, update = at(rig, "wy-ld")
    assert reason_of(json.loads(update.body)) == "update"
    assert update.request_id != referral.request_id
    assert update.correlation_id == referral.correlation_id == alert["alert_id"]
    assert update.bundle_id != referral.bundle_id
    for kind in ("ServiceRequest", "Patient", "Consent", "Encounter"):
        assert resource(update, kind)["id"] == resource(referral, kind)["id"], kind
    assert resource(update, "ServiceRequest")["priority"] == "urgent"
    # The justice side hears `received` once: for the referral, not for each update.
    rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    # A later alert's `received` comes from the same delivery consumer after the update's
    # delivery: once it is in, a `received` for the update would be too.
    marker = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, marker)
    rig.justice.wait_for(lambda got: any(o["alert_id"] == marker["alert_id"] for o in got))
    received = [o for o in rig.justice.for_alert(alert["alert_id"]) if o["status"] == "received"]
    assert len(received) == 1


def test_an_update_that_adds_a_need_refers_to_the_newly_selected_service(rig: HubRig) -> None:
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")

    publish(rig, update_of(alert, vulnerabilities=WITH_DRUGS))

    wait_until(lambda: len(at(rig, "leeds-dat")) == 1, what="the drug team's new referral")
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the update to wy-ld")
    assert reason_of(json.loads(at(rig, "leeds-dat")[0].body)) == "new"
    assert reason_of(json.loads(at(rig, "wy-ld")[1].body)) == "update"


def test_a_cancellation_reaches_every_service_and_closes_the_alert_to_changes(
    rig_factory: Any,
) -> None:
    rig = rig_factory(replies=replies_to_referrals_only)
    alert = fresh_custody(vulnerabilities=WITH_DRUGS)
    publish(rig, alert)
    wait_until(lambda: len(rig.trust.delivered()) == 2, what="both referrals")

    publish(rig, cancellation_of(alert, reason="raised_in_error"))

    wait_until(lambda: len(rig.trust.delivered()) == 4, what="both cancellations")
    for endpoint in ("wy-ld", "leeds-dat"):
        referral, cancellation = at(rig, endpoint)
        bundle = json.loads(cancellation.body)
        assert reason_of(bundle) == "delete"
        assert bundle["entry"][0]["resource"]["definition"].endswith("request-cancelled")
        request = resource(cancellation, "ServiceRequest")
        assert request["status"] == "entered-in-error"
        assert request["id"] == resource(referral, "ServiceRequest")["id"]
        assert cancellation.correlation_id == alert["alert_id"]
        # No personal data travels with a cancellation: the Patient is its id alone.
        assert set(resource(cancellation, "Patient")) == {"resourceType", "id", "meta"}

    late = update_of(alert)
    publish(rig, late)
    rejected = rig.justice.wait_for(
        lambda got: any(
            o["status"] == "rejected" for o in got if o["alert_id"] == alert["alert_id"]
        )
    )
    reasons = [o for o in rejected if o["status"] == "rejected"][0]["reasons"]
    assert reasons == [
        {"path": "alert_id", "problem": "the alert was cancelled: no further changes are accepted"}
    ]
    _, props, _ = rig.justice.get_one("hub.dlq.intake")
    assert props.message_id == late["update_id"]
    assert len(rig.trust.delivered()) == 4


def unavailable_for(seconds: float) -> Any:
    until = time.monotonic() + seconds

    def behaviour(endpoint: str, bundle: dict[str, Any]) -> Any:
        if time.monotonic() < until:
            return 503, {}, b'{"resourceType":"OperationOutcome","issue":[]}'
        return None

    return behaviour


def failing_first(count: int) -> Any:
    """503 for the first `count` POSTs: past the quick in-process retries (3), so the referral
    waits in a retry queue, but short of opening the circuit (5)."""
    calls = iter(range(count))

    def behaviour(endpoint: str, bundle: dict[str, Any]) -> Any:
        if next(calls, None) is not None:
            return 503, {}, b'{"resourceType":"OperationOutcome","issue":[]}'
        return None

    return behaviour


def test_an_update_sent_while_the_referral_waits_to_be_retried_arrives_after_it(
    rig_factory: Any,
) -> None:
    rig = rig_factory(replies=replies_to_referrals_only, behaviour=failing_first(3))
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    publish(rig, update_of(alert, urgency="urgent"))

    wait_until(lambda: len(at(rig, "wy-ld")) == 2, timeout=40, what="referral, then update")
    referral, update = at(rig, "wy-ld")
    assert reason_of(json.loads(referral.body)) == "new"
    assert reason_of(json.loads(update.body)) == "update"
    waited = [e for e in rig.hub.ledger.journey(alert["alert_id"]) if e.event == "message_waiting"]
    assert waited, "the update should have waited for the referral"


def test_a_referral_cancelled_before_it_could_be_delivered_is_never_sent(
    rig_factory: Any,
) -> None:
    rig = rig_factory(replies=replies_to_referrals_only, behaviour=unavailable_for(3.0))
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    publish(rig, cancellation_of(alert, reason="person_released"))

    ledger = rig.hub.ledger
    wait_until(
        lambda: {r.state.value for r in ledger.referrals_for(alert["alert_id"])} == {"withheld"},
        timeout=40,
        what="the referral and its cancellation withheld",
    )
    assert rig.trust.delivered() == []
    events = [e.event for e in ledger.journey(alert["alert_id"])]
    assert events.count("message_withheld") == 2


def test_consent_withdrawal_is_forwarded_and_stops_detail_at_once(rig_factory: Any) -> None:
    rig = rig_factory(replies=lambda endpoint, bundle: [])
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    assert alert["consent"]["share_with_justice"] is True
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")
    referral = at(rig, "wy-ld")[0]

    publish(rig, consent_update_of(alert, status="refused", share_with_justice=False))
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the consent update")

    consent = resource(at(rig, "wy-ld")[1], "Consent")
    assert consent["id"] == resource(referral, "Consent")["id"]
    assert consent["status"] == "rejected"
    assert consent["provision"]["type"] == "deny"
    assert consent["provision"]["provision"][0]["type"] == "deny"

    ods, name = SERVICES["wy-ld"]
    status = rig.trust.post_to_hub(
        build_service_response(
            referral_bundle_id=referral.bundle_id,
            service_ods=ods,
            service_name=name,
            status=OutcomeStatus.ASSESSED,
            at=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            recommendation="Suitable for interview with an appropriate adult",
            note="Clinical note",
        ),
        correlation_id=alert["alert_id"],
        endpoint="wy-ld",
    )
    assert status == 200
    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    assessed = next(o for o in outcomes if o["status"] == "assessed")
    assert "detail" not in assessed
    assert assessed["service"]["name"] == "Health service"


def minutes_from_now(minutes: int) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes)
    return moment.isoformat().replace("+00:00", "Z")


def assessed_with_detail(rig: HubRig, alert: dict[str, Any], referral: Received) -> dict[str, Any]:
    """The service assesses the referral and offers detail; what the justice side gets."""
    ods, name = SERVICES["wy-ld"]
    status = rig.trust.post_to_hub(
        build_service_response(
            referral_bundle_id=referral.bundle_id,
            service_ods=ods,
            service_name=name,
            status=OutcomeStatus.ASSESSED,
            at=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
            recommendation="Suitable for interview with an appropriate adult",
            note="Clinical note",
        ),
        correlation_id=alert["alert_id"],
        endpoint="wy-ld",
    )
    assert status == 200
    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    return next(o for o in outcomes if o["status"] == "assessed")


def test_a_withdrawal_recorded_now_outranks_a_grant_dated_minutes_ahead(rig_factory: Any) -> None:
    # The sender's clock runs four minutes fast (within the allowance): the grant is dated ahead
    # of the withdrawal that follows it, recorded by a nurse whose clock is right.
    rig = rig_factory(replies=lambda endpoint, bundle: [])
    ahead = minutes_from_now(4)
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    alert["sent_at"] = ahead
    alert["consent"].update(status="given", share_with_justice=True, recorded_at=ahead)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")
    referral = at(rig, "wy-ld")[0]

    publish(rig, consent_update_of(alert, status="refused", share_with_justice=False))
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the consent update")

    consent = resource(at(rig, "wy-ld")[1], "Consent")
    assert (consent["status"], consent["provision"]["provision"][0]["type"]) == ("rejected", "deny")
    assessed = assessed_with_detail(rig, alert, referral)
    assert "detail" not in assessed
    assert assessed["service"]["name"] == "Health service"


def test_a_grant_that_loses_to_a_refusal_dated_ahead_is_not_told_to_the_service(
    rig_factory: Any,
) -> None:
    # The mirror case: the refusal is dated ahead, a grant recorded now loses to it; the service
    # must hear the consent the hub keeps, not the one that lost.
    rig = rig_factory(replies=lambda endpoint, bundle: [])
    ahead = minutes_from_now(4)
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    alert["sent_at"] = ahead
    alert["consent"].update(status="refused", share_with_justice=False, recorded_at=ahead)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")
    referral = at(rig, "wy-ld")[0]

    publish(rig, consent_update_of(alert, status="given", share_with_justice=True))
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the consent update")

    told = resource(at(rig, "wy-ld")[1], "Consent")
    kept = resource(referral, "Consent")
    assert (told["status"], told["provision"]["type"]) == ("rejected", "deny")
    assert told["provision"]["provision"][0]["type"] == "deny"
    assert told["dateTime"] == kept["dateTime"]
    updated = [e for e in rig.hub.ledger.journey(alert["alert_id"]) if e.event == "consent_updated"]
    assert [(e.detail["consent_status"], e.detail.get("consent_outranked")) for e in updated] == [
        ("refused", True)
    ]
    assessed = assessed_with_detail(rig, alert, referral)
    assert "detail" not in assessed
    assert assessed["service"]["name"] == "Health service"


def test_an_alert_whose_consent_is_dated_beyond_the_clock_skew_is_rejected(rig: HubRig) -> None:
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    alert["sent_at"] = minutes_from_now(4)
    alert["consent"]["recorded_at"] = minutes_from_now(8)
    publish(rig, alert)

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))

    rejected = next(o for o in outcomes if o["status"] == "rejected")
    assert rejected["alert_id"] == alert["alert_id"]
    assert rejected["reasons"] == [
        {"path": "consent.recorded_at", "problem": "more than 5 minutes after the hub's clock"}
    ]
    assert rig.trust.delivered() == []


def test_a_follow_up_from_another_organisation_is_rejected(rig: HubRig) -> None:
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")
    other = cancellation_of(alert)
    other["source"]["organisation"] = {"code": "NYP", "name": "North Yorkshire Police"}

    publish(rig, other)

    _, props, _ = rig.justice.get_one("hub.dlq.intake")
    assert props.message_id == other["cancellation_id"]
    problems = json.loads(props.headers["x-hub-problems"])
    assert {
        "path": "source.organisation.code",
        "problem": "is not the organisation that sent the alert",
    } in problems
    # A valid update sent after reaches wy-ld after anything the refused one could have queued.
    publish(rig, update_of(alert, urgency="urgent"))
    wait_until(lambda: len(at(rig, "wy-ld")) == 2, what="the update sent after")
    assert [reason_of(json.loads(r.body)) for r in at(rig, "wy-ld")] == ["new", "update"]


def test_a_follow_up_for_an_unknown_alert_is_rejected_with_its_reason(rig: HubRig) -> None:
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)  # never published
    message = consent_update_of(alert, status="refused", share_with_justice=False)

    publish(rig, message)

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))
    rejected = next(o for o in outcomes if o["status"] == "rejected")
    assert rejected["alert_id"] == alert["alert_id"]
    assert rejected["message_id"] == message["consent_update_id"]  # which message was refused
    assert rejected["reasons"][0]["path"] == "alert_id"
    assert "send the alert first" in rejected["reasons"][0]["problem"]


def test_a_response_the_hub_cannot_map_is_refused_and_parked_with_its_reasons(
    rig_factory: Any,
) -> None:
    rig = rig_factory(replies=lambda endpoint, bundle: [])
    alert = fresh_custody(vulnerabilities=MENTAL_HEALTH)
    publish(rig, alert)
    wait_until(lambda: len(at(rig, "wy-ld")) == 1, what="the referral")
    ods, name = SERVICES["wy-ld"]
    response = build_service_response(
        referral_bundle_id=at(rig, "wy-ld")[0].bundle_id,
        service_ods=ods,
        service_name=name,
        status=OutcomeStatus.ACCEPTED,
        at=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
    )
    task = next(e["resource"] for e in response["entry"] if e["resource"]["resourceType"] == "Task")
    task["status"] = "on-hold"  # a Task status the mapping has no justice status for

    status = rig.trust.post_to_hub(response, correlation_id=alert["alert_id"], endpoint="wy-ld")

    assert status == 422
    _, props, body = rig.justice.get_one("hub.dlq.outcome")
    assert json.loads(body)["id"] == response["id"]
    assert props.headers["x-hub-stage"] == "outcome"
    assert props.headers["x-hub-endpoint"] == "wy-ld"
    assert props.headers["x-hub-original-queue"] == "hub.outcomes.inbound"
    problems = json.loads(props.headers["x-hub-problems"])
    assert any(p["path"].startswith("Bundle.entry") for p in problems), problems
    # The service's next, valid response (first in, first out through the outcome stage)
    # reaches the justice side after anything the refused one could have produced.
    valid = build_service_response(
        referral_bundle_id=at(rig, "wy-ld")[0].bundle_id,
        service_ods=ods,
        service_name=name,
        status=OutcomeStatus.ACCEPTED,
        at=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
    )
    assert rig.trust.post_to_hub(valid, correlation_id=alert["alert_id"], endpoint="wy-ld") == 200
    rig.justice.wait_for(lambda got: any(o["status"] == "accepted" for o in got))
    statuses = [o["status"] for o in rig.justice.for_alert(alert["alert_id"])]
    assert statuses == ["received", "accepted"], statuses
