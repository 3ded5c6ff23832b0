"""The journey recorder: one call per fact writes the journey event and counts its metric."""

from __future__ import annotations

import pytest

from hub.adapters.memory.ledger import MemoryLedger
from hub.adapters.memory.metrics import MemoryMetrics
from hub.records import JourneyEvent
from hub.stages.journey import Journey
from hub.testing.fake_sender import Answer
from tests.fixtures.alerts import custody_alert
from tests.unit.stages.harness import NOW, Clock, MemoryHub

pytestmark = pytest.mark.unit


class Events:
    def __init__(self) -> None:
        self.added: list[JourneyEvent] = []

    def add_event(self, event: JourneyEvent) -> None:
        self.added.append(event)


def test_a_fact_with_a_metric_is_counted_and_added_to_the_journey() -> None:
    events, metrics = Events(), MemoryMetrics()
    journey = Journey(ledger=events, clock=Clock(), stage="deliver", metrics=metrics)

    journey.record("referral_delivered", alert_id="a", endpoint="wy-ld", detail={"kind": "new"})

    assert metrics.counts[("referrals_delivered", "wy-ld")] == 1
    assert events.added == [
        JourneyEvent(
            alert_id="a",
            at=NOW,
            stage="deliver",
            event="referral_delivered",
            endpoint="wy-ld",
            detail={"kind": "new"},
        )
    ]


def test_a_rejection_is_counted_by_its_source_kind() -> None:
    events, metrics = Events(), MemoryMetrics()
    journey = Journey(ledger=events, clock=Clock(), stage="intake", metrics=metrics)

    journey.record("alert_rejected", alert_id="a", label="court", detail={})

    assert metrics.counts[("alerts_rejected", "court")] == 1
    assert [e.event for e in events.added] == ["alert_rejected"]


def test_a_fact_without_an_alert_is_only_counted() -> None:
    events, metrics = Events(), MemoryMetrics()
    journey = Journey(ledger=events, clock=Clock(), stage="deliver", metrics=metrics)

    journey.record("referral_dead_lettered", alert_id=None, endpoint="dat")

    assert metrics.counts[("referrals_failed", "dat")] == 1
    assert events.added == []


def test_a_fact_without_a_metric_is_only_added_to_the_journey() -> None:
    events, metrics = Events(), MemoryMetrics()
    journey = Journey(ledger=events, clock=Clock(), stage="intake", metrics=metrics)

    journey.record("alert_validated", alert_id="a", detail={"kind": "custody"})

    assert sum(metrics.counts.values()) == 0
    assert [e.event for e in events.added] == ["alert_validated"]


def test_without_metrics_the_journey_is_still_recorded() -> None:
    ledger = MemoryLedger()
    journey = Journey(ledger=ledger, clock=Clock(), stage="intake")

    journey.record("alert_rejected", alert_id="a", label="custody")

    assert [e.event for e in ledger.journey("a")] == ["alert_rejected"]


def test_the_stages_count_what_they_record() -> None:
    metrics = MemoryMetrics()
    hub = MemoryHub(metrics=metrics)
    hub.senders["dat"].script(Answer.permanent(422))
    alert = custody_alert()

    hub.send(alert)
    hub.deliver_all()
    hub.send({**alert, "alert_id": "not an id"})

    assert metrics.counts[("alerts_received", "custody")] == 2
    assert metrics.counts[("referrals_delivered", "wy-ld")] == 1
    assert metrics.counts[("referrals_failed", "dat")] == 1
    assert metrics.counts[("alerts_rejected", "custody")] == 1
    assert len(metrics.latencies["wy-ld"]) == 1 and len(metrics.latencies["dat"]) == 1
