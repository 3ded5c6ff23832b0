"""The hub's shared vocabulary: the contracts as frozen dataclasses and closed sets.

Pure data: nothing here does I/O, reads the clock or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from hub.security.ids import IdKey

ALERT_SCHEMA = "ld.identification-alert/1"
OUTCOME_SCHEMA = "ld.referral-outcome/1"
UPDATE_SCHEMA = "ld.alert-update/1"
CANCELLATION_SCHEMA = "ld.alert-cancellation/1"
CONSENT_UPDATE_SCHEMA = "ld.consent-update/1"


class SourceKind(StrEnum):
    CUSTODY = "custody"
    COURT = "court"


class Pathway(StrEnum):
    ADULT = "adult"
    YOUTH = "youth"


class Urgency(StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class ConsentStatus(StrEnum):
    GIVEN = "given"
    REFUSED = "refused"
    NOT_ASKED = "not_asked"
    LACKS_CAPACITY = "lacks_capacity"


class VulnerabilityType(StrEnum):
    MENTAL_HEALTH = "mental_health"
    LEARNING_DISABILITY = "learning_disability"
    AUTISM = "autism"
    SUBSTANCE_MISUSE = "substance_misuse"
    ALCOHOL_MISUSE = "alcohol_misuse"
    PHYSICAL_HEALTH = "physical_health"
    UNSTABLE_ACCOMMODATION = "unstable_accommodation"
    SELF_HARM_SUICIDE_RISK = "self_harm_suicide_risk"
    DOMESTIC_ABUSE = "domestic_abuse"
    FINANCIAL_HARDSHIP = "financial_hardship"
    SPEECH_LANGUAGE_COMMUNICATION = "speech_language_communication"


class OutcomeStatus(StrEnum):
    RECEIVED = "received"
    REJECTED = "rejected"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    SCREENED = "screened"
    ASSESSED = "assessed"
    REFERRED_ON = "referred_on"
    ATTENDED = "attended"
    DID_NOT_ATTEND = "did_not_attend"
    CLOSED = "closed"
    OVERDUE = "overdue"


@dataclass(frozen=True, slots=True)
class Organisation:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class ReportedBy:
    role: str
    id: str


@dataclass(frozen=True, slots=True)
class Source:
    kind: SourceKind
    organisation: Organisation
    location: str
    reference: str
    reported_by: ReportedBy


@dataclass(frozen=True, slots=True)
class PersonName:
    given: tuple[str, ...]
    family: str


@dataclass(frozen=True, slots=True)
class Address:
    lines: tuple[str, ...]
    postcode: str


@dataclass(frozen=True, slots=True)
class Person:
    name: PersonName
    date_of_birth: date
    sex: str
    nhs_number: str | None = None
    pnc_id: str | None = None
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class Vulnerability:
    type: VulnerabilityType
    detail: str


@dataclass(frozen=True, slots=True)
class Consent:
    status: ConsentStatus
    share_with_justice: bool
    recorded_at: datetime
    recorded_by: str


@dataclass(frozen=True, slots=True)
class Hearing:
    at: datetime
    court: str


@dataclass(frozen=True, slots=True)
class Alert:
    """A validated `ld.identification-alert/1`."""

    alert_id: str
    sent_at: datetime
    source: Source
    person: Person
    pathway: Pathway
    vulnerabilities: tuple[Vulnerability, ...]
    urgency: Urgency
    consent: Consent
    hearing: Hearing | None = None


class UpdateReason(StrEnum):
    """Why the justice side sent an `ld.alert-update/1`."""

    NEW_INFORMATION = "new_information"
    DETAILS_CORRECTED = "details_corrected"


class CancellationReason(StrEnum):
    """Why the justice side cancelled an alert; decides the ServiceRequest status the services
    are sent (BaRS cancellation: `revoked`, or `entered-in-error` for an alert raised in error)."""

    PERSON_RELEASED = "person_released"
    NO_LONGER_REQUIRED = "no_longer_required"
    RAISED_IN_ERROR = "raised_in_error"


class ChangeKind(StrEnum):
    """The follow-up messages a justice system may send about an alert it already sent."""

    UPDATE = "update"
    CANCELLATION = "cancellation"
    CONSENT = "consent"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Who sent a follow-up message and their own reference for the alert (no personal data)."""

    kind: SourceKind
    organisation: Organisation
    reference: str


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A validated update, cancellation or consent update for an earlier alert.

    `change_id` is the message's own id (its idempotency key and AMQP message_id). An update
    carries the alert's whole new content in `alert` (same alert_id, `sent_at` = the update's);
    a cancellation only its `cancellation` reason; a consent update only the new `consent`.
    The hub keeps no personal data between messages, so what a follow-up does not carry cannot
    be rendered: a cancellation or consent Bundle names the patient by the referral's id only.
    """

    kind: ChangeKind
    change_id: str
    alert_id: str
    sent_at: datetime
    source: SourceRef
    alert: Alert | None = None  # UPDATE
    update_reason: UpdateReason | None = None  # UPDATE
    cancellation: CancellationReason | None = None  # CANCELLATION
    consent: Consent | None = None  # CONSENT (and UPDATE: alert.consent)

    @property
    def schema(self) -> str:
        return {
            ChangeKind.UPDATE: UPDATE_SCHEMA,
            ChangeKind.CANCELLATION: CANCELLATION_SCHEMA,
            ChangeKind.CONSENT: CONSENT_UPDATE_SCHEMA,
        }[self.kind]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a message: where (a dotted field path, `$` for the whole body)
    and what. Never quotes the offending value: it may be personal data."""

    path: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem}


@dataclass(frozen=True, slots=True)
class ServiceRef:
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class ReferralOutcome:
    """A `ld.referral-outcome/1` on its way to the justice side."""

    outcome_id: str
    alert_id: str
    reference: str | None
    source_kind: SourceKind
    organisation_code: str
    status: OutcomeStatus
    at: datetime
    service: ServiceRef | None = None
    reasons: tuple[Problem, ...] = ()
    detail: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None  # rejected: the id of the message rejected (alert or follow-up)

    @property
    def routing_key(self) -> str:
        return f"{self.source_kind}.{self.organisation_code}.{self.status}"

    def to_json_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "schema": OUTCOME_SCHEMA,
            "outcome_id": self.outcome_id,
            "alert_id": self.alert_id,
            "reference": self.reference,
            "source": {"kind": str(self.source_kind), "organisation_code": self.organisation_code},
            "status": str(self.status),
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "service": (
                {"code": self.service.code, "name": self.service.name} if self.service else None
            ),
        }
        if self.message_id:
            body["message_id"] = self.message_id
        if self.reasons:
            body["reasons"] = [p.as_dict() for p in self.reasons]
        if self.detail:
            body["detail"] = dict(self.detail)
        return body


@dataclass(frozen=True, slots=True)
class HubIdentity:
    """Who the hub says it is in the FHIR it sends (MessageHeader.source / sender)."""

    ods_code: str
    name: str
    endpoint: str  # the hub's own $process-message base URL, for replies
    # The key every id the hub sends out is made with (hub.security.ids): bootstrap adds it from
    # HUB_ID_KEY. Not part of what the hub "is" for comparison, and never shown.
    ids: IdKey | None = field(default=None, compare=False, repr=False)

    def id_key(self) -> IdKey:
        if self.ids is None:
            raise ValueError("HubIdentity without its id key: referral ids cannot be made")
        return self.ids


@dataclass(frozen=True, slots=True)
class Recipient:
    """A receiving service, as the transform needs it (from the endpoint configuration)."""

    endpoint: str  # the configured endpoint name, e.g. "leeds-ld"
    ods_code: str
    organisation_name: str
    service_id: str | None = None  # DoS service id when known (MessageHeader.destination)


@dataclass(frozen=True, slots=True)
class ServiceResponse:
    """A BaRS servicerequest-response, reduced to what the hub acts on (see
    transforms/response_to_outcome.py). Clinical fields are kept apart so the consent
    filter can drop them."""

    response_to: str  # MessageHeader.response.identifier = the referral Bundle id
    message_id: str  # the response Bundle's own id
    sender_ods: str
    status: OutcomeStatus
    at: datetime
    recommendation: str | None = None  # text meant for the court / custody officer
    referred_to: str | None = None  # onward service type, for referred_on
    note: str | None = None  # clinical note: never leaves the health side without consent
