"""The delivery stage: its plan (plan_start, plan_send, attempt_result, outcome_after_delivery)
and its shell on the in-memory hub: retry, dead-letter, a 409 duplicate, withholding."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from hub.errors import CircuitOpen, PermanentError, TransientError
from hub.messages import OutcomeStatus
from hub.records import ReferralRecord, ReferralState
from hub.stages.delivery_plan import (
    Send,
    Start,
    Wait,
    Withhold,
    attempt_result,
    attempt_was_made,
    outcome_after_delivery,
    plan_send,
    plan_start,
    worth_a_quick_retry,
)
from hub.testing.fake_sender import Answer
from hub.wire import DLQ_EXCHANGE, Disposition, retry_exchange
from tests.fixtures.alerts import cancellation_of, custody_alert
from tests.unit.stages.harness import NOW, MemoryHub

pytestmark = pytest.mark.unit

MENTAL_HEALTH = [{"type": "mental_health", "detail": "Low mood."}]


def referral(
    kind: str = "new", state: ReferralState = ReferralState.QUEUED, **kw: object
) -> ReferralRecord:
    base = ReferralRecord(
        bundle_id=f"b-{kind}", alert_id="a-1", endpoint="wy-ld", request_id="r-1", kind=kind
    )
    return replace(base, state=state, **kw)  # type: ignore[arg-type]


def test_a_delivered_referral_only_retells_the_justice_side() -> None:
    assert plan_start(referral(state=ReferralState.DELIVERED), retried=True) is Start.RETELL


def test_a_withheld_referral_is_skipped() -> None:
    assert plan_start(referral(state=ReferralState.WITHHELD), retried=False) is Start.SKIP


def test_a_referrals_first_attempt_is_sent_without_a_check() -> None:
    assert plan_start(referral(), retried=False) is Start.SEND


def test_a_retried_referral_or_any_follow_up_is_checked_first() -> None:
    assert plan_start(referral(), retried=True) is Start.CHECK
    assert plan_start(referral("cancellation"), retried=False) is Start.CHECK


def test_a_referral_of_a_cancelled_alert_is_withheld() -> None:
    assert plan_send(referral(), alert_cancelled=True, siblings=[]) == Withhold("alert_cancelled")
    assert plan_send(referral(), alert_cancelled=False, siblings=[]) == Send()


def test_a_follow_up_waits_behind_its_queued_referral() -> None:
    original = referral()
    update = referral("update", created_at=NOW)

    plan = plan_send(update, alert_cancelled=False, siblings=[original, update])

    assert plan == Wait((original.bundle_id,))


def test_a_follow_up_is_sent_once_its_referral_is_delivered() -> None:
    original = referral(state=ReferralState.DELIVERED)
    update = referral("update", created_at=NOW)

    assert plan_send(update, alert_cancelled=False, siblings=[original, update]) == Send()


def test_a_follow_up_waits_behind_an_earlier_queued_follow_up_only() -> None:
    original = referral(state=ReferralState.DELIVERED)
    first = replace(referral("update", created_at=NOW), bundle_id="b-first")
    second = replace(referral("update", created_at=NOW + timedelta(seconds=1)), bundle_id="b-2")

    assert plan_send(second, alert_cancelled=False, siblings=[original, first, second]) == Wait(
        ("b-first",)
    )
    assert plan_send(first, alert_cancelled=False, siblings=[original, first, second]) == Send()


@pytest.mark.parametrize("state", [ReferralState.FAILED, ReferralState.WITHHELD])
def test_a_follow_up_of_a_referral_never_delivered_is_withheld(state: ReferralState) -> None:
    original = referral(state=state)
    update = referral("update", created_at=NOW)

    plan = plan_send(update, alert_cancelled=False, siblings=[original, update])

    assert plan == Withhold("referral_not_delivered")
    assert plan_send(update, alert_cancelled=False, siblings=[update]) == plan


def test_failed_attempts_are_recorded_as_transient_or_permanent() -> None:
    assert attempt_result(TransientError("x")) == "transient"
    assert attempt_result(CircuitOpen("x")) == "transient"
    assert attempt_result(PermanentError("x")) == "permanent"
    assert not attempt_was_made(CircuitOpen("x")) and attempt_was_made(TransientError("x"))


def test_only_a_blip_is_worth_a_quick_retry() -> None:
    assert worth_a_quick_retry(TransientError("x"))
    assert worth_a_quick_retry(TransientError("x", retry_after=2))
    assert not worth_a_quick_retry(TransientError("x", retry_after=30))
    assert not worth_a_quick_retry(CircuitOpen("x"))
    assert not worth_a_quick_retry(PermanentError("x"))


def test_only_the_referral_itself_tells_the_justice_side_received() -> None:
    assert outcome_after_delivery(referral()) is OutcomeStatus.RECEIVED
    assert outcome_after_delivery(referral("update")) is None


def test_a_delivered_referral_is_recorded_and_the_justice_side_told_received() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)

    assert hub.deliver_all() == [Disposition.ACK]

    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.state is ReferralState.DELIVERED and record.attempts == 1
    (received,) = hub.outcomes(alert["alert_id"])
    assert received["status"] == "received"
    assert hub.events(alert["alert_id"])[-2:] == ["referral_delivered", "outcome_returned"]


def test_a_redelivered_job_is_not_sent_again_and_retells_the_same_outcome() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()

    (job,) = hub.jobs()
    assert hub.deliver(job) is Disposition.ACK

    assert len(hub.senders["wy-ld"].sent) == 1
    first, again = hub.outcomes(alert["alert_id"])
    assert first == again


def test_a_transient_failure_goes_to_a_retry_queue_and_is_recorded() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.transient(503))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)

    assert hub.deliver_all() == [Disposition.ACK]

    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.state is ReferralState.QUEUED and record.attempts == 1
    (retry,) = hub.publisher.messages(retry_exchange(10))
    assert retry.routing_key == "hub.deliver.wy-ld"
    assert hub.outcomes(alert["alert_id"]) == []


def test_a_retry_that_succeeds_delivers_once() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.transient(503))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()
    (job,) = hub.jobs()

    assert hub.deliver(job, attempts=1) is Disposition.ACK

    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.state is ReferralState.DELIVERED and record.attempts == 2
    assert [o["status"] for o in hub.outcomes(alert["alert_id"])] == ["received"]


def test_a_permanent_refusal_is_dead_lettered_with_no_received_outcome() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.permanent(422))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)

    assert hub.deliver_all() == [Disposition.ACK]

    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.state is ReferralState.FAILED
    assert len(hub.publisher.messages(DLQ_EXCHANGE)) == 1
    assert hub.events(alert["alert_id"])[-1] == "referral_dead_lettered"
    assert hub.outcomes(alert["alert_id"]) == []


def test_a_409_duplicate_answer_counts_as_delivered() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.delivered(409))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)

    hub.deliver_all()

    (record,) = hub.ledger.referrals_for(alert["alert_id"])
    assert record.state is ReferralState.DELIVERED
    delivered = [
        e for e in hub.ledger.journey(alert["alert_id"]) if e.event == "referral_delivered"
    ]
    assert delivered[0].detail["http_status"] == 409
    assert [o["status"] for o in hub.outcomes(alert["alert_id"])] == ["received"]


def test_a_cancellation_withholds_a_referral_not_yet_delivered() -> None:
    hub = MemoryHub()
    hub.senders["wy-ld"].script(Answer.transient(503))
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()  # the first attempt fails: the referral waits in a retry queue
    hub.send(cancellation_of(alert, sent_at="2026-11-23T09:30:30Z"))
    referral_job, _cancellation_job = hub.jobs()

    assert hub.deliver(referral_job, attempts=1) is Disposition.ACK

    states = {r.kind: r.state for r in hub.ledger.referrals_for(alert["alert_id"])}
    assert states["new"] is ReferralState.WITHHELD
    assert len(hub.senders["wy-ld"].sent) == 1  # only the failed first attempt
    withheld = [e for e in hub.ledger.journey(alert["alert_id"]) if e.event == "message_withheld"]
    assert withheld[0].detail["reason"] == "alert_cancelled"
