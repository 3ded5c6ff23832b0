"""Overdue referrals on the real broker and database: a service that sends no outcome within its
route's service level makes the justice side hear `overdue`, once, across restarts; its late
answer is recorded as the resolution."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.messages import OutcomeStatus
from hub.transforms.response_to_outcome import build_service_response
from tests.conftest import ROUTES, SERVICES, HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody
from tests.fixtures.alerts import routing_key_of

pytestmark = pytest.mark.e2e

# Every level one minute; the tests move the hub's clock instead of waiting.
ONE_MINUTE = ROUTES + "service_levels: {routine: 1m, urgent: 1m, emergency: 1m}\n"


class Clock:
    """The hub's clock, moved by the tests; it counts the overdue watch's readings (each check
    reads it once when nothing is due), the positive signal that checks ran."""

    def __init__(self) -> None:
        self.offset = timedelta()
        self.watch_readings = 0

    def __call__(self) -> datetime:
        if threading.current_thread().name == "overdue-watch":
            self.watch_readings += 1
        return datetime.now(UTC) + self.offset

    def wait_for_checks(self) -> None:
        """Until at least one whole overdue check has run after this call."""
        start = self.watch_readings
        wait_until(lambda: self.watch_readings >= start + 3, what="two more overdue checks")


def silent(endpoint: str, bundle: dict[str, Any]) -> list[Any]:
    return []  # the service takes the referral and says nothing


def overdue_for(rig: HubRig, alert_id: str) -> list[dict[str, Any]]:
    return [o for o in rig.justice.for_alert(alert_id) if o["status"] == "overdue"]


def events(rig: HubRig, alert_id: str, name: str) -> list[Any]:
    return [e for e in rig.hub.ledger.journey(alert_id) if e.event == name]


def overdue_gauge(rig: HubRig) -> float:
    """hub_overdue_referrals: the whole database's count (the e2e database is shared by runs)."""
    body, _ = rig.hub.metrics.exposition()
    line = next(x for x in body.decode().splitlines() if x.startswith("hub_overdue_referrals "))
    return float(line.split()[1])


def start(rig_factory: Any, clock: Clock, **options: Any) -> HubRig:
    return rig_factory(
        replies=silent, routes=ONE_MINUTE, clock=clock, overdue_check_seconds=0.2, **options
    )


def test_a_referral_with_no_outcome_by_its_service_level_is_reported_overdue_once(
    rig_factory: Any,
) -> None:
    clock = Clock()
    rig = start(rig_factory, clock)
    alert = fresh_custody(vulnerabilities=[{"type": "mental_health", "detail": "Low mood"}])
    rig.justice.publish(alert, routing_key=routing_key_of(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral")
    clock.wait_for_checks()
    assert overdue_for(rig, alert["alert_id"]) == []  # not yet due
    before = overdue_gauge(rig)

    clock.offset = timedelta(minutes=2)

    wait_until(lambda: len(overdue_for(rig, alert["alert_id"])) == 1, what="the overdue outcome")
    [overdue] = overdue_for(rig, alert["alert_id"])
    assert overdue["reference"] == alert["source"]["reference"]
    assert overdue["_routing_key"].endswith(".overdue")
    assert "detail" not in overdue
    # Published first, then marked (a crash in between repeats the same outcome_id).
    wait_until(
        lambda: len(events(rig, alert["alert_id"], "referral_overdue")) == 1,
        what="the operators' event",
    )
    wait_until(lambda: overdue_gauge(rig) == before + 1, what="the overdue gauge up by one")

    clock.wait_for_checks()
    assert len(overdue_for(rig, alert["alert_id"])) == 1

    # Restarted on the same database: the referral is not reported again.
    rig.hub.stop()
    again = start(rig_factory, clock, db_url=rig.db_url)
    clock.wait_for_checks()
    assert overdue_for(again, alert["alert_id"]) == []
    assert len(events(again, alert["alert_id"], "referral_overdue")) == 1

    # The service answers at last: the outcome goes through and operators see it resolved.
    referral = rig.trust.delivered()[0]
    ods, name = SERVICES["wy-ld"]
    status = again.trust.post_to_hub(
        build_service_response(
            referral_bundle_id=referral.bundle_id,
            service_ods=ods,
            service_name=name,
            status=OutcomeStatus.ACCEPTED,
            at=datetime.now(UTC),
            message_id=str(uuid.uuid4()),
        ),
        correlation_id=alert["alert_id"],
        endpoint="wy-ld",
    )
    assert status == 200
    again.justice.wait_for(lambda got: any(o["status"] == "accepted" for o in got))
    wait_until(
        lambda: len(events(again, alert["alert_id"], "referral_overdue_resolved")) == 1,
        what="the resolution event",
    )
    wait_until(lambda: overdue_gauge(again) == before, what="the overdue gauge back down")


def test_a_referral_that_falls_due_while_the_hub_is_down_is_reported_after_restart(
    rig_factory: Any,
) -> None:
    clock = Clock()
    rig = start(rig_factory, clock)
    alert = fresh_custody(vulnerabilities=[{"type": "mental_health", "detail": "Low mood"}])
    rig.justice.publish(alert, routing_key=routing_key_of(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral")
    rig.justice.wait_for(lambda got: any(o["status"] == "received" for o in got))
    rig.hub.stop()

    clock.offset = timedelta(minutes=5)
    start(rig_factory, clock, db_url=rig.db_url)

    # Read off the first rig's justice queue: bound before the restart, as a custody system's
    # durable queue is (the new rig's is declared only after its hub has started).
    wait_until(lambda: len(overdue_for(rig, alert["alert_id"])) == 1, what="overdue after restart")
