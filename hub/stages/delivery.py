"""Delivery stage: one delivery job off hub.deliver.<endpoint> → its endpoint kind's Sender
(hub/endpoints/) → every attempt recorded in the ledger → `received` outcome to the justice side.
Quick in-process retries for blips; anything longer is the Dispatcher's (broker TTL queues).

How an HTTP answer is judged (delivered, transient, permanent) is the rule table in
hub/transforms/http_answer.py, one for both HTTP kinds (fhir-rest, webhook).

X-Request-Id and the payload bytes stay identical on every retry (BaRS idempotency).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from hub.errors import HubError, InvalidMessage, PermanentError, TransientError
from hub.log import bind_correlation, get_logger
from hub.messages import Recipient, ReferralOutcome
from hub.pipeline import Clock
from hub.ports import Metrics, Publisher, Sender
from hub.ports_ledger import DeliveryLedger
from hub.records import (
    Delivered,
    DeliveredAttempt,
    DeliveryJob,
    OutcomeRecord,
    ReferralRecord,
)
from hub.security.ids import IdKey
from hub.stages.delivery_plan import (
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
from hub.stages.journey import Journey
from hub.stages.outcomes import (
    build_outcome,
    outcome_message,
    outcome_returned,
    return_outcome,
)
from hub.transforms.http_answer import Verdict
from hub.wire import H_ALERT_ID, H_ATTEMPTS, H_BUNDLE_ID, Envelope, header_str

log = get_logger("hub.delivery")


# An OperationOutcome's codes, as far as they can go into an error message that is logged
# and shown masked: a code is a short token; anything else the service wrote (diagnostics,
# details.text, display) may quote the person and stays in `operation_outcome` only.


class DeliveryStage:
    name = "deliver"

    def __init__(
        self,
        *,
        endpoint: str,
        recipient: Recipient,
        sender: Sender,
        ledger: DeliveryLedger,
        publisher: Publisher,
        clock: Clock,
        ids: IdKey,
        quick_attempts: int = 3,
        quick_seconds: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.quick_attempts = quick_attempts
        self.quick_seconds = quick_seconds
        self.endpoint = endpoint
        self.recipient = recipient
        self.sender = sender
        self.ledger = ledger
        self.publisher = publisher
        self.clock = clock
        self.metrics = metrics
        self.journey = Journey(ledger=ledger, clock=clock, stage=self.name, metrics=metrics)
        self.ids = ids

    def process(self, envelope: Envelope) -> None:
        bundle_id = header_str(envelope.headers, H_BUNDLE_ID)
        alert_id = header_str(envelope.headers, H_ALERT_ID)
        referral = self.ledger.get_referral(bundle_id) if bundle_id else None
        if referral is None or alert_id != referral.alert_id:
            raise PermanentError(
                "delivery job names no referral known to the ledger",
                endpoint=self.endpoint,
                stage=self.name,
            )
        bind_correlation(referral.alert_id)
        start = plan_start(referral, retried=H_ATTEMPTS in envelope.headers)
        if start is Start.RETELL:
            # Redelivered after the endpoint already took it: only make sure the justice
            # side heard (same outcome id, so it de-duplicates).
            self._tell_justice_received(referral)
            return
        if start is Start.SKIP:
            return
        withhold = None if start is Start.SEND else self._withhold_reason(referral)
        if withhold is not None:
            self._withhold(referral, withhold)
            return
        job = DeliveryJob(referral=referral, body=envelope.body, content_type=envelope.content_type)
        delivered = self._quick()(self._send_once, job)
        with self.ledger.unit_of_work():  # the attempt and its event: one commit
            updated = self._record_delivered(referral, delivered)
        self._tell_justice_received(updated)

    def _record_delivered(self, referral: ReferralRecord, delivered: Delivered) -> ReferralRecord:
        self.journey.delivery_attempt(self.endpoint, delivered.elapsed_ms / 1000)
        updated = self._attempt(
            referral.bundle_id,
            str(Verdict.DELIVERED),
            delivered.status,
            delivered.answer,
            delivered.elapsed_ms,
        )
        self._delivered(referral, updated, delivered)
        return updated

    def _delivered(
        self, referral: ReferralRecord, updated: ReferralRecord, delivered: Delivered
    ) -> None:
        log.info(
            "referral_delivered",
            alert_id=referral.alert_id,
            endpoint=self.endpoint,
            bundle_id=referral.bundle_id,
            http_status=delivered.status,
            answer=delivered.answer,
            attempts=updated.attempts,
            elapsed_ms=round(delivered.elapsed_ms, 1),
        )
        self.journey.record(
            "referral_delivered",
            alert_id=referral.alert_id,
            endpoint=self.endpoint,
            detail={
                "bundle_id": referral.bundle_id,
                "request_id": referral.request_id,
                "kind": referral.kind,
                "http_status": delivered.status,
                "answer": delivered.answer,
                "attempts": updated.attempts,
            },
        )

    def process_batch(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool] = lambda: False
    ) -> list[bool | HubError | None]:
        """Many first attempts at once: their referrals read in one transaction, each sent in
        turn (quick retries as alone), what was delivered recorded in one commit, the
        `received` outcomes published with their confirms in flight together and recorded in
        one commit. For each message: True when done, the error its send ended in (disposed of
        by the Dispatcher as if `process` had raised it: its attempt is recorded), or False for
        anything that is not a plain first attempt (retries, replays, follow-ups, jobs the
        ledger does not know), left to `process`; None for one not sent because `stopping()`
        turned true (it goes back to the queue)."""
        results: list[bool | HubError | None] = [False] * len(envelopes)
        firsts: list[tuple[int, Envelope, ReferralRecord]] = []
        with self.ledger.unit_of_work():
            known = self.ledger.get_referrals(
                [header_str(e.headers, H_BUNDLE_ID) or "" for e in envelopes]
            )
        for i, envelope in enumerate(envelopes):
            referral = known.get(header_str(envelope.headers, H_BUNDLE_ID) or "")
            if referral is None or header_str(envelope.headers, H_ALERT_ID) != referral.alert_id:
                continue
            if plan_start(referral, retried=H_ATTEMPTS in envelope.headers) is Start.SEND:
                firsts.append((i, envelope, referral))
        sent: list[tuple[int, ReferralRecord, Delivered]] = []
        for i, envelope, referral in firsts:
            if stopping():  # a graceful stop: what is not sent yet goes back to the queue
                results[i] = None
                continue
            bind_correlation(referral.alert_id)
            job = DeliveryJob(
                referral=referral, body=envelope.body, content_type=envelope.content_type
            )
            try:
                sent.append((i, referral, self._quick()(self._send_once, job)))
            except HubError as failed:  # recorded by _send_once; the Dispatcher decides
                results[i] = failed
        if not sent:
            return results
        outcomes: list[tuple[ReferralRecord, ReferralOutcome]] = []
        with self.ledger.unit_of_work():
            updated = self.ledger.record_deliveries(
                [
                    DeliveredAttempt(
                        bundle_id=referral.bundle_id,
                        at=self.clock(),
                        http_status=delivered.status,
                        detail=delivered.answer,
                        duration_ms=delivered.elapsed_ms,
                    )
                    for _, referral, delivered in sent
                ]
            )
            alerts = self.ledger.get_alerts([r.alert_id for r in updated])
            for (_, referral, delivered), now_delivered in zip(sent, updated, strict=True):
                bind_correlation(referral.alert_id)
                self.journey.delivery_attempt(self.endpoint, delivered.elapsed_ms / 1000)
                self._delivered(referral, now_delivered, delivered)
                status = outcome_after_delivery(now_delivered)
                alert = alerts.get(referral.alert_id)
                if status is None:
                    continue
                if alert is None:
                    raise PermanentError(
                        "referral without its alert in the ledger",
                        alert_id=referral.alert_id,
                        stage=self.name,
                    )
                outcome = build_outcome(
                    alert=alert,
                    referral=now_delivered,
                    recipient=self.recipient,
                    status=status,
                    at=now_delivered.delivered_at or self.clock(),
                    answers="received",
                    ids=self.ids,
                )
                outcomes.append((now_delivered, outcome))
        self.publisher.publish_many([outcome_message(outcome) for _, outcome in outcomes])
        with self.ledger.unit_of_work():
            at = self.clock()
            new = self.ledger.record_outcomes(
                [
                    OutcomeRecord(
                        outcome_id=outcome.outcome_id,
                        alert_id=referral.alert_id,
                        bundle_id=referral.bundle_id,
                        status=str(outcome.status),
                        at=at,
                    )
                    for referral, outcome in outcomes
                ]
            )
            for (referral, outcome), first_time in zip(outcomes, new, strict=True):
                if first_time:
                    outcome_returned(self.journey, referral, outcome)
        for i, _, _ in sent:
            results[i] = True
        return results

    def _quick(self) -> Retrying:
        # A few quick in-process retries, bounded in time and jittered, for blips; anything
        # longer goes back to the broker's delayed retry queues (the Dispatcher decides).
        return Retrying(
            stop=stop_after_attempt(self.quick_attempts) | stop_after_delay(self.quick_seconds),
            wait=wait_random_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception(worth_a_quick_retry),
            reraise=True,
        )

    def _withhold_reason(self, referral: ReferralRecord) -> str | None:
        """Why this message must not be sent (a code), None to send it now; TransientError to
        send it later, after the messages queued before it for this endpoint (a follow-up never
        overtakes the referral it is about, even while that one waits in a retry queue)."""
        alert = self.ledger.get_alert(referral.alert_id)
        siblings = (
            []
            if referral.kind == "new"
            else [
                r
                for r in self.ledger.referrals_for(referral.alert_id)
                if r.endpoint == self.endpoint
            ]
        )
        plan = plan_send(
            referral, alert_cancelled=alert is not None and bool(alert.cancelled), siblings=siblings
        )
        if isinstance(plan, Withhold):
            return plan.reason
        if isinstance(plan, Wait):
            self.journey.record(
                "message_waiting",
                alert_id=referral.alert_id,
                endpoint=self.endpoint,
                detail={
                    "bundle_id": referral.bundle_id,
                    "kind": referral.kind,
                    "waiting_for": list(plan.waiting_for),
                },
            )
            raise TransientError(
                "waiting for the messages queued before this one to be delivered first",
                alert_id=referral.alert_id,
                endpoint=self.endpoint,
                stage=self.name,
            )
        return None

    def _withhold(self, referral: ReferralRecord, reason: str) -> None:
        """Acked without sending: recorded as WITHHELD, with why, for `hub trace`."""
        self._attempt(referral.bundle_id, "withheld", None, reason, 0.0)
        log.info(
            "message_withheld",
            alert_id=referral.alert_id,
            endpoint=self.endpoint,
            bundle_id=referral.bundle_id,
            kind=referral.kind,
            reason=reason,
        )
        self.journey.record(
            "message_withheld",
            alert_id=referral.alert_id,
            endpoint=self.endpoint,
            detail={"bundle_id": referral.bundle_id, "kind": referral.kind, "reason": reason},
        )

    def _send_once(self, job: DeliveryJob) -> Delivered:
        """One attempt through the endpoint's Sender; a failed one is recorded in the ledger
        here (a delivered one by the caller, with its event); re-raises the Sender's verdict
        with this delivery's context."""
        referral = job.referral
        started = self.clock()
        try:
            delivered = self.sender.send(job)
        except (TransientError, PermanentError) as exc:
            result = attempt_result(exc)
            elapsed = (self.clock() - started).total_seconds() * 1000
            if attempt_was_made(exc):  # an open circuit sent nothing
                self.journey.delivery_attempt(self.endpoint, elapsed / 1000)
            self._attempt(referral.bundle_id, result, exc.status, exc.message, elapsed)
            exc.alert_id, exc.stage, exc.endpoint = referral.alert_id, self.name, self.endpoint
            raise
        return delivered

    def _attempt(
        self, bundle_id: str, result: str, status: int | None, detail: str, duration_ms: float
    ) -> ReferralRecord:
        return self.ledger.record_attempt(
            bundle_id,
            at=self.clock(),
            result=result,
            http_status=status,
            detail=detail,
            duration_ms=duration_ms,
        )

    def _tell_justice_received(self, referral: ReferralRecord) -> None:
        status = outcome_after_delivery(referral)
        if status is None:
            return  # the justice side hears `received` once, for the referral itself
        return_outcome(
            ledger=self.ledger,
            publisher=self.publisher,
            referral=referral,
            recipient=self.recipient,
            journey=self.journey,
            status=status,
            at=referral.delivered_at or self.clock(),
            answers="received",
            ids=self.ids,
        )

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        pass

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        bundle_id = header_str(envelope.headers, H_BUNDLE_ID)
        alert_id = header_str(envelope.headers, H_ALERT_ID)
        # Counted whatever the job says; an event only for a job that names its alert.
        self.journey.record(
            "referral_dead_lettered",
            alert_id=alert_id if bundle_id and alert_id else None,
            endpoint=self.endpoint,
            detail={
                "bundle_id": bundle_id,
                "error_class": type(error).__name__,
                "status": error.status,
            },
        )
