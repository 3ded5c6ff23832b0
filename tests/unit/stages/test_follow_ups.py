"""Follow-ups (update, cancellation, consent update): their plan (plan_change, plan_follow_up,
follow_up_to_tell, follow_up_event) and the shells on the in-memory hub."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.contracts.follow_ups import parse_justice_message
from hub.messages import FollowUp
from hub.records import (
    AlertState,
    ChangeState,
    ConsentFacts,
    ReferralRecord,
    ReferralState,
    Seen,
)
from hub.routes.rules import RouteDecision
from hub.stages.follow_ups_plan import (
    ChangeAction,
    follow_up_event,
    follow_up_to_tell,
    plan_change,
    plan_follow_up,
)
from hub.testing.fake_sender import Answer
from hub.wire import Disposition, retry_exchange
from tests.fixtures.alerts import (
    cancellation_of,
    consent_update_of,
    custody_alert,
    to_body,
    update_of,
)
from tests.unit.stages.harness import ID_KEY, NOW, RECIPIENTS, MemoryHub

pytestmark = pytest.mark.unit

SENT = "2026-11-23T09:30:30Z"
MENTAL_HEALTH = [{"type": "mental_health", "detail": "Low mood."}]


def parsed(message: dict[str, object], message_type: str) -> FollowUp:
    follow_up = parse_justice_message(
        to_body(message), content_type="application/json", now=NOW, message_type=message_type
    )
    assert isinstance(follow_up, FollowUp)
    return follow_up


def referral(endpoint: str, kind: str = "new") -> ReferralRecord:
    return ReferralRecord(
        bundle_id=f"b-{endpoint}-{kind}",
        alert_id="a",
        endpoint=endpoint,
        request_id="r",
        kind=kind,
    )


@pytest.mark.parametrize(
    ("seen", "change", "alert", "action"),
    [
        (Seen.CONFLICT, ChangeState.RECEIVED, AlertState.ROUTED, ChangeAction.CONFLICT),
        (Seen.DUPLICATE, ChangeState.APPLIED, AlertState.ROUTED, ChangeAction.DUPLICATE),
        (Seen.DUPLICATE, ChangeState.RECEIVED, AlertState.ROUTED, ChangeAction.APPLY),
        (Seen.NEW, ChangeState.RECEIVED, AlertState.PARKED, ChangeAction.PARKED),
        (Seen.NEW, ChangeState.RECEIVED, AlertState.RECEIVED, ChangeAction.WAIT),
        (Seen.NEW, ChangeState.RECEIVED, AlertState.ROUTED, ChangeAction.APPLY),
    ],
)
def test_what_is_done_with_a_follow_up_depends_on_the_ledgers_answer(
    seen: Seen, change: ChangeState, alert: AlertState, action: ChangeAction
) -> None:
    assert plan_change(seen, change, alert) is action


def test_a_cancellation_goes_to_every_service_holding_the_referral_still_configured() -> None:
    alert = custody_alert()
    follow_up = parsed(cancellation_of(alert, sent_at=SENT), "cancellation")
    have = [referral("wy-ld"), referral("dat"), referral("gone"), referral("wy-ld", "update")]

    plan = plan_follow_up(
        follow_up,
        referrals=have,
        alert_cancelled=False,
        endpoints=RECIPIENTS,
        decision=None,
        id_key=ID_KEY,
        now=NOW,
    )

    assert [(m.endpoint, m.kind) for m in plan.messages] == [
        ("wy-ld", "cancellation"),
        ("dat", "cancellation"),
    ]
    assert all(job.is_follow_up for job in plan.jobs) and plan.added == {}
    assert all(m.change_id == follow_up.change_id for m in plan.messages)


def test_a_second_cancellation_sends_nothing() -> None:
    follow_up = parsed(cancellation_of(custody_alert(), sent_at=SENT), "cancellation")

    plan = plan_follow_up(
        follow_up,
        referrals=[referral("wy-ld")],
        alert_cancelled=True,
        endpoints=RECIPIENTS,
        decision=None,
        id_key=ID_KEY,
        now=NOW,
    )

    assert plan.jobs == ()


def test_an_update_sends_the_referral_to_a_service_it_selects_for_the_first_time() -> None:
    alert = custody_alert()
    follow_up = parsed(update_of(alert, sent_at=SENT), "update")
    decision = RouteDecision(
        ("wy-ld", "dat"), ("substance",), False, service_levels={"wy-ld": 60, "dat": 120}
    )

    plan = plan_follow_up(
        follow_up,
        referrals=[referral("wy-ld")],
        alert_cancelled=False,
        endpoints=RECIPIENTS,
        decision=decision,
        id_key=ID_KEY,
        now=NOW,
    )

    assert [(j.message.endpoint, j.message.kind, j.is_follow_up) for j in plan.jobs] == [
        ("wy-ld", "update", True),
        ("dat", "new", False),
    ]
    assert plan.added == {"dat": 120}
    assert plan.jobs[1].message.due_at is not None
    event, detail = follow_up_event(follow_up, plan, None)
    assert event == "alert_updated"
    assert detail["endpoints"] == ["wy-ld"] and detail["added_endpoints"] == ["dat"]


def test_services_are_told_the_consent_in_force_not_one_that_lost_to_it() -> None:
    alert = custody_alert()
    message = consent_update_of(
        alert, status="refused", share_with_justice=False, sent_at=SENT, recorded_at=SENT
    )
    follow_up = parsed(message, "consent")
    in_force = ConsentFacts("given", True, datetime(2026, 11, 23, 9, 30, 45, tzinfo=UTC))

    told = follow_up_to_tell(follow_up, in_force)

    assert told.consent is not None
    assert (str(told.consent.status), told.consent.share_with_justice) == ("given", True)
    assert follow_up_to_tell(follow_up, None) is follow_up
    plan = plan_follow_up(
        follow_up,
        referrals=[referral("wy-ld")],
        alert_cancelled=False,
        endpoints=RECIPIENTS,
        decision=None,
        id_key=ID_KEY,
        now=NOW,
    )
    event, detail = follow_up_event(follow_up, plan, in_force)
    assert event == "consent_updated"
    assert detail["consent_status"] == "given" and detail["consent_outranked"] is True


def test_a_follow_up_waits_behind_its_referral_until_that_is_delivered() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.transient(503))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()  # the referral's first attempt fails: it waits in a retry queue
    hub.send(update_of(alert, sent_at=SENT))
    referral_job, update_job = hub.jobs()

    assert hub.deliver(update_job) is Disposition.ACK  # to a retry queue, unsent

    assert len(hub.senders["wy-ld"].sent) == 1
    assert "message_waiting" in hub.events(alert["alert_id"])
    assert len(hub.publisher.messages(retry_exchange(10))) == 2
    assert hub.deliver(referral_job, attempts=1) is Disposition.ACK
    assert hub.deliver(update_job, attempts=1) is Disposition.ACK
    assert [s.job.referral.kind for s in hub.senders["wy-ld"].sent] == ["new", "new", "update"]


def test_a_cancellation_of_a_delivered_referral_is_sent_to_its_service() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()

    assert hub.send(cancellation_of(alert, sent_at=SENT)) is Disposition.ACK
    hub.deliver_all()

    states = {r.kind: r.state for r in hub.ledger.referrals_for(alert["alert_id"])}
    assert states == {"new": ReferralState.DELIVERED, "cancellation": ReferralState.DELIVERED}
    assert "alert_cancelled" in hub.events(alert["alert_id"])
    record = hub.ledger.get_alert(alert["alert_id"])
    assert record is not None and record.cancelled


def test_a_change_after_a_cancellation_is_rejected() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.send(cancellation_of(alert, sent_at=SENT))

    assert hub.send(update_of(alert, sent_at=SENT)) is Disposition.ACK

    (rejected,) = hub.outcomes(alert["alert_id"])
    assert rejected["status"] == "rejected"
    assert [j.routing_key for j in hub.jobs()] == ["hub.deliver.wy-ld"] * 2
