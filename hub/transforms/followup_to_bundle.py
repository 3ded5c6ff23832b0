"""Follow-ups → BaRS message Bundles: an alert update, a cancellation or a consent update for a
referral the service already received.

Pure: no clock, uuid4, environment, I/O or logging; ids are keyed (followup_ids), times come from
the message. BaRS has no L&D use case, so these are BaRS-shaped (reference notes §1.3, §1.5):

| follow-up        | MessageHeader.reason | definition                                   | Bundle holds |
|------------------|----------------------|----------------------------------------------|--------------|
| update           | update               | bars-message-servicerequest-request-referral | the whole referral again, new content (build_referral) |
| cancellation     | delete               | bars-message-servicerequest-request-cancelled| ServiceRequest (status revoked / entered-in-error, reasonCode.text), Patient, Organizations |
| consent update   | update               | bars-message-servicerequest-request-referral | ServiceRequest (active, supportingInfo → Consent), Patient, Consent, Organizations |

- Every follow-up has its own Bundle and MessageHeader id and a new X-Request-Id; the ServiceRequest,
  Patient, Consent and Organization ids are the referral's own, so the receiver updates what it
  holds (BaRS: a subsequent message has a new X-Request-Id and the same X-Correlation-Id).
- Cancellation reason: BaRS 1.5.0's MessageDefinition table says `delete`, its narrative `update`;
  we follow the table. `person_released` and `no_longer_required` → `revoked` (circumstances
  changed); `raised_in_error` → `entered-in-error`.
- The hub keeps no personal data between messages, and a cancellation or consent update carries
  none: their Patient holds only the referral's own Patient id (the receiver matches it to the one
  it holds). An update carries the person again, so its Patient is complete.
"""

from __future__ import annotations

from typing import Any

from hub.messages import (
    CancellationReason,
    ChangeKind,
    FollowUp,
    HubIdentity,
    Recipient,
)
from hub.transforms.alert_to_referral import (
    build_referral,
    consent_resource,
    message_header,
    organization_resource,
)
from hub.transforms.fhir_vocabulary import (
    ALERT_ID_SYSTEM,
    BARS_BUNDLE_PROFILE,
    REFERRAL_CODE,
    SR_CATEGORY_SYSTEM,
    UKCORE_PROFILE,
    coding,
    fhir_instant,
    fhir_meta,
    reference,
)
from hub.transforms.referral_ids import Role, followup_ids, resource_id

CANCELLATION_DEFINITION = (
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled"
)
CANCELLED_STATUS: dict[CancellationReason, str] = {
    CancellationReason.PERSON_RELEASED: "revoked",
    CancellationReason.NO_LONGER_REQUIRED: "revoked",
    CancellationReason.RAISED_IN_ERROR: "entered-in-error",
}
CANCELLATION_TEXT: dict[CancellationReason, str] = {
    CancellationReason.PERSON_RELEASED: "Cancelled by the referrer: the person has been released",
    CancellationReason.NO_LONGER_REQUIRED: "Cancelled by the referrer: no longer required",
    CancellationReason.RAISED_IN_ERROR: "Cancelled by the referrer: the alert was raised in error",
}


def build_followup(
    follow_up: FollowUp, *, recipient: Recipient, hub: HubIdentity
) -> dict[str, Any]:
    """The message Bundle one recipient is sent for one follow-up, as a JSON-ready dict."""
    key = hub.id_key()
    ids = {role: resource_id(key, follow_up.alert_id, recipient.endpoint, role) for role in Role}
    message = followup_ids(key, follow_up.alert_id, recipient.endpoint, follow_up.change_id)
    ids[Role.BUNDLE] = message.bundle_id
    ids[Role.MESSAGE_HEADER] = resource_id(
        key, follow_up.alert_id, recipient.endpoint, f"{follow_up.change_id}|{Role.MESSAGE_HEADER}"
    )
    if follow_up.kind is ChangeKind.UPDATE:
        return _update(follow_up, ids, recipient, hub)
    at = fhir_instant(follow_up.sent_at)
    if follow_up.kind is ChangeKind.CANCELLATION:
        header = message_header(
            ids, recipient, hub, at, reason=("delete", "Delete"), definition=CANCELLATION_DEFINITION
        )
        resources = [header, _cancelled_request(follow_up, ids, at), _bare_patient(ids, at)]
    else:
        assert follow_up.consent is not None  # a validated consent update carries one
        header = message_header(ids, recipient, hub, at, reason=("update", "Update"))
        resources = [
            header,
            _active_request(follow_up, ids, at),
            _bare_patient(ids, at),
            consent_resource(follow_up.consent, ids, at),
        ]
    resources += [
        organization_resource(
            ids[Role.SOURCE_ORG],
            follow_up.source.organisation.code,
            follow_up.source.organisation.name,
            at,
        ),
        organization_resource(
            ids[Role.RECEIVER_ORG], recipient.ods_code, recipient.organisation_name, at
        ),
        organization_resource(ids[Role.HUB_ORG], hub.ods_code, hub.name, at),
    ]
    return {
        "resourceType": "Bundle",
        "id": ids[Role.BUNDLE],
        "meta": fhir_meta(BARS_BUNDLE_PROFILE, at),
        "type": "message",
        "timestamp": at,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def _update(
    follow_up: FollowUp, ids: dict[Role, str], recipient: Recipient, hub: HubIdentity
) -> dict[str, Any]:
    assert follow_up.alert is not None  # a validated update carries the alert's new content
    bundle = build_referral(follow_up.alert, recipient=recipient, hub=hub)
    bundle["id"] = ids[Role.BUNDLE]
    # build_referral puts the MessageHeader first (BaRS); swap in the update's own.
    header = message_header(ids, recipient, hub, bundle["timestamp"], reason=("update", "Update"))
    bundle["entry"][0] = {"fullUrl": f"urn:uuid:{header['id']}", "resource": header}
    return bundle


def _request_basics(follow_up: FollowUp, ids: dict[Role, str], at: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": ids[Role.SERVICE_REQUEST],
        "meta": fhir_meta(UKCORE_PROFILE + "ServiceRequest", at),
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": follow_up.alert_id}],
        "intent": "plan",
        "category": [{"coding": [coding(SR_CATEGORY_SYSTEM, "referral", "Transfer of Care")]}],
        "code": {"coding": [coding(*REFERRAL_CODE)]},
        "subject": reference(ids[Role.PATIENT]),
        "requester": reference(ids[Role.SOURCE_ORG]),
        "performer": [reference(ids[Role.RECEIVER_ORG])],
    }


def _cancelled_request(follow_up: FollowUp, ids: dict[Role, str], at: str) -> dict[str, Any]:
    assert follow_up.cancellation is not None
    return {
        **_request_basics(follow_up, ids, at),
        "status": CANCELLED_STATUS[follow_up.cancellation],
        # BaRS: reasonCode.text carries the reason, only in cancellations.
        "reasonCode": [{"text": CANCELLATION_TEXT[follow_up.cancellation]}],
    }


def _active_request(follow_up: FollowUp, ids: dict[Role, str], at: str) -> dict[str, Any]:
    return {
        **_request_basics(follow_up, ids, at),
        "status": "active",
        "supportingInfo": [reference(ids[Role.CONSENT])],
    }


def _bare_patient(ids: dict[Role, str], at: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": ids[Role.PATIENT],
        "meta": fhir_meta(UKCORE_PROFILE + "Patient", at),
    }
