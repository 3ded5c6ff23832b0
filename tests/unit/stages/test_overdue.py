"""Overdue referrals: the plan (plan_overdue) and OverdueWatch on the in-memory hub."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.records import ReferralRecord
from hub.stages.overdue import plan_overdue
from tests.fixtures.alerts import cancellation_of, custody_alert
from tests.unit.stages.harness import NOW, RECIPIENTS, MemoryHub

pytestmark = pytest.mark.unit

MENTAL_HEALTH = [{"type": "mental_health", "detail": "Low mood."}]


def test_a_due_referral_is_reported_with_its_recipient_unless_its_endpoint_is_gone() -> None:
    kept = ReferralRecord(bundle_id="b1", alert_id="a", endpoint="wy-ld", request_id="r")
    gone = ReferralRecord(bundle_id="b2", alert_id="a", endpoint="gone", request_id="r")

    assert plan_overdue([kept, gone], RECIPIENTS) == [(kept, RECIPIENTS["wy-ld"])]


def test_a_referral_past_its_service_level_is_reported_overdue_once() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.deliver_all()
    (referral,) = hub.ledger.referrals_for(alert["alert_id"])
    assert referral.due_at is not None

    hub.clock.now = referral.due_at - timedelta(seconds=1)
    assert hub.overdue.check() == 0
    hub.clock.now = referral.due_at + timedelta(seconds=1)
    assert hub.overdue.check() == 1
    assert hub.overdue.check() == 0

    statuses = [o["status"] for o in hub.outcomes(alert["alert_id"])]
    assert statuses == ["received", "overdue"]
    assert hub.events(alert["alert_id"]).count("referral_overdue") == 1


def test_a_cancelled_alerts_referral_is_never_overdue() -> None:
    hub = MemoryHub()
    alert = custody_alert(vulnerabilities=MENTAL_HEALTH)
    hub.send(alert)
    hub.send(cancellation_of(alert, sent_at="2026-11-23T09:30:30Z"))
    hub.clock.now = NOW + timedelta(days=30)

    assert hub.overdue.check() == 0
    assert hub.outcomes(alert["alert_id"]) == []
