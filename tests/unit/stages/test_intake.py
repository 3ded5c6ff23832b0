"""The intake stage: its plan (plan_intake, plan_referrals) and its shell on the in-memory hub."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.contracts.alert import parse_alert
from hub.records import AlertState, Seen
from hub.stages.intake_plan import IntakeAction, plan_intake, plan_referrals, route_decision
from hub.transforms.referral_ids import referral_ids
from hub.wire import Disposition
from tests.fixtures.alerts import custody_alert, to_body
from tests.unit.stages.harness import HUB, ID_KEY, NOW, ROUTES, MemoryHub

pytestmark = pytest.mark.unit


def test_a_new_alert_is_routed() -> None:
    assert plan_intake(Seen.NEW, AlertState.RECEIVED) is IntakeAction.ROUTE


def test_a_duplicate_of_a_routed_alert_is_ignored() -> None:
    assert plan_intake(Seen.DUPLICATE, AlertState.ROUTED) is IntakeAction.DUPLICATE


def test_a_duplicate_of_an_alert_not_yet_routed_is_routed_again() -> None:
    assert plan_intake(Seen.DUPLICATE, AlertState.RECEIVED) is IntakeAction.ROUTE


@pytest.mark.parametrize("state", list(AlertState))
def test_a_conflicting_alert_is_a_conflict_whatever_its_state(state: AlertState) -> None:
    assert plan_intake(Seen.CONFLICT, state) is IntakeAction.CONFLICT


def test_the_plan_gives_each_chosen_endpoint_a_keyed_referral_due_by_its_service_level() -> None:
    alert = parse_alert(to_body(custody_alert()), content_type="application/json", now=NOW)
    decision = route_decision(ROUTES, alert)

    plan = plan_referrals(alert, decision, id_key=ID_KEY, now=NOW)

    assert [r.endpoint for r in plan.referrals] == ["wy-ld", "dat"]
    assert plan.rule == "substance"
    for referral in plan.referrals:
        ids = referral_ids(HUB.id_key(), alert.alert_id, referral.endpoint)
        assert (referral.bundle_id, referral.request_id) == (ids.bundle_id, ids.request_id)
        level = decision.service_levels[referral.endpoint]
        assert referral.due_at == NOW + timedelta(seconds=level)


def test_a_duplicate_alert_gets_one_referral_per_service() -> None:
    hub = MemoryHub()
    alert = custody_alert()

    assert hub.send(alert) is Disposition.ACK
    assert hub.send(alert) is Disposition.ACK

    assert sorted(j.routing_key for j in hub.jobs()) == ["hub.deliver.dat", "hub.deliver.wy-ld"]
    assert len(hub.ledger.referrals_for(alert["alert_id"])) == 2
    assert hub.events(alert["alert_id"]) == [
        "alert_validated",
        "referral_routed",
        "alert_duplicate_ignored",
    ]


def test_an_alert_id_reused_with_another_body_is_rejected_and_its_sender_told() -> None:
    hub = MemoryHub()
    alert = custody_alert()
    hub.send(alert)
    changed = {**alert, "urgency": "routine"}

    assert hub.send(changed) is Disposition.ACK

    assert len(hub.jobs()) == 2  # the first body's referrals only
    (rejected,) = hub.outcomes(alert["alert_id"])
    assert rejected["status"] == "rejected"
    assert rejected["reasons"][0]["path"] == "alert_id"
    assert hub.events(alert["alert_id"])[-1] == "alert_rejected"
    event = hub.ledger.journey(alert["alert_id"])[-1]
    assert event.detail["conflict"] is True


def test_a_youth_alert_goes_to_youth_justice_health_only() -> None:
    hub = MemoryHub()
    alert = custody_alert(
        pathway="youth",
        person={"date_of_birth": "2010-04-17"},
        vulnerabilities=[{"type": "mental_health", "detail": "Low mood."}],
    )

    hub.send(alert)

    assert [j.routing_key for j in hub.jobs()] == ["hub.deliver.yot"]
    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.endpoint == "yot"


def test_a_substance_alert_goes_to_the_drug_and_alcohol_team_too() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=[{"type": "substance_misuse", "detail": "Daily use."}])

    hub.send(alert)

    assert [j.routing_key for j in hub.jobs()] == ["hub.deliver.wy-ld", "hub.deliver.dat"]
    record = hub.ledger.get_alert(alert["alert_id"])
    assert record is not None and record.state is AlertState.ROUTED


def test_an_alert_matching_no_rule_goes_to_the_default_service() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=[{"type": "mental_health", "detail": "Low mood."}])

    hub.send(alert)

    assert [j.routing_key for j in hub.jobs()] == ["hub.deliver.wy-ld"]
    routed = hub.ledger.journey(alert["alert_id"])[-1]
    assert routed.detail["used_default"] is True


def test_an_invalid_alert_is_rejected_with_no_referral() -> None:
    hub = MemoryHub()
    alert = custody_alert(urgency="whenever")

    assert hub.send(alert) is Disposition.ACK

    assert hub.jobs() == []
    (rejected,) = hub.outcomes(alert["alert_id"])
    assert rejected["status"] == "rejected"
