"""The hub end to end on the real RabbitMQ and PostgreSQL: alert in, FHIR referral delivered,
outcomes back to the justice side; invalid alerts parked and answered; duplicates absorbed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from hub.contracts.outcome import validate_outcome
from tests.conftest import HubRig, wait_until
from tests.fixtures.alerts import court_alert, custody_alert, to_body, with_changes

pytestmark = pytest.mark.e2e


def now_iso(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def fresh_custody(**overrides: Any) -> dict[str, Any]:
    """A custody alert sent now that the test routes send to one endpoint (wy-ld)."""
    overrides.setdefault(
        "vulnerabilities", [{"type": "mental_health", "detail": "Hearing voices, low mood"}]
    )
    return custody_alert(sent_at=now_iso(), **overrides)


def key_for(alert: dict[str, Any], kind: str = "custody") -> str:
    return f"{kind}.{alert['source']['organisation']['code']}.identification"


def test_custody_alert_is_delivered_as_a_bars_bundle_and_outcomes_come_back(rig: HubRig) -> None:
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral at the trust")
    received = rig.trust.delivered()[0]
    assert received.correlation_id == alert["alert_id"]
    assert received.request_id
    bundle = json.loads(received.body)
    Bundle.model_validate(json.loads(json.dumps(bundle)))
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[0] == "MessageHeader"
    assert {"ServiceRequest", "Patient", "Consent", "Encounter", "Organization"} <= set(kinds)
    header = bundle["entry"][0]["resource"]
    assert header["eventCoding"]["code"] == "servicerequest-request"

    outcomes = rig.justice.wait_for(
        lambda got: {o["status"] for o in got} >= {"received", "accepted", "assessed"}
    )
    for outcome in outcomes:
        assert validate_outcome({k: v for k, v in outcome.items() if k != "_routing_key"}) == []
        assert outcome["reference"] == alert["source"]["reference"]
        assert outcome["_routing_key"] == (
            f"custody.{alert['source']['organisation']['code']}.{outcome['status']}"
        )
    assessed = next(o for o in outcomes if o["status"] == "assessed")
    # consent given with share_with_justice: the recommendation crosses, the clinical note never
    assert alert["consent"]["share_with_justice"] is True
    assert "appropriate adult" in assessed["detail"]["recommendation"]
    assert "note" not in assessed["detail"]


def test_without_consent_to_share_the_justice_side_gets_status_only(rig: HubRig) -> None:
    alert = fresh_custody(consent={"status": "refused", "share_with_justice": False})
    rig.justice.publish(alert, routing_key=key_for(alert))

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    for outcome in outcomes:
        assert "detail" not in outcome
        assert outcome["service"]["name"] == "Health service"


def test_court_alert_reaches_its_queue_and_outcome_goes_back_under_court_key(rig: HubRig) -> None:
    alert = court_alert(sent_at=now_iso())
    rig.justice.publish(alert, routing_key=key_for(alert, "court"))

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "received" for o in got))
    assert outcomes[0]["_routing_key"].startswith(
        f"court.{alert['source']['organisation']['code']}."
    )


def test_alert_matching_two_rules_goes_to_each_endpoint_once(rig: HubRig) -> None:
    alert = fresh_custody(vulnerabilities=[{"type": "substance_misuse", "detail": "Heroin"}])
    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(rig.trust.delivered()) == 2, what="two referrals")
    assert sorted(r.endpoint for r in rig.trust.delivered()) == ["leeds-dat", "wy-ld"]
    bundle_ids = {r.bundle_id for r in rig.trust.delivered()}
    assert len(bundle_ids) == 2


def test_same_alert_published_twice_produces_one_referral(rig: HubRig) -> None:
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    rig.justice.publish(alert, routing_key=key_for(alert))

    rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    wait_until(
        lambda: (
            rig.hub.ledger is not None
            and any(
                e.event == "alert_duplicate_ignored"
                for e in rig.hub.ledger.journey(alert["alert_id"])
            )
        ),
        what="the duplicate to be absorbed",
    )
    assert len(rig.trust.received) == 1
    assert (
        len(
            {
                o["outcome_id"]
                for o in rig.justice.for_alert(alert["alert_id"])
                if o["status"] == "received"
            }
        )
        == 1
    )


def test_same_alert_id_with_a_different_body_is_rejected_as_a_conflict(rig: HubRig) -> None:
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the first referral")
    changed = with_changes(alert, {"urgency": "emergency"})
    rig.justice.publish(changed, routing_key=key_for(alert))

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))
    rejected = next(o for o in outcomes if o["status"] == "rejected")
    assert rejected["alert_id"] == rejected["message_id"] == alert["alert_id"]
    assert rejected["reasons"][0]["path"] == "alert_id"
    assert "different body" in rejected["reasons"][0]["problem"]
    assert len(rig.trust.received) == 1
    _, props, _ = rig.justice.get_one("hub.dlq.intake")
    assert props.headers["x-hub-error-class"] == "AlertConflict"


INVALID_CASES = [
    ("bad json", b"{not json", "$", "not valid JSON"),
    ("wrong schema version", {"schema": "ld.identification-alert/2"}, "schema", "version"),
    ("missing field", {"urgency": None}, "urgency", "required"),
    (
        "nhs number fails modulus 11",
        {"person.nhs_number": "9990000027"},
        "person.nhs_number",
        "Modulus 11",
    ),
    ("malformed pnc", {"person.pnc_id": "2019/0448213C"}, "person.pnc_id", "check"),
    ("youth with adult dob", {"pathway": "youth"}, "pathway", "under 18"),
    (
        "unknown vulnerability",
        {"vulnerabilities[0].type": "gambling"},
        "vulnerabilities[0].type",
        "one of",
    ),
    (
        "future date of birth",
        {"person.date_of_birth": "2099-01-01"},
        "person.date_of_birth",
        "future",
    ),
    ("non utf-8", "latin1", "$", "UTF-8"),
    ("over the size limit", "huge", "$", "limit"),
]


def _invalid_body(alert: dict[str, Any], change: Any) -> bytes:
    from tests.fixtures.alerts import REMOVE

    if isinstance(change, bytes):
        return change
    if change == "latin1":
        return (
            json.dumps(alert, ensure_ascii=False)
            .replace(alert["person"]["name"]["family"], "Müller")
            .encode("latin-1")
        )
    if change == "huge":
        return to_body(alert) + b" " * 70000  # valid JSON, over the 64 KiB limit
    if "urgency" in change and change["urgency"] is None:
        return to_body(with_changes(alert, {"urgency": REMOVE}))
    return to_body(with_changes(alert, change))


@pytest.mark.parametrize(
    ("case", "change", "path", "words"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_alert_is_dead_lettered_with_reasons_and_answered_rejected(
    rig: HubRig, case: str, change: Any, path: str, words: str
) -> None:
    alert = fresh_custody()
    body = _invalid_body(alert, change)
    rig.justice.publish(body, routing_key=key_for(alert), message_id=alert["alert_id"])

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))
    rejected = next(o for o in outcomes if o["status"] == "rejected")
    assert rejected["alert_id"] == alert["alert_id"]
    assert rejected["_routing_key"] == (
        f"custody.{alert['source']['organisation']['code']}.rejected"
    )
    assert any(
        r["path"] == path and words.lower() in r["problem"].lower() for r in rejected["reasons"]
    ), rejected["reasons"]
    method, props, dead = rig.justice.get_one("hub.dlq.intake")
    assert dead == body
    headers = props.headers
    assert headers["x-hub-stage"] == "intake"
    assert headers["x-hub-error-class"] == "InvalidMessage"
    assert headers["x-hub-original-exchange"] == "justice.alerts"
    assert headers["x-hub-original-routing-key"] == key_for(alert)
    assert any(p["path"] == path for p in json.loads(headers["x-hub-problems"]))
    assert rig.trust.received == []


def test_alert_with_several_faults_reports_every_one(rig: HubRig) -> None:
    alert = fresh_custody()
    body = to_body(
        with_changes(
            alert,
            {
                "person.nhs_number": "9990000027",
                "vulnerabilities[0].type": "gambling",
                "sent_at": now_iso(timedelta(days=2)),
            },
        )
    )
    rig.justice.publish(body, routing_key=key_for(alert), message_id=alert["alert_id"])

    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "rejected" for o in got))
    paths = {r["path"] for r in outcomes[0]["reasons"]}
    assert {"person.nhs_number", "vulnerabilities[0].type", "sent_at"} <= paths


def test_hub_keeps_consuming_after_a_stream_of_bad_alerts(rig: HubRig) -> None:
    alert = fresh_custody()
    for garbage in (b"", b"\xff\xfe", b"[]", b"null", b'{"schema": 1}'):
        rig.justice.publish(garbage, routing_key=key_for(alert), message_id="m-" + garbage.hex())
    rig.justice.publish(alert, routing_key=key_for(alert))

    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the good alert after the bad")
    rig.justice.wait_for(lambda got: sum(o["status"] == "rejected" for o in got) == 5)
    assert rig.justice.queue_depth("hub.dlq.intake") == 5


def test_service_response_for_an_unknown_referral_is_refused_with_404(rig: HubRig) -> None:
    from hub.messages import OutcomeStatus
    from hub.transforms.response_to_outcome import build_service_response

    message = build_service_response(
        referral_bundle_id="6f1c5a3e-0000-4000-8000-000000000000",
        service_ods="RXX01",
        service_name="West Yorkshire L&D",
        status=OutcomeStatus.ACCEPTED,
        at=datetime.now(UTC),
        message_id="9d7e8f00-0000-4000-8000-000000000001",
    )
    status = rig.trust.post_to_hub(
        message, correlation_id="6f1c5a3e-0000-4000-8000-00000000000a", endpoint="wy-ld"
    )
    assert status == 404


def test_service_response_from_a_service_that_never_got_the_referral_is_refused(
    rig: HubRig,
) -> None:
    from hub.messages import OutcomeStatus
    from hub.transforms.response_to_outcome import build_service_response

    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral")
    referral = rig.trust.delivered()[0]
    message = build_service_response(
        referral_bundle_id=referral.bundle_id,
        service_ods="RXX03",  # the DAT, not wy-ld
        service_name="Leeds Drug and Alcohol Team",
        status=OutcomeStatus.DECLINED,
        at=datetime.now(UTC),
        message_id="9d7e8f00-0000-4000-8000-000000000002",
    )
    # Authenticated as the DAT (its own token), reporting on wy-ld's referral: answered as if
    # there were no such referral (a 403 would tell the DAT the alert went elsewhere).
    status = rig.trust.post_to_hub(message, correlation_id=alert["alert_id"], endpoint="leeds-dat")
    assert status == 404


def test_same_flow_runs_with_the_sqlite_ledger(rig_factory: Any, tmp_path: Any) -> None:
    rig = rig_factory(db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    rig.justice.wait_for(lambda got: {o["status"] for o in got} >= {"received", "assessed"})
