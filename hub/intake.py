"""Intake stage: an alert off hub.alerts.<kind> → validated → ledger (idempotent) → one
delivery job per chosen endpoint, durably queued, before the alert is acked. Each job's body is
the payload rendered for its endpoint's kind (FHIR Bundle, HL7 v2 REF^I12, webhook JSON), so the
delivery stage sends exactly those bytes on every attempt.

Also answers every invalid alert with a `rejected` outcome to the organisation named by the
routing key. Logs ids and counts only.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import timedelta

from hub.adapters.rabbitmq import OUTCOMES_EXCHANGE, WORK_EXCHANGE, delivery_queue
from hub.change_contracts import MESSAGE_TYPES, message_id_field, parse_justice_message
from hub.contracts import is_safe_id, peek_identity, peek_message_id, peek_schema
from hub.delivery import H_BUNDLE_ID, H_REQUEST_ID
from hub.errors import AlertConflict, HubError, InvalidMessage
from hub.follow_ups import FollowUpIntake
from hub.log import bind_correlation, get_logger
from hub.messages import (
    Alert,
    FollowUp,
    HubIdentity,
    OutcomeStatus,
    Problem,
    Recipient,
    ReferralOutcome,
    SourceKind,
)
from hub.outcomes import OUTCOME_NAMESPACE, publish_outcome
from hub.pipeline import (
    H_ALERT_ID,
    H_ATTEMPTS,
    H_ENDPOINT,
    H_ORIGINAL_ROUTING_KEY,
    Clock,
    header_str,
)
from hub.ports import (
    AlertFacts,
    AlertState,
    Envelope,
    JourneyEvent,
    Ledger,
    Metrics,
    Publisher,
    ReferralRecord,
    Render,
    RenderFollowUp,
    Seen,
)
from hub.routes.rules import RouteTable, select_endpoints
from hub.transforms.alert_to_referral import referral_ids

log = get_logger("hub.intake")


def source_from_routing_key(envelope: Envelope) -> tuple[str, str | None]:
    """(kind, organisation code) from `<custody|court>.<org>.<type>`, the routing key the
    publisher used (kept in a header across retries and replays). Kind falls back to the
    queue it arrived on."""
    key = header_str(envelope.headers, H_ORIGINAL_ROUTING_KEY) or envelope.routing_key
    parts = key.split(".")
    queue_kind = envelope.queue.rsplit(".", 1)[-1]
    kind = parts[0] if parts and parts[0] in ("custody", "court") else queue_kind
    org = parts[1] if len(parts) >= 3 and parts[1] else None
    return kind, org


def message_type_from_routing_key(envelope: Envelope) -> str | None:
    """The routing key's last word (`identification`, `update`, `cancellation`, `consent`), or
    None when the key does not have the documented three parts."""
    key = header_str(envelope.headers, H_ORIGINAL_ROUTING_KEY) or envelope.routing_key
    parts = key.split(".")
    return parts[2] if len(parts) == 3 and parts[2] else None


class IntakeStage:
    name = "intake"

    def __init__(
        self,
        *,
        ledger: Ledger,
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
    ) -> None:
        """`recipients` and `renderers` are keyed by endpoint name; a renderer is the endpoint
        kind's pure render function (bootstrap picks it from the configuration)."""
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
                vulnerability_types=tuple(sorted({str(v.type) for v in alert.vulnerabilities})),
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
            allowed = self.source_users.get(organisation, ())
            if envelope.user_id not in allowed:
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
            for ids in [referral_ids(alert.alert_id, endpoint)]
        ]
        rule = ",".join(decision.rules)
        self.ledger.mark_routed(
            alert.alert_id, rule=rule, referrals=referrals, at=now, routed=False
        )
        for referral in referrals:
            endpoint = referral.endpoint
            payload = self.renderers[endpoint](alert, self.recipients[endpoint], self.hub)
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
        peeked_id, reference = peek_identity(envelope.body)
        alert_id = error.alert_id or peeked_id or envelope.message_id or "unknown"
        schema = peek_schema(envelope.body)
        rejected_id = (
            peek_message_id(envelope.body, message_id_field(schema))
            if schema in MESSAGE_TYPES
            else None
        ) or (
            envelope.message_id if envelope.message_id and is_safe_id(envelope.message_id) else None
        )
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
            outcome_id=str(
                uuid.uuid5(
                    OUTCOME_NAMESPACE,
                    f"{alert_id}|rejected|{hashlib.sha256(envelope.body).hexdigest()}",
                )
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
        pass

    def _event(self, alert_id: str, event: str, detail: dict[str, object]) -> None:
        self.ledger.add_event(
            JourneyEvent(
                alert_id=alert_id, at=self.clock(), stage=self.name, event=event, detail=detail
            )
        )


__all__ = ["IntakeStage", "OUTCOMES_EXCHANGE", "source_from_routing_key"]
