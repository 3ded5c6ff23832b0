"""Intake of follow-ups: an alert update, cancellation or consent update → checked against the
alert the ledger holds → applied (consent and cancellation take effect at once) → one message per
service that has the referral, durably queued on its delivery queue, before the follow-up is acked.

An update re-runs the routing rules on the new content: a service it now selects for the first
time is sent the referral itself. Services no longer selected keep theirs (the justice side
cancels explicitly). Logs ids and counts only.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping

from hub.contracts.follow_ups import message_id_field
from hub.errors import AlertConflict, InvalidMessage, TransientError
from hub.log import get_logger
from hub.messages import (
    ChangeKind,
    FollowUp,
    HubIdentity,
    Problem,
    Recipient,
)
from hub.pipeline import Clock
from hub.ports import Publisher, Render, RenderFollowUp
from hub.ports_ledger import FollowUpLedger
from hub.records import (
    AlertRecord,
    ChangeFacts,
    Payload,
    ReferralRecord,
)
from hub.routes.rules import RouteTable
from hub.stages.follow_ups_plan import (
    ChangeAction,
    follow_up_event,
    follow_up_to_tell,
    plan_change,
    plan_follow_up,
)
from hub.stages.intake_plan import route_decision
from hub.stages.journey import Journey
from hub.transforms.consent_rules import consent_facts
from hub.transforms.followup_to_bundle import CANCELLED_STATUS
from hub.wire import (
    H_ALERT_ID,
    H_BUNDLE_ID,
    H_ENDPOINT,
    H_REQUEST_ID,
    WORK_EXCHANGE,
    Envelope,
    delivery_queue,
)

log = get_logger("hub.intake")

STAGE = "intake"


class FollowUpIntake:
    def __init__(
        self,
        *,
        ledger: FollowUpLedger,
        publisher: Publisher,
        routes: RouteTable,
        recipients: Mapping[str, Recipient],
        hub: HubIdentity,
        clock: Clock,
        renderers: Mapping[str, Render],
        followup_renderers: Mapping[str, RenderFollowUp],
        journey: Journey | None = None,
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.routes = routes
        self.recipients = recipients
        self.hub = hub
        self.clock = clock
        self.renderers = renderers
        self.followup_renderers = followup_renderers
        self.journey = journey or Journey(ledger=ledger, clock=clock, stage=STAGE)

    def process(self, envelope: Envelope, follow_up: FollowUp) -> None:
        record = self._alert_for(follow_up)
        if record.cancelled and follow_up.kind is not ChangeKind.CANCELLATION:
            raise self._invalid(
                follow_up,
                Problem("alert_id", "the alert was cancelled: no further changes are accepted"),
            )
        seen, change = self.ledger.record_change(
            ChangeFacts(
                change_id=follow_up.change_id,
                alert_id=follow_up.alert_id,
                kind=str(follow_up.kind),
                body_sha256=hashlib.sha256(envelope.body).hexdigest(),
                received_at=self.clock(),
            )
        )
        id_field = message_id_field(follow_up.schema)
        action = plan_change(seen, change.state, record.state)
        if action is ChangeAction.CONFLICT:
            raise AlertConflict(
                [
                    Problem(
                        id_field,
                        "already received with a different body (or for another alert); send "
                        f"each change under a new {id_field}",
                    )
                ],
                alert_id=follow_up.alert_id,
                stage=STAGE,
            )
        if action is ChangeAction.DUPLICATE:
            log.info("change_duplicate_ignored", alert_id=follow_up.alert_id, change=id_field)
            return
        if action is ChangeAction.PARKED:
            raise self._invalid(
                follow_up,
                Problem(
                    "alert_id",
                    "the alert was not accepted: the hub could not process it and parked it "
                    "for its operators",
                ),
            )
        if action is ChangeAction.WAIT:
            # A crash between recording the alert and queueing its referrals: the alert's own
            # redelivery finishes that; this follow-up waits for it rather than overtaking it.
            raise TransientError("the alert is not routed yet; retry", alert_id=follow_up.alert_id)
        self._apply(follow_up, record)

    def _alert_for(self, follow_up: FollowUp) -> AlertRecord:
        record = self.ledger.get_alert(follow_up.alert_id)
        if record is None:
            raise self._invalid(
                follow_up,
                Problem(
                    "alert_id",
                    "no alert with this alert_id has been accepted (it was rejected, or never "
                    "arrived): send the alert first",
                ),
            )
        facts, source = record.facts, follow_up.source
        problems = []
        if (facts.source_kind, facts.organisation_code) != (
            str(source.kind),
            source.organisation.code,
        ):
            problems.append(
                Problem("source.organisation.code", "is not the organisation that sent the alert")
            )
        elif facts.reference != source.reference:
            problems.append(Problem("source.reference", "is not the alert's reference"))
        if problems:
            raise self._invalid(follow_up, *problems)
        return record

    def _invalid(self, follow_up: FollowUp, *problems: Problem) -> InvalidMessage:
        return InvalidMessage(list(problems), alert_id=follow_up.alert_id, stage=STAGE)

    def _apply(self, follow_up: FollowUp, record: AlertRecord) -> None:
        now = self.clock()
        referrals = self.ledger.referrals_for(follow_up.alert_id)
        plan = plan_follow_up(
            follow_up,
            referrals=referrals,
            alert_cancelled=bool(record.cancelled),
            endpoints=self.recipients,
            decision=None
            if follow_up.alert is None
            else route_decision(self.routes, follow_up.alert),
            id_key=self.hub.id_key(),
            now=now,
        )
        consent = follow_up.consent
        messages = plan.messages
        apply = functools.partial(
            self.ledger.apply_change,
            follow_up.change_id,
            referrals=messages,
            at=now,
            consent=None if consent is None else consent_facts(consent),
            cancelled=None
            if follow_up.cancellation is None
            else CANCELLED_STATUS[follow_up.cancellation],
            urgency=None if follow_up.alert is None else str(follow_up.alert.urgency),
            pathway=None if follow_up.alert is None else str(follow_up.alert.pathway),
        )
        # Applied before anything is queued: a withdrawn consent limits outcomes from now on.
        in_force = apply(applied=False)
        # The services are told the consent the ledger now applies, never one that lost to it.
        told = follow_up_to_tell(follow_up, in_force)
        for job in plan.jobs:
            endpoint = job.message.endpoint
            render = (
                self._followup_payload(endpoint)
                if job.is_follow_up
                else self._referral_payload(endpoint)
            )
            self._publish(job.message, render(told))
        # The consent was applied above, once: applying it again here could undo a consent
        # another consumer applied in between (and has already told the services).
        apply(applied=True, consent=None)
        event, detail = follow_up_event(follow_up, plan, in_force)
        self.journey.record(event, alert_id=follow_up.alert_id, detail=detail, at=now)
        log.info(event, alert_id=follow_up.alert_id, messages=len(messages), added=len(plan.added))

    def _followup_payload(self, endpoint: str) -> Callable[[FollowUp], Payload]:
        render = self.followup_renderers[endpoint]
        return lambda follow_up: render(follow_up, self.recipients[endpoint], self.hub)

    def _referral_payload(self, endpoint: str) -> Callable[[FollowUp], Payload]:
        render = self.renderers[endpoint]

        def payload(follow_up: FollowUp) -> Payload:
            assert follow_up.alert is not None  # only an update selects new services
            return render(follow_up.alert, self.recipients[endpoint], self.hub)

        return payload

    def _publish(self, message: ReferralRecord, payload: Payload) -> None:
        self.publisher.publish(
            exchange=WORK_EXCHANGE,
            routing_key=delivery_queue(message.endpoint),
            body=payload.body,
            headers={
                H_ALERT_ID: message.alert_id,
                H_ENDPOINT: message.endpoint,
                H_BUNDLE_ID: message.bundle_id,
                H_REQUEST_ID: message.request_id,
            },
            message_id=message.bundle_id,
            correlation_id=message.alert_id,
            content_type=payload.content_type,
        )
