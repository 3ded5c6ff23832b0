"""Intake stage: an alert off hub.alerts.<kind> → validated → ledger (idempotent) → one
delivery job per chosen endpoint, durably queued, before the alert is acked. Each job's body is
the payload rendered for its endpoint's kind (FHIR Bundle, HL7 v2 REF^I12, webhook JSON), so the
delivery stage sends exactly those bytes on every attempt.

Also answers every invalid alert with a `rejected` outcome to the organisation named by the
routing key. Logs ids and counts only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import timedelta

from hub.contracts.follow_ups import MESSAGE_TYPES, message_id_field, parse_justice_message
from hub.contracts.identifiers import is_safe_id
from hub.contracts.peek import peek_identity, peek_message_id, peek_schema
from hub.contracts.problems import ROOT
from hub.errors import AlertConflict, HubError, InvalidMessage, PermanentError
from hub.log import bind_correlation, get_logger
from hub.messages import (
    ALERT_SCHEMA,
    Alert,
    FollowUp,
    HubIdentity,
    OutcomeStatus,
    Problem,
    Recipient,
    ReferralOutcome,
    SourceKind,
)
from hub.pipeline import Clock
from hub.ports import IntakeLedger, Metrics, Publisher, Render, RenderFollowUp
from hub.records import AlertFacts, AlertState, JourneyEvent, ReferralRecord, Seen
from hub.routes.rules import RouteTable, select_endpoints
from hub.security.ids import IdKey
from hub.stages.follow_ups import FollowUpIntake
from hub.stages.outcomes import publish_outcome
from hub.transforms.alert_to_referral import referral_ids
from hub.wire import (
    ALERTS_EXCHANGE,
    H_ALERT_ID,
    H_ATTEMPTS,
    H_BUNDLE_ID,
    H_ENDPOINT,
    H_ORIGINAL_ROUTING_KEY,
    H_ORIGINAL_USER_ID,
    H_REQUEST_ID,
    OUTCOMES_EXCHANGE,
    WORK_EXCHANGE,
    Envelope,
    delivery_queue,
    header_str,
)

log = get_logger("hub.intake")

_ORG_CODE = re.compile(r"[A-Z0-9]{3,10}")  # as the contracts' source.organisation.code


def _safe_message_id(envelope: Envelope) -> str | None:
    """The AMQP message_id, only when it is shaped like an id (it is echoed to the sender and
    kept in the ledger)."""
    message_id = envelope.message_id
    return message_id if isinstance(message_id, str) and is_safe_id(message_id) else None


def publisher_routing_key(envelope: Envelope) -> str | None:
    """The routing key the broker delivered from justice.alerts: this delivery's own when it
    came from there; for a retry or replay (back through hub.work) the one the hub recorded in
    its sealed headers the first time (hub.security.provenance removed any it did not write).
    None when
    neither: a message that never came through justice.alerts."""
    if envelope.exchange == ALERTS_EXCHANGE:
        return envelope.routing_key
    return header_str(envelope.headers, H_ORIGINAL_ROUTING_KEY)


def publisher_user_id(envelope: Envelope) -> str | None:
    """The AMQP user_id RabbitMQ verified when the message came in from justice.alerts."""
    if envelope.exchange == ALERTS_EXCHANGE:
        return envelope.user_id
    return header_str(envelope.headers, H_ORIGINAL_USER_ID)


def source_from_routing_key(envelope: Envelope) -> tuple[str, str | None]:
    """(kind, organisation code) from `<custody|court>.<org>.<type>`, the routing key the
    broker delivered (publisher_routing_key). Kind falls back to the queue it arrived on."""
    key = publisher_routing_key(envelope) or ""
    parts = key.split(".")
    queue_kind = envelope.queue.rsplit(".", 1)[-1]
    kind = parts[0] if parts and parts[0] in ("custody", "court") else queue_kind
    org = parts[1] if len(parts) >= 3 and parts[1] else None
    return kind, org


def message_type_from_routing_key(envelope: Envelope) -> str | None:
    """The routing key's last word (`identification`, `update`, `cancellation`, `consent`), or
    None when the key does not have the documented three parts."""
    key = publisher_routing_key(envelope) or ""
    parts = key.split(".")
    return parts[2] if len(parts) == 3 and parts[2] else None


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
        self.follow_ups = FollowUpIntake(
            ledger=ledger,
            publisher=publisher,
            routes=routes,
            recipients=recipients,
            hub=hub,
            clock=clock,
            renderers=self.renderers,
            followup_renderers=dict(followup_renderers or {}),
        )

    def process(self, envelope: Envelope) -> None:
        now = self.clock()
        if publisher_routing_key(envelope) is None:
            # On an alert queue without having come through justice.alerts, and without the
            # hub's own record of where it did: no one can say who sent it. Parked, unanswered.
            raise PermanentError(
                f"message on {envelope.queue} did not come from {ALERTS_EXCHANGE} and carries "
                "no routing key the hub recorded: its sender is unknown",
                stage=self.name,
            )
        kind, org = source_from_routing_key(envelope)
        if self.metrics and H_ATTEMPTS not in envelope.headers:
            # First attempts only: a retried or replayed alert was counted when it arrived.
            self.metrics.alert_received(kind)
        message = parse_justice_message(
            envelope.body,
            content_type=envelope.content_type,
            now=now,
            max_bytes=self.max_body_bytes,
            expected_kind=kind,
            message_type=message_type_from_routing_key(envelope),
        )
        bind_correlation(message.alert_id)
        if isinstance(message, FollowUp):
            organisation = message.source.organisation.code
            self._check_envelope(envelope, message.alert_id, message.change_id, organisation, org)
            self.follow_ups.process(envelope, message)
            return
        alert = message
        self._check_envelope(
            envelope, alert.alert_id, alert.alert_id, alert.source.organisation.code, org
        )
        seen, record = self.ledger.record_alert(
            AlertFacts(
                alert_id=alert.alert_id,
                body_sha256=hashlib.sha256(envelope.body).hexdigest(),
                source_kind=str(alert.source.kind),
                organisation_code=alert.source.organisation.code,
                reference=alert.source.reference,
                pathway=str(alert.pathway),
                urgency=str(alert.urgency),
                consent_status=str(alert.consent.status),
                share_with_justice=alert.consent.share_with_justice,
                received_at=now,
                consent_recorded_at=alert.consent.recorded_at,
            )
        )
        if seen is Seen.CONFLICT:
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
        if seen is Seen.DUPLICATE and record.state is AlertState.ROUTED:
            log.info("alert_duplicate_ignored", alert_id=alert.alert_id)
            self._event(alert.alert_id, "alert_duplicate_ignored", {})
            return
        if seen is Seen.NEW:
            self._event(
                alert.alert_id,
                "alert_validated",
                {"kind": str(alert.source.kind), "organisation": org or ""},
            )
        self._route(alert)

    def _check_envelope(
        self,
        envelope: Envelope,
        alert_id: str,
        message_id: str,
        organisation: str,
        org: str | None,
    ) -> None:
        """`message_id` is the body's own id (alert_id, update_id…); `organisation` the body's
        source organisation; `org` the routing key's."""
        problems = []
        if envelope.exchange == ALERTS_EXCHANGE and any(
            str(k).lower().startswith(("x-death", "x-first-death", "x-last-death"))
            for k in envelope.headers
        ):
            # Only the broker writes these, and only when it dead-letters a message, which it
            # never then delivers from justice.alerts: a publisher's would be believed later.
            problems.append(
                Problem(
                    "$headers", "x-death headers are the broker's; a publisher may not set them"
                )
            )
        if envelope.message_id and envelope.message_id != message_id:
            problems.append(
                Problem("$message_id", "AMQP message_id does not match the message's own id")
            )
        if org is not None and org != organisation:
            problems.append(
                Problem(
                    "source.organisation.code", "does not match the organisation in the routing key"
                )
            )
        if self.source_users:
            # RabbitMQ guarantees user_id equals the publishing connection's user, so this is
            # who really sent it; a mismatch is a spoofing attempt, parked like any bad alert.
            # Checked against the routing key's organisation (the broker's topic permissions
            # hold it to the user's own): what the body claims was compared with it above.
            allowed = self.source_users.get(org, ()) if org is not None else ()
            if publisher_user_id(envelope) not in allowed:
                problems.append(
                    Problem(
                        "$user_id",
                        "publisher is not allowed to send alerts for this organisation "
                        "(AMQP user_id missing or not mapped to it in hub.yaml sources)",
                    )
                )
        if problems:
            raise InvalidMessage(problems, alert_id=alert_id, stage=self.name)

    def _route(self, alert: Alert) -> None:
        now = self.clock()
        decision = select_endpoints(
            self.routes,
            source_kind=str(alert.source.kind),
            organisation=alert.source.organisation.code,
            vulnerabilities=[str(v.type) for v in alert.vulnerabilities],
            pathway=str(alert.pathway),
            urgency=str(alert.urgency),
        )
        referrals = [
            ReferralRecord(
                bundle_id=ids.bundle_id,
                alert_id=alert.alert_id,
                endpoint=endpoint,
                request_id=ids.request_id,
                due_at=now + timedelta(seconds=decision.service_levels[endpoint]),
            )
            for endpoint in decision.endpoints
            for ids in [referral_ids(self.hub.id_key(), alert.alert_id, endpoint)]
        ]
        rule = ",".join(decision.rules)
        # Rendered before anything is stored: a render that fails leaves no referral in the
        # ledger saying it is queued (the alert is parked instead: on_dead_letter).
        payloads = {
            referral.endpoint: self.renderers[referral.endpoint](
                alert, self.recipients[referral.endpoint], self.hub
            )
            for referral in referrals
        }
        self.ledger.mark_routed(
            alert.alert_id, rule=rule, referrals=referrals, at=now, routed=False
        )
        for referral in referrals:
            endpoint = referral.endpoint
            payload = payloads[endpoint]
            self.publisher.publish(
                exchange=WORK_EXCHANGE,
                routing_key=delivery_queue(endpoint),
                body=payload.body,
                headers={
                    H_ALERT_ID: alert.alert_id,
                    H_ENDPOINT: endpoint,
                    H_BUNDLE_ID: referral.bundle_id,
                    H_REQUEST_ID: referral.request_id,
                },
                message_id=referral.bundle_id,
                correlation_id=alert.alert_id,
                content_type=payload.content_type,
            )
        self.ledger.mark_routed(alert.alert_id, rule=rule, referrals=referrals, at=now)
        self._event(
            alert.alert_id,
            "referral_routed",
            {
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
        kind, org = source_from_routing_key(envelope)
        org = org if org is not None and _ORG_CODE.fullmatch(org) else None
        peeked_id, reference = peek_identity(envelope.body)
        alert_id = error.alert_id or peeked_id or _safe_message_id(envelope) or "unknown"
        schema = peek_schema(envelope.body)
        rejected_id = (
            peek_message_id(envelope.body, message_id_field(schema))
            if schema in MESSAGE_TYPES
            else None
        ) or _safe_message_id(envelope)
        now = self.clock()
        self.ledger.record_rejection(
            alert_id=alert_id,
            source_kind=kind,
            organisation_code=org or "unknown",
            reference=reference,
            problems=error.problems,
            at=now,
        )
        outcome = ReferralOutcome(
            outcome_id=self.ids.outcome_id(
                alert_id, hashlib.sha256(envelope.body).hexdigest(), str(OutcomeStatus.REJECTED)
            ),
            alert_id=alert_id,
            reference=reference,
            source_kind=SourceKind(kind) if kind in ("custody", "court") else SourceKind.CUSTODY,
            organisation_code=org or "unknown",
            status=OutcomeStatus.REJECTED,
            at=now,
            reasons=error.problems,
            message_id=rejected_id,
        )
        publish_outcome(self.publisher, outcome)
        if self.metrics:
            self.metrics.alert_rejected(kind)
        self._event(
            alert_id,
            "alert_rejected",
            {
                "problems": [p.as_dict() for p in error.problems],
                "conflict": isinstance(error, AlertConflict),
            },
        )
        log.warning(
            "alert_rejected",
            alert_id=alert_id,
            problem_count=len(error.problems),
            paths=[p.path for p in error.problems],
        )

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        """An alert the hub validated but could not process (a crash, retries exhausted) is
        marked parked, so the ledger never says referrals are on their way when none will
        be sent, and its sender gets a `rejected` outcome naming what happened. Invalid
        messages are answered by on_rejected; a follow-up's alert stays as it was."""
        if isinstance(error, InvalidMessage) or peek_schema(envelope.body) != ALERT_SCHEMA:
            return
        alert_id, reference = peek_identity(envelope.body)
        if alert_id is None:
            return
        body_sha256 = hashlib.sha256(envelope.body).hexdigest()
        record = self.ledger.get_alert(alert_id)
        if record is not None and (
            record.state is AlertState.ROUTED or record.facts.body_sha256 != body_sha256
        ):
            return  # its referrals are queued already, or the id is another alert's
        now = self.clock()
        cause = type(error.__cause__ or error).__name__  # a class name: no values
        problem = Problem(
            ROOT,
            f"the hub could not process this alert ({cause}); it is parked for the hub's "
            "operators, who will replay or discard it: do not send it again",
        )
        if record is not None:
            kind, org = record.facts.source_kind, record.facts.organisation_code
            self.ledger.mark_parked(alert_id, at=now)
        else:  # it failed before the ledger recorded it
            kind, routed_org = source_from_routing_key(envelope)
            org = routed_org if routed_org and _ORG_CODE.fullmatch(routed_org) else "unknown"
            self.ledger.record_rejection(
                alert_id=alert_id,
                source_kind=kind,
                organisation_code=org,
                reference=reference,
                problems=[problem],
                at=now,
            )
        outcome = ReferralOutcome(
            outcome_id=self.ids.outcome_id(alert_id, body_sha256, str(OutcomeStatus.REJECTED)),
            alert_id=alert_id,
            reference=reference,
            source_kind=SourceKind(kind) if kind in ("custody", "court") else SourceKind.CUSTODY,
            organisation_code=org,
            status=OutcomeStatus.REJECTED,
            at=now,
            reasons=(problem,),
            message_id=alert_id,
        )
        publish_outcome(self.publisher, outcome)
        self._event(alert_id, "alert_parked", {"error_class": cause})
        log.error("alert_parked", alert_id=alert_id, error_class=cause)

    def _event(self, alert_id: str, event: str, detail: dict[str, object]) -> None:
        self.ledger.add_event(
            JourneyEvent(
                alert_id=alert_id, at=self.clock(), stage=self.name, event=event, detail=detail
            )
        )


__all__ = ["IntakeStage", "OUTCOMES_EXCHANGE", "source_from_routing_key"]
