"""Outcome stage: a service's BaRS response (queued by the API) → justice status → consent
filter → `ld.referral-outcome/1` on justice.outcomes. Also the shared outcome publisher.

Outcome ids are keyed (hub.security.ids, HUB_ID_KEY) over what they answer, so a redelivered
response yields the same outcome and the justice side can de-duplicate on `outcome_id`, yet the
id says nothing about the referral (or the service) it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from hub.contracts.outcome import validate_outcome
from hub.errors import HubError, InvalidMessage, PermanentError
from hub.log import bind_correlation, get_logger
from hub.messages import (
    OutcomeStatus,
    Problem,
    Recipient,
    ReferralOutcome,
    ServiceRef,
    SourceKind,
)
from hub.pipeline import Clock, publish_each
from hub.ports import Publisher
from hub.ports_ledger import OutcomeLedger
from hub.records import AlertRecord, ReferralRecord
from hub.security.ids import IdKey
from hub.stages.journey import Journey
from hub.store_rules.attempts import NOT_FROM_THE_SERVICE
from hub.transforms.consent_filter import justice_view
from hub.transforms.response_to_outcome import parse_service_response
from hub.wire import OUTCOMES_EXCHANGE, Envelope, Outgoing

log = get_logger("hub.outcomes")


def publish_outcome(publisher: Publisher, outcome: ReferralOutcome) -> None:
    publish_each(publisher, [outcome_message(outcome)])


def outcome_message(outcome: ReferralOutcome) -> Outgoing:
    """The outcome as it goes to justice.outcomes; PermanentError if it breaks its contract."""
    body = outcome.to_json_dict()
    problems = validate_outcome(body)
    if problems:  # a bug on our side: never send the justice side something off-contract
        raise PermanentError(
            "outgoing outcome breaks its own schema: "
            + "; ".join(f"{p.path}: {p.problem}" for p in problems)
        )
    return Outgoing(
        exchange=OUTCOMES_EXCHANGE,
        routing_key=outcome.routing_key,
        body=json.dumps(body, separators=(",", ":"), sort_keys=True).encode(),
        message_id=outcome.outcome_id,
        correlation_id=outcome.alert_id,
    )


def build_outcome(
    *,
    alert: AlertRecord,
    referral: ReferralRecord,
    recipient: Recipient,
    status: OutcomeStatus,
    at: datetime,
    answers: str,
    ids: IdKey,
    recommendation: str | None = None,
    referred_to: str | None = None,
    note: str | None = None,
) -> ReferralOutcome:
    """One justice outcome for one referral, already reduced by the consent filter.
    `answers` names what this outcome answers (the response message id, or 'received').
    The outcome stage's functional core (pure): return_outcome is its shell."""
    view = justice_view(
        consent_status=alert.facts.consent_status,
        share_with_justice=alert.facts.share_with_justice,
        service_code=recipient.ods_code,
        service_name=recipient.organisation_name,
        recommendation=recommendation,
        referred_to=referred_to,
        note=note,
    )
    return ReferralOutcome(
        outcome_id=ids.outcome_id(referral.bundle_id, answers, str(status)),
        alert_id=referral.alert_id,
        reference=alert.facts.reference,
        source_kind=SourceKind(alert.facts.source_kind),
        organisation_code=alert.facts.organisation_code,
        status=status,
        at=at,
        service=ServiceRef(code=view.service_code, name=view.service_name),
        detail=view.detail,
    )


def return_outcome(
    *,
    ledger: OutcomeLedger,
    publisher: Publisher,
    referral: ReferralRecord,
    recipient: Recipient,
    journey: Journey,
    status: OutcomeStatus,
    at: datetime,
    answers: str,
    ids: IdKey,
    recommendation: str | None = None,
    referred_to: str | None = None,
    note: str | None = None,
) -> ReferralOutcome:
    """Build one outcome through the consent filter, publish it (confirmed), and record it in
    the ledger with its journey event the first time it is sent."""
    alert = ledger.get_alert(referral.alert_id)
    if alert is None:
        raise PermanentError(
            "referral without its alert in the ledger",
            alert_id=referral.alert_id,
            stage=journey.stage,
        )
    outcome = build_outcome(
        alert=alert,
        referral=referral,
        recipient=recipient,
        status=status,
        at=at,
        answers=answers,
        ids=ids,
        recommendation=recommendation,
        referred_to=referred_to,
        note=note,
    )
    publish_outcome(publisher, outcome)
    with ledger.unit_of_work():  # the outcome and its event: one commit
        record_returned(ledger, referral, outcome, journey)
    return outcome


def record_returned(
    ledger: OutcomeLedger, referral: ReferralRecord, outcome: ReferralOutcome, journey: Journey
) -> None:
    if ledger.record_outcome(
        outcome_id=outcome.outcome_id,
        alert_id=referral.alert_id,
        bundle_id=referral.bundle_id,
        status=str(outcome.status),
        at=journey.clock(),
    ):
        outcome_returned(journey, referral, outcome)


def outcome_returned(journey: Journey, referral: ReferralRecord, outcome: ReferralOutcome) -> None:
    """The journey event of an outcome sent to the justice side for the first time."""
    journey.record(
        "outcome_returned",
        alert_id=referral.alert_id,
        endpoint=referral.endpoint,
        detail={
            "status": str(outcome.status),
            "outcome_id": outcome.outcome_id,
            "detail_shared": bool(outcome.detail),
        },
    )


def resolves_overdue(status: str) -> bool:
    """Whether an outcome of this status answers an overdue referral: only one the service
    sent does (not the hub's own `received`, `overdue`, `rejected`…)."""
    return status not in NOT_FROM_THE_SERVICE


def resolve_overdue(
    ledger: OutcomeLedger, referral: ReferralRecord, *, status: str, journey: Journey
) -> None:
    """After a service's outcome: if its referral was reported overdue, record (once) that it
    is answered now, for operators."""
    if not resolves_overdue(status):
        return
    resolved = ledger.resolve_overdue(referral.alert_id, referral.endpoint, at=journey.clock())
    if resolved is None:
        return
    journey.record(
        "referral_overdue_resolved",
        alert_id=resolved.alert_id,
        endpoint=resolved.endpoint,
        detail={"bundle_id": resolved.bundle_id, "status": status},
    )
    log.info(
        "referral_overdue_resolved",
        alert_id=resolved.alert_id,
        endpoint=resolved.endpoint,
        bundle_id=resolved.bundle_id,
        status=status,
    )


class OutcomeStage:
    name = "outcome"

    def __init__(
        self,
        *,
        ledger: OutcomeLedger,
        publisher: Publisher,
        recipients: Mapping[str, Recipient],
        clock: Clock,
        ids: IdKey,
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.recipients = recipients
        self.clock = clock
        self.ids = ids
        self.journey = Journey(ledger=ledger, clock=clock, stage=self.name)

    def process(self, envelope: Envelope) -> None:
        try:
            bundle = json.loads(envelope.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidMessage([Problem("$", "not a JSON document")], stage=self.name) from exc
        except RecursionError:  # nested deeper than json can follow: unreadable, not a crash
            raise InvalidMessage(
                [Problem("$", "not a JSON document: nested too deeply")], stage=self.name
            ) from None
        response = parse_service_response(bundle)
        referral = self.ledger.get_referral(response.response_to)
        if referral is None:
            raise InvalidMessage(
                [Problem("MessageHeader.response.identifier", "no referral with this Bundle id")],
                stage=self.name,
            )
        bind_correlation(referral.alert_id)
        outcome = return_outcome(
            ledger=self.ledger,
            publisher=self.publisher,
            referral=referral,
            recipient=self.recipients[referral.endpoint],
            journey=self.journey,
            status=response.status,
            at=response.at,
            answers=response.message_id,
            ids=self.ids,
            recommendation=response.recommendation,
            referred_to=response.referred_to,
            note=response.note,
        )
        log.info(
            "outcome_returned",
            alert_id=referral.alert_id,
            endpoint=referral.endpoint,
            status=str(outcome.status),
            detail_shared=bool(outcome.detail),
        )
        resolve_overdue(self.ledger, referral, status=str(outcome.status), journey=self.journey)

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        log.warning(
            "service_response_rejected",
            problem_count=len(error.problems),
            paths=[p.path for p in error.problems],
        )

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        pass
