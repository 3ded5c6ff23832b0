"""Overdue referrals: a referral whose service has sent no outcome by its service level (routes'
`service_levels`, stored as the referral's due_at) gets an `overdue` outcome to the justice side
and an operator-visible event, once; when the service finally answers, a second event says so.

Driven from the ledger, never from timers in memory: a restart, or a second hub, finds the same
referrals due, and `mark_overdue` lets exactly one of them report each. The outcome is published
before it is marked, with an id fixed by the referral, so a crash in between repeats the same
outcome (the justice side de-duplicates by outcome_id) rather than losing it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from hub.errors import HubError
from hub.log import get_logger
from hub.messages import OutcomeStatus, Recipient
from hub.pipeline import Clock
from hub.ports import Metrics, Publisher
from hub.ports_ledger import OverdueLedger
from hub.records import ReferralRecord
from hub.security.ids import IdKey
from hub.stages.journey import Journey
from hub.stages.outcomes import return_outcome

log = get_logger("hub.overdue")

STAGE = "overdue"


def plan_overdue(
    due: Iterable[ReferralRecord], recipients: Mapping[str, Recipient]
) -> list[tuple[ReferralRecord, Recipient]]:
    """The overdue stage's functional core (pure): of the referrals the ledger finds due (past
    due_at, unanswered, not withheld or cancelled, not yet reported), those to report, each with
    the recipient its outcome names. Once each: `mark_overdue` lets exactly one check report
    it."""
    return [
        (referral, recipient)
        for referral in due
        # an endpoint removed from the configuration: nothing to name it by
        if (recipient := recipients.get(referral.endpoint)) is not None
    ]


class OverdueWatch:
    def __init__(
        self,
        *,
        ledger: OverdueLedger,
        publisher: Publisher,
        recipients: Mapping[str, Recipient],
        clock: Clock,
        ids: IdKey,
        metrics: Metrics | None = None,
        interval: float = 30.0,
    ) -> None:
        self.ids = ids
        self.ledger = ledger
        self.publisher = publisher
        self.recipients = recipients
        self.clock = clock
        self.metrics = metrics
        self.journey = Journey(ledger=ledger, clock=clock, stage=STAGE, metrics=metrics)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.thread_name = "overdue-watch"

    def check(self) -> int:
        """Report every referral that has fallen due since the last check; how many this call
        reported."""
        reported = 0
        for referral, recipient in plan_overdue(
            self.ledger.overdue_due(self.clock()), self.recipients
        ):
            self._report(referral, recipient)
            if self.ledger.mark_overdue(referral.bundle_id, at=self.clock()):
                reported += 1
                self.journey.record(
                    "referral_overdue",
                    alert_id=referral.alert_id,
                    endpoint=referral.endpoint,
                    detail={"bundle_id": referral.bundle_id, "due_at": _iso(referral)},
                )
                log.warning(
                    "referral_overdue",
                    alert_id=referral.alert_id,
                    endpoint=referral.endpoint,
                    bundle_id=referral.bundle_id,
                )
        self.journey.overdue_referrals(self.ledger.count_overdue)
        return reported

    def _report(self, referral: ReferralRecord, recipient: Recipient) -> None:
        return_outcome(
            ledger=self.ledger,
            publisher=self.publisher,
            referral=referral,
            recipient=recipient,
            journey=self.journey,
            status=OutcomeStatus.OVERDUE,
            at=referral.due_at or self.clock(),
            answers="overdue",
            ids=self.ids,
        )

    # -- the loop bootstrap runs ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except HubError as exc:  # the database or broker is away: the next check retries
                log.warning("overdue_check_failed", reason=exc.message)
            except Exception as exc:  # noqa: BLE001 - a background loop's boundary: never dies
                log.error("overdue_check_crashed", error_class=type(exc).__name__)
            self._stop.wait(self.interval)


def _iso(referral: ReferralRecord) -> str:
    return referral.due_at.isoformat() if referral.due_at else ""
