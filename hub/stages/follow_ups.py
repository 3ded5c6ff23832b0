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
from dataclasses import replace
from datetime import timedelta

from hub.contracts.follow_ups import message_id_field
from hub.errors import AlertConflict, InvalidMessage, TransientError
from hub.log import get_logger
from hub.messages import (
    Alert,
    ChangeKind,
    FollowUp,
    HubIdentity,
    Problem,
    Recipient,
)
from hub.pipeline import Clock
from hub.ports import FollowUpLedger, Publisher, Render, RenderFollowUp
from hub.records import (
    AlertRecord,
    AlertState,
    ChangeFacts,
    ChangeState,
    ConsentFacts,
    JourneyEvent,
    Payload,
    ReferralRecord,
    Seen,
)
from hub.routes.rules import RouteTable, select_endpoints
from hub.transforms.alert_to_referral import followup_ids, referral_ids
from hub.transforms.consent_rules import consent_facts, consent_to_tell
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
EVENTS = {
    ChangeKind.UPDATE: "alert_updated",
    ChangeKind.CANCELLATION: "alert_cancelled",
    ChangeKind.CONSENT: "consent_updated",
}


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
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.routes = routes
        self.recipients = recipients
        self.hub = hub
        self.clock = clock
        self.renderers = renderers
        self.followup_renderers = followup_renderers

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
        if seen is Seen.CONFLICT:
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
        if seen is Seen.DUPLICATE and change.state is ChangeState.APPLIED:
            log.info("change_duplicate_ignored", alert_id=follow_up.alert_id, change=id_field)
            return
        if record.state is AlertState.PARKED:
            raise self._invalid(
                follow_up,
                Problem(
                    "alert_id",
                    "the alert was not accepted: the hub could not process it and parked it "
                    "for its operators",
                ),
            )
        if record.state is not AlertState.ROUTED:
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
        have = list(dict.fromkeys(r.endpoint for r in referrals if r.kind == "new"))
        if record.cancelled:  # a second cancellation: the services already have the first
            have = []
        jobs: list[tuple[ReferralRecord, Callable[[FollowUp], Payload]]] = []
        for endpoint in have:
            if endpoint not in self.recipients:
                continue  # removed from the configuration since: nothing to send it with
            ids = followup_ids(self.hub.id_key(), follow_up.alert_id, endpoint, follow_up.change_id)
            message = ReferralRecord(
                bundle_id=ids.bundle_id,
                alert_id=follow_up.alert_id,
                endpoint=endpoint,
                request_id=ids.request_id,
                kind=str(follow_up.kind),
                change_id=follow_up.change_id,
            )
            jobs.append((message, self._followup_payload(endpoint)))
        added: dict[str, int] = {}
        if follow_up.alert is not None:
            added = self._newly_selected(follow_up.alert, have)
            for endpoint, service_level in added.items():
                ids = referral_ids(self.hub.id_key(), follow_up.alert_id, endpoint)
                referral = ReferralRecord(
                    bundle_id=ids.bundle_id,
                    alert_id=follow_up.alert_id,
                    endpoint=endpoint,
                    request_id=ids.request_id,
                    due_at=now + timedelta(seconds=service_level),
                )
                jobs.append((referral, self._referral_payload(endpoint)))
        consent = follow_up.consent
        messages = [m for m, _ in jobs]
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
        told = follow_up if in_force is None else _with_consent(follow_up, in_force)
        for message, payload in jobs:
            self._publish(message, payload(told))
        # The consent was applied above, once: applying it again here could undo a consent
        # another consumer applied in between (and has already told the services).
        apply(applied=True, consent=None)
        event = EVENTS[follow_up.kind]
        detail: dict[str, object] = {
            "change_id": follow_up.change_id,
            "endpoints": [m.endpoint for m in messages if m.kind != "new"],
        }
        if added:
            detail["added_endpoints"] = list(added)
        if follow_up.cancellation is not None:
            detail["reason"] = str(follow_up.cancellation)
            detail["status"] = CANCELLED_STATUS[follow_up.cancellation]
        if follow_up.update_reason is not None:
            detail["reason"] = str(follow_up.update_reason)
        if consent is not None and in_force is not None:
            detail["consent_status"] = in_force.status
            detail["share_with_justice"] = in_force.share_with_justice
            if consent_facts(consent) != in_force:
                detail["consent_outranked"] = True
        self.ledger.add_event(
            JourneyEvent(
                alert_id=follow_up.alert_id, at=now, stage=STAGE, event=event, detail=detail
            )
        )
        log.info(event, alert_id=follow_up.alert_id, messages=len(messages), added=len(added))

    def _newly_selected(self, alert: Alert, have: list[str]) -> dict[str, int]:
        """Endpoints the new content selects that have no referral yet, with their service
        levels (seconds)."""
        decision = select_endpoints(
            self.routes,
            source_kind=str(alert.source.kind),
            organisation=alert.source.organisation.code,
            vulnerabilities=[str(v.type) for v in alert.vulnerabilities],
            pathway=str(alert.pathway),
            urgency=str(alert.urgency),
        )
        return {e: decision.service_levels[e] for e in decision.endpoints if e not in have}

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


def _with_consent(follow_up: FollowUp, in_force: ConsentFacts) -> FollowUp:
    """`follow_up` as the services are told it: carrying the consent in force (an update's
    alert too), which is the follow-up's own unless it lost to an earlier-received one."""
    assert follow_up.consent is not None  # the ledger returns a consent only when given one
    consent = consent_to_tell(follow_up.consent, in_force)
    alert = None if follow_up.alert is None else replace(follow_up.alert, consent=consent)
    return replace(follow_up, consent=consent, alert=alert)
