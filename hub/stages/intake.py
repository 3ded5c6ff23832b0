"""Intake stage: an alert off hub.alerts.<kind> → validated → ledger (idempotent) → one
delivery job per chosen endpoint, durably queued, before the alert is acked. Each job's body is
the payload rendered for its endpoint's kind (FHIR Bundle, HL7 v2 REF^I12, webhook JSON), so the
delivery stage sends exactly those bytes on every attempt.

Every invalid alert is answered with a `rejected` outcome to the organisation named by the
routing key, and an alert it could not process is parked (hub/stages/intake_rejections.py).
Logs ids and counts only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from hub.contracts.follow_ups import parse_justice_message
from hub.errors import AlertConflict, HubError, InvalidMessage, PermanentError
from hub.log import bind_correlation, get_logger
from hub.messages import (
    Alert,
    FollowUp,
    HubIdentity,
    Problem,
    Recipient,
)
from hub.pipeline import Clock, publish_each
from hub.ports import Metrics, Publisher, Render, RenderFollowUp
from hub.ports_ledger import IntakeLedger
from hub.records import AlertRecord, Seen
from hub.routes.rules import RouteTable
from hub.security.ids import IdKey
from hub.stages.follow_ups import FollowUpIntake
from hub.stages.intake_plan import (
    IntakeAction,
    RoutePlan,
    alert_facts,
    envelope_problems,
    message_type_from_routing_key,
    plan_intake,
    plan_referrals,
    publisher_routing_key,
    route_decision,
    source_from_routing_key,
)
from hub.stages.intake_rejections import IntakeRejections
from hub.stages.journey import Journey
from hub.wire import (
    ALERTS_EXCHANGE,
    H_ALERT_ID,
    H_ATTEMPTS,
    H_BUNDLE_ID,
    H_ENDPOINT,
    H_REQUEST_ID,
    WORK_EXCHANGE,
    Envelope,
    Outgoing,
    delivery_queue,
)

log = get_logger("hub.intake")


@dataclass(frozen=True, slots=True)
class _Routing:
    """An alert recorded as queued, with the delivery jobs still to be published."""

    alert: Alert
    plan: RoutePlan
    at: datetime
    jobs: list[Outgoing]


class IntakeStage:
    name = "intake"

    def __init__(
        self,
        *,
        ledger: IntakeLedger,
        publisher: Publisher,
        routes: RouteTable,
        recipients: Mapping[str, Recipient],
        hub: HubIdentity,
        clock: Clock,
        max_body_bytes: int,
        source_users: Mapping[str, tuple[str, ...]] | None = None,
        renderers: Mapping[str, Render],
        followup_renderers: Mapping[str, RenderFollowUp] | None = None,
        metrics: Metrics | None = None,
        ids: IdKey,
    ) -> None:
        """`recipients` and `renderers` are keyed by endpoint name; a renderer is the endpoint
        kind's pure render function (bootstrap picks it from the configuration). `ids` keys
        the ids of the rejections it sends."""
        self.ids = ids
        self.ledger = ledger
        self.publisher = publisher
        self.routes = routes
        self.recipients = recipients
        self.hub = hub
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.source_users = dict(source_users or {})
        self.renderers = dict(renderers)
        self.metrics = metrics
        self.journey = Journey(ledger=ledger, clock=clock, stage=self.name, metrics=metrics)
        self.follow_ups = FollowUpIntake(
            ledger=ledger,
            publisher=publisher,
            routes=routes,
            recipients=recipients,
            hub=hub,
            clock=clock,
            renderers=self.renderers,
            followup_renderers=dict(followup_renderers or {}),
            journey=self.journey,
        )
        self.rejections = IntakeRejections(
            ledger=ledger, publisher=publisher, clock=clock, ids=ids, journey=self.journey
        )

    def process(self, envelope: Envelope) -> None:
        kind, org = self._source(envelope)
        if H_ATTEMPTS not in envelope.headers:
            # First attempts only: a retried or replayed alert was counted when it arrived.
            self.journey.alert_received(kind)
        message = self._checked(envelope, kind, org)
        if isinstance(message, FollowUp):
            self.follow_ups.process(envelope, message)
            return
        alert = message
        with self.ledger.unit_of_work():  # one commit: the alert, its referrals, their events
            routing = self._record(alert, envelope, now=self.clock())
        if routing is None:
            return
        publish_each(self.publisher, routing.jobs)
        with self.ledger.unit_of_work():
            self._routed(routing)

    def process_batch(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool] = lambda: False
    ) -> list[bool]:
        """Many alerts at once: one commit for every alert and referral of the batch, their
        delivery jobs published with their confirms in flight together, one commit marking them
        routed. True for each message whose work is done and durable; the rest (follow-ups,
        invalid or conflicting messages, an alert twice in the batch) are left for `process`,
        which answers them one by one as always. A batch takes milliseconds: it finishes
        even when `stopping()`."""
        done = [False] * len(envelopes)
        candidates: list[tuple[int, Envelope, Alert, str]] = []
        seen_ids: set[str] = set()
        for i, envelope in enumerate(envelopes):
            try:
                kind, org = self._source(envelope)
                message = self._checked(envelope, kind, org)
            except HubError:
                continue  # `process` raises it again, and the Dispatcher answers it
            if isinstance(message, FollowUp) or message.alert_id in seen_ids:
                continue
            seen_ids.add(message.alert_id)
            candidates.append((i, envelope, message, kind))
        if not candidates:
            return done
        routings: list[_Routing] = []
        finished: list[tuple[int, Envelope, str]] = []
        with self.ledger.unit_of_work():
            now = self.clock()
            recorded = self.ledger.record_alerts(
                [alert_facts(alert, envelope.body, now) for _, envelope, alert, _ in candidates]
            )
            for (i, envelope, alert, kind), (seen, record) in zip(
                candidates, recorded, strict=True
            ):
                bind_correlation(alert.alert_id)
                try:
                    routing = self._decide(alert, envelope, seen, record)
                except AlertConflict:
                    continue  # nothing of it was written: `process` rejects it
                if routing is not None:
                    routings.append(routing)
                finished.append((i, envelope, kind))
            self.ledger.mark_all_queued(
                [(r.alert.alert_id, r.plan.rule, list(r.plan.referrals)) for r in routings],
                at=now,
            )
        self.publisher.publish_many([job for routing in routings for job in routing.jobs])
        with self.ledger.unit_of_work():
            self.ledger.mark_all_routed([r.alert.alert_id for r in routings], at=self.clock())
            for routing in routings:
                bind_correlation(routing.alert.alert_id)
                self._routed(routing, marked=True)
        for i, envelope, kind in finished:
            if H_ATTEMPTS not in envelope.headers:
                self.journey.alert_received(kind)
            done[i] = True
        return done

    def _source(self, envelope: Envelope) -> tuple[str, str | None]:
        """The source kind and organisation the broker says it came from; PermanentError when
        nobody can say."""
        if publisher_routing_key(envelope) is None:
            # On an alert queue without having come through justice.alerts, and without the
            # hub's own record of where it did: no one can say who sent it. Parked, unanswered.
            raise PermanentError(
                f"message on {envelope.queue} did not come from {ALERTS_EXCHANGE} and carries "
                "no routing key the hub recorded: its sender is unknown",
                stage=self.name,
            )
        return source_from_routing_key(envelope)

    def _checked(self, envelope: Envelope, kind: str, org: str | None) -> Alert | FollowUp:
        """The message, parsed and checked against where the broker says it came from;
        raises for anything the hub must refuse."""
        message = parse_justice_message(
            envelope.body,
            content_type=envelope.content_type,
            now=self.clock(),
            max_bytes=self.max_body_bytes,
            expected_kind=kind,
            message_type=message_type_from_routing_key(envelope),
        )
        bind_correlation(message.alert_id)
        if isinstance(message, FollowUp):
            organisation = message.source.organisation.code
            self._check_envelope(envelope, message.alert_id, message.change_id, organisation, org)
        else:
            self._check_envelope(
                envelope, message.alert_id, message.alert_id, message.source.organisation.code, org
            )
        return message

    def _record(self, alert: Alert, envelope: Envelope, *, now: datetime) -> _Routing | None:
        """The alert and its referrals written to the ledger as queued (in the caller's unit of
        work); the delivery jobs to publish, or None for a duplicate already routed."""
        seen, record = self.ledger.record_alert(alert_facts(alert, envelope.body, now))
        routing = self._decide(alert, envelope, seen, record)
        if routing is not None:
            self.ledger.mark_routed(
                alert.alert_id,
                rule=routing.plan.rule,
                referrals=list(routing.plan.referrals),
                at=routing.at,
                routed=False,
            )
        return routing

    def _decide(
        self, alert: Alert, envelope: Envelope, seen: Seen, record: AlertRecord
    ) -> _Routing | None:
        """What an alert the ledger has just seen gets: AlertConflict, nothing (a duplicate
        already routed), or its referrals and delivery jobs (rendered, not yet stored)."""
        action = plan_intake(seen, record.state)
        if action is IntakeAction.CONFLICT:
            raise AlertConflict(
                [
                    Problem(
                        "alert_id",
                        "already received with a different body; send changes "
                        "as a new alert or an update, never under the same alert_id",
                    )
                ],
                alert_id=alert.alert_id,
                stage=self.name,
            )
        if action is IntakeAction.DUPLICATE:
            log.info("alert_duplicate_ignored", alert_id=alert.alert_id)
            self.journey.record("alert_duplicate_ignored", alert_id=alert.alert_id)
            return None
        if seen is Seen.NEW:
            self.journey.record(
                "alert_validated",
                alert_id=alert.alert_id,
                detail={
                    "kind": str(alert.source.kind),
                    "organisation": source_from_routing_key(envelope)[1] or "",
                },
            )
        return self._plan_jobs(alert)

    def _check_envelope(
        self,
        envelope: Envelope,
        alert_id: str,
        message_id: str,
        organisation: str,
        org: str | None,
    ) -> None:
        problems = envelope_problems(
            envelope,
            message_id=message_id,
            organisation=organisation,
            org=org,
            source_users=self.source_users,
        )
        if problems:
            raise InvalidMessage(problems, alert_id=alert_id, stage=self.name)

    def _plan_jobs(self, alert: Alert) -> _Routing:
        """Its referrals, and each one's delivery job rendered for its endpoint's kind."""
        now = self.clock()
        plan = plan_referrals(
            alert, route_decision(self.routes, alert), id_key=self.hub.id_key(), now=now
        )
        referrals = list(plan.referrals)
        # Rendered before anything is stored: a render that fails leaves no referral in the
        # ledger saying it is queued (the alert is parked instead: on_dead_letter).
        payloads = {
            referral.endpoint: self.renderers[referral.endpoint](
                alert, self.recipients[referral.endpoint], self.hub
            )
            for referral in referrals
        }
        jobs = [
            Outgoing(
                exchange=WORK_EXCHANGE,
                routing_key=delivery_queue(referral.endpoint),
                body=payloads[referral.endpoint].body,
                headers={
                    H_ALERT_ID: alert.alert_id,
                    H_ENDPOINT: referral.endpoint,
                    H_BUNDLE_ID: referral.bundle_id,
                    H_REQUEST_ID: referral.request_id,
                },
                message_id=referral.bundle_id,
                correlation_id=alert.alert_id,
                content_type=payloads[referral.endpoint].content_type,
            )
            for referral in referrals
        ]
        return _Routing(alert=alert, plan=plan, at=now, jobs=jobs)

    def _routed(self, routing: _Routing, *, marked: bool = False) -> None:
        """Once every delivery job is confirmed: the alert marked routed (a redelivered alert
        not yet routed has its jobs published again; receivers de-duplicate), unless the
        caller `marked` it with others already."""
        alert, plan, decision = routing.alert, routing.plan, routing.plan.decision
        if not marked:
            self.ledger.mark_routed(
                alert.alert_id, rule=plan.rule, referrals=list(plan.referrals), at=routing.at
            )
        self.journey.record(
            "referral_routed",
            alert_id=alert.alert_id,
            detail={
                "rules": list(decision.rules),
                "endpoints": list(decision.endpoints),
                "used_default": decision.used_default,
            },
        )
        log.info(
            "alert_routed",
            alert_id=alert.alert_id,
            endpoints=list(decision.endpoints),
            rules=list(decision.rules),
        )

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        self.rejections.rejected(envelope, error)

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        self.rejections.parked(envelope, error)
