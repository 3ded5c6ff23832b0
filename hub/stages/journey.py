"""The one place a stage records what happened to a message: its journey event in the ledger
(what `hub trace` shows) and the metric that counts it (what Prometheus shows), from one table.

A stage says `self.journey.record("alert_rejected", alert_id=..., label=kind, detail=...)` once
per fact; the event name, its fields and the metric are the ones operators already rely on
(docs/operations; tests/unit/test_metrics.py). Metrics that are not journey facts (an alert
received, one delivery attempt's latency, the overdue gauge) are counted here too, so no stage
carries `if self.metrics` branches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from hub.pipeline import Clock
from hub.ports import Metrics
from hub.records import JourneyEvent


class EventLog(Protocol):
    """The part of the ledger the journey writes to."""

    def add_event(self, event: JourneyEvent) -> None: ...


# Journey event -> the counter it increments, given the event's label (a source kind or an
# endpoint name: bounded). Events not named here are recorded in the ledger only.
METRIC_OF_EVENT: Mapping[str, Callable[[Metrics, str], None]] = {
    "alert_rejected": lambda m, source_kind: m.alert_rejected(source_kind),
    "referral_delivered": lambda m, endpoint: m.referral_delivered(endpoint),
    "referral_dead_lettered": lambda m, endpoint: m.referral_failed(endpoint),
}


class Journey:
    def __init__(
        self, *, ledger: EventLog, clock: Clock, stage: str, metrics: Metrics | None = None
    ) -> None:
        self.ledger = ledger
        self.clock = clock
        self.stage = stage
        self.metrics = metrics

    def record(
        self,
        event: str,
        *,
        alert_id: str | None,
        endpoint: str | None = None,
        detail: Mapping[str, Any] | None = None,
        label: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Count the fact (its metric, labelled `label`, else `endpoint`), then add its event
        to the alert's journey (at `at`, else now). Without an alert id (a message the hub
        cannot tie to an alert) it is only counted."""
        count = METRIC_OF_EVENT.get(event)
        metric_label = label if label is not None else endpoint
        if self.metrics is not None and count is not None and metric_label is not None:
            count(self.metrics, metric_label)
        if alert_id is None:
            return
        self.ledger.add_event(
            JourneyEvent(
                alert_id=alert_id,
                at=self.clock() if at is None else at,
                stage=self.stage,
                event=event,
                endpoint=endpoint,
                detail=dict(detail or {}),
            )
        )

    # -- metrics that are not journey events ------------------------------------------------

    def alert_received(self, source_kind: str) -> None:
        if self.metrics is not None:
            self.metrics.alert_received(source_kind)

    def delivery_attempt(self, endpoint: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.delivery_attempt(endpoint, seconds)

    def overdue_referrals(self, count: Callable[[], int]) -> None:
        """The overdue gauge; `count` is only asked when there are metrics to set."""
        if self.metrics is not None:
            self.metrics.overdue_referrals(count())
