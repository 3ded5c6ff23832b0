"""The keyed ids of a referral and of its follow-ups: each FHIR resource's id, the Bundle id and
the X-Request-Id, HMAC-keyed (hub.security.ids) over the alert id, the endpoint and the
resource's `Role`, so a redelivery gets the same ids and another service cannot compute them.

Pure: no clock, no uuid4, no I/O; the key comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hub.security.ids import IdKey


class Role(StrEnum):
    """What an id names; part of the keyed id's input, so never rename a member's value."""

    BUNDLE = "bundle"
    MESSAGE_HEADER = "message-header"
    SERVICE_REQUEST = "service-request"
    PATIENT = "patient"
    CONSENT = "consent"
    ENCOUNTER = "encounter"
    SOURCE_ORG = "organization-source"
    RECEIVER_ORG = "organization-receiver"
    HUB_ORG = "organization-hub"
    REQUEST = "x-request-id"


@dataclass(frozen=True, slots=True)
class ReferralIds:
    """The ids the delivery stage needs: stable for one alert and endpoint."""

    bundle_id: str
    service_request_id: str
    request_id: str  # X-Request-Id of the first delivery; retries reuse it (BaRS)


def resource_id(key: IdKey, alert_id: str, endpoint: str, role: str) -> str:
    return key.keyed_uuid("referral", alert_id, endpoint, role)


def referral_ids(key: IdKey, alert_id: str, endpoint: str) -> ReferralIds:
    return ReferralIds(
        bundle_id=resource_id(key, alert_id, endpoint, Role.BUNDLE),
        service_request_id=resource_id(key, alert_id, endpoint, Role.SERVICE_REQUEST),
        request_id=resource_id(key, alert_id, endpoint, Role.REQUEST),
    )


def followup_ids(key: IdKey, alert_id: str, endpoint: str, change_id: str) -> ReferralIds:
    """Ids of a follow-up message (update, cancellation, consent update) to one endpoint: its own
    Bundle id and a new X-Request-Id (BaRS: a subsequent message has a new X-Request-Id and the
    same X-Correlation-Id), and the ServiceRequest id of the referral it is about."""
    return ReferralIds(
        bundle_id=resource_id(key, alert_id, endpoint, f"{change_id}|{Role.BUNDLE}"),
        service_request_id=resource_id(key, alert_id, endpoint, Role.SERVICE_REQUEST),
        request_id=resource_id(key, alert_id, endpoint, f"{change_id}|{Role.REQUEST}"),
    )
