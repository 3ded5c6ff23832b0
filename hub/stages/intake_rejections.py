"""Intake's answers to messages it cannot take: an invalid alert or follow-up gets a `rejected`
outcome naming its problems; an alert the hub validated but could not process is parked and its
sender told so. Used by hub/stages/intake.py; logs ids and counts only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from hub.contracts.follow_ups import MESSAGE_TYPES, message_id_field
from hub.contracts.peek import peek_identity, peek_message_id, peek_schema
from hub.contracts.problems import ROOT
from hub.errors import AlertConflict, HubError, InvalidMessage
from hub.log import get_logger
from hub.messages import ALERT_SCHEMA, OutcomeStatus, Problem, ReferralOutcome, SourceKind
from hub.pipeline import Clock
from hub.ports import Publisher
from hub.ports_ledger import IntakeLedger
from hub.records import AlertState
from hub.security.ids import IdKey
from hub.stages.intake_plan import (
    ORG_CODE,
    publisher_routing_key,
    safe_message_id,
    source_from_routing_key,
)
from hub.stages.journey import Journey
from hub.stages.outcomes import publish_outcome
from hub.wire import Envelope

log = get_logger("hub.intake")


@dataclass(frozen=True, slots=True)
class IntakeRejections:
    """What IntakeStage.on_rejected and on_dead_letter do. `ids` keys the outcomes' ids."""

    ledger: IntakeLedger
    publisher: Publisher
    clock: Clock
    ids: IdKey
    journey: Journey

    def rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        """An invalid message: its rejection recorded and a `rejected` outcome, with its
        problems, sent to the organisation named by the routing key."""
        kind, org = source_from_routing_key(envelope)
        org = org if org is not None and ORG_CODE.fullmatch(org) else None
        peeked_id, reference = peek_identity(envelope.body)
        alert_id = error.alert_id or peeked_id or safe_message_id(envelope) or "unknown"
        schema = peek_schema(envelope.body)
        rejected_id = (
            peek_message_id(envelope.body, message_id_field(schema))
            if schema in MESSAGE_TYPES
            else None
        ) or safe_message_id(envelope)
        now = self.clock()
        self.ledger.record_rejection(
            alert_id=alert_id,
            source_kind=kind,
            organisation_code=org or "unknown",
            reference=reference,
            problems=error.problems,
            at=now,
        )
        self._send_rejected(
            alert_id=alert_id,
            body_sha256=hashlib.sha256(envelope.body).hexdigest(),
            reference=reference,
            kind=kind,
            org=org or "unknown",
            at=now,
            reasons=error.problems,
            message_id=rejected_id,
        )
        self.journey.record(
            "alert_rejected",
            alert_id=alert_id,
            label=kind,
            detail={
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

    def parked(self, envelope: Envelope, error: HubError) -> None:
        """An alert the hub validated but could not process (a crash, retries exhausted) is
        marked parked, so the ledger never says referrals are on their way when none will
        be sent, and its sender gets a `rejected` outcome naming what happened. Invalid
        messages are answered by `rejected`; a follow-up's alert stays as it was."""
        if isinstance(error, InvalidMessage) or peek_schema(envelope.body) != ALERT_SCHEMA:
            return
        if publisher_routing_key(envelope) is None:
            return  # no one can say who sent it (hub.security.provenance): parked, unanswered
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
            org = routed_org if routed_org and ORG_CODE.fullmatch(routed_org) else "unknown"
            self.ledger.record_rejection(
                alert_id=alert_id,
                source_kind=kind,
                organisation_code=org,
                reference=reference,
                problems=[problem],
                at=now,
            )
        self._send_rejected(
            alert_id=alert_id,
            body_sha256=body_sha256,
            reference=reference,
            kind=kind,
            org=org,
            at=now,
            reasons=(problem,),
            message_id=alert_id,
        )
        self.journey.record("alert_parked", alert_id=alert_id, detail={"error_class": cause})
        log.error("alert_parked", alert_id=alert_id, error_class=cause)

    def _send_rejected(
        self,
        *,
        alert_id: str,
        body_sha256: str,
        reference: str | None,
        kind: str,
        org: str,
        at: datetime,
        reasons: tuple[Problem, ...],
        message_id: str | None,
    ) -> None:
        outcome = ReferralOutcome(
            outcome_id=self.ids.outcome_id(alert_id, body_sha256, str(OutcomeStatus.REJECTED)),
            alert_id=alert_id,
            reference=reference,
            source_kind=SourceKind(kind) if kind in ("custody", "court") else SourceKind.CUSTODY,
            organisation_code=org,
            status=OutcomeStatus.REJECTED,
            at=at,
            reasons=reasons,
            message_id=message_id,
        )
        publish_outcome(self.publisher, outcome)
