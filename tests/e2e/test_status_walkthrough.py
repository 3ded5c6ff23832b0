"""One referral walked through every justice status of `ld.referral-outcome/1`, once with consent
to share with justice and once refused; what the justice queue received is compared field by
field with what the consent rules allow (README, "Outcomes and consent")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hub.contracts.outcome import validate_outcome
from hub.messages import OutcomeStatus
from hub.testing.fake_trust import Reply
from tests.conftest import SERVICES, HubRig
from tests.e2e.test_alert_to_outcome import fresh_custody
from tests.fixtures.alerts import routing_key_of

pytestmark = pytest.mark.e2e

NEUTRAL_SERVICE = {"code": "HEALTH", "name": "Health service"}  # neither reveals the service
RECOMMENDATION = "Fit for interview with an appropriate adult present"
REFERRED_TO = "Community drug and alcohol service"
NOTE = "Clinical note: history of psychosis, on olanzapine"

# The service's answers, in order; each carries a clinical note that must never cross.
ANSWERS = [
    Reply(OutcomeStatus.ACCEPTED, note=NOTE),
    Reply(OutcomeStatus.SCREENED, note=NOTE),
    Reply(OutcomeStatus.ASSESSED, recommendation=RECOMMENDATION, note=NOTE),
    Reply(OutcomeStatus.REFERRED_ON, referred_to=REFERRED_TO, note=NOTE),
    Reply(OutcomeStatus.ATTENDED, note=NOTE),
    Reply(OutcomeStatus.DID_NOT_ATTEND, note=NOTE),
    Reply(OutcomeStatus.DECLINED, note=NOTE),
    Reply(OutcomeStatus.CLOSED, recommendation="No further action", note=NOTE),
]
EVERY_STATUS = ["received", *(str(a.status) for a in ANSWERS)]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def expected(alert: dict[str, Any], status: str, *, shared: bool) -> dict[str, Any]:
    code, name = SERVICES["wy-ld"]
    outcome: dict[str, Any] = {
        "schema": "ld.referral-outcome/1",
        "alert_id": alert["alert_id"],
        "reference": alert["source"]["reference"],
        "source": {"kind": "custody", "organisation_code": alert["source"]["organisation"]["code"]},
        "status": status,
        "service": {"code": code, "name": name} if shared else NEUTRAL_SERVICE,
        "_routing_key": f"custody.{alert['source']['organisation']['code']}.{status}",
    }
    detail = {
        "assessed": {"recommendation": RECOMMENDATION},
        "referred_on": {"referred_to": REFERRED_TO},
        "closed": {"recommendation": "No further action"},
    }.get(status)
    if shared and detail:
        outcome["detail"] = detail
    return outcome


def walk(rig: HubRig, consent: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    alert = fresh_custody(
        vulnerabilities=[{"type": "mental_health", "detail": "Hearing voices"}], consent=consent
    )
    rig.justice.publish(alert, routing_key=routing_key_of(alert))
    rig.justice.wait_for(
        lambda got: (
            {o["status"] for o in got if o["alert_id"] == alert["alert_id"]} >= set(EVERY_STATUS)
        ),
        timeout=30,
    )
    return alert, rig.justice.for_alert(alert["alert_id"])


@pytest.mark.parametrize(
    ("consent", "shared"),
    [
        ({"status": "given", "share_with_justice": True}, True),
        ({"status": "refused", "share_with_justice": False}, False),
    ],
    ids=["consent given to share", "consent refused"],
)
def test_one_referral_through_every_justice_status(
    rig_factory: Any, consent: dict[str, Any], shared: bool
) -> None:
    rig = rig_factory(replies=lambda endpoint, bundle: ANSWERS)

    alert, outcomes = walk(rig, consent)

    assert sorted(o["status"] for o in outcomes) == sorted(EVERY_STATUS)  # each exactly once
    for outcome in outcomes:
        status = outcome["status"]
        assert validate_outcome({k: v for k, v in outcome.items() if k != "_routing_key"}) == []
        assert UUID.fullmatch(outcome["outcome_id"]), status
        assert INSTANT.fullmatch(outcome["at"]), status
        rest = {k: v for k, v in outcome.items() if k not in ("outcome_id", "at")}
        assert rest == expected(alert, status, shared=shared), status
        assert NOTE not in repr(outcome)
    assert len({o["outcome_id"] for o in outcomes}) == len(outcomes)
