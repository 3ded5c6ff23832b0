"""Alert → a small plain-JSON referral for social-care systems (the `webhook` endpoint kind), its
follow-ups (update, cancellation, consent update) → event documents, and the HMAC-SHA256
signature that travels with each.

Pure: no clock, no uuid4, no environment, no I/O, no logging. The ids are the FHIR route's keyed
ids and the times come from the alert or follow-up, so a retry sends the same bytes (and
signature) again.

Not FHIR: a flat document a council's case-management system can take without a FHIR library.
Mapping (the review checklist), schema `ld.webhook-referral/1`:

| alert field / argument      | JSON path                                                        |
|-----------------------------|------------------------------------------------------------------|
| fixed                       | `schema` "ld.webhook-referral/1"                                 |
| referral_ids().bundle_id    | `referral_id`: the id the FHIR Bundle and HL7 RF1-6 carry, so    |
|                             | every route names one referral                                   |
| alert_id                    | `alert_id` (also the X-Correlation-Id header)                    |
| sent_at                     | `sent_at` (UTC, `Z`)                                             |
| source.kind                 | `source.kind` (custody / court)                                  |
| source.organisation         | `source.organisation.code` / `.name`                             |
| source.reference            | `reference` (custody record / court case number)                 |
| HubIdentity                 | `sender.ods_code` / `.name`                                      |
| Recipient                   | `recipient.endpoint` / `.ods_code` / `.organisation_name`        |
| urgency                     | `urgency` (routine / urgent / emergency, as sent)                |
| pathway                     | `pathway` (adult / youth)                                        |
| vulnerabilities[]           | `vulnerabilities[]`: `type`, `label` (VULNERABILITY_LABELS),     |
|                             | `detail` (as sent, may be empty)                                 |
| person.name                 | `person.name.given[]` / `.family`                                |
| person.date_of_birth        | `person.date_of_birth` (YYYY-MM-DD)                              |
| person.nhs_number           | `person.nhs_number`, null when absent                            |
| consent.status              | `consent.status` (given / refused / not_asked / lacks_capacity)  |
| consent.share_with_justice  | `consent.share_with_justice`                                     |
| consent.recorded_at         | `consent.recorded_at` (UTC, `Z`)                                 |
| person.sex / pnc_id /       | not mapped: a social-care front door triages on the above; the   |
| address, hearing, location, | FHIR route carries the rest                                      |
| reported_by, recorded_by    |                                                                  |

Follow-ups (update, cancellation, consent update of a referral already sent), schema
`ld.webhook-event/1`, one document per follow-up and recipient:

| follow-up field / argument  | JSON path                                                        |
|-----------------------------|------------------------------------------------------------------|
| fixed                       | `schema` "ld.webhook-event/1"                                    |
| kind                        | `event`: update → "referral.updated", cancellation →             |
|                             | "referral.cancelled", consent → "consent.updated"                |
| followup_ids().bundle_id    | `message_id`: this document's own id (the follow-up's FHIR       |
|                             | Bundle id); its X-Request-Id is new, its X-Correlation-Id the    |
|                             | alert id                                                         |
| referral_ids().bundle_id    | `referral_id`: the ORIGINAL referral's id, as its                |
|                             | `ld.webhook-referral/1` carried it: how the receiver finds it    |
| alert_id, sent_at,          | `alert_id`, `sent_at`, `reference`, `source`, `sender`,          |
| source, HubIdentity,        | `recipient`, as in the referral document                         |
| Recipient                   |                                                                  |
| update: update_reason       | `reason` (new_information / details_corrected)                   |
| update: alert               | `urgency`, `pathway`, `vulnerabilities`, `person`, `consent`:    |
|                             | the whole new content, mapped exactly as the referral document   |
| cancellation                | `reason` (person_released / no_longer_required /                 |
|                             | raised_in_error) and `status`, the FHIR ServiceRequest.status it |
|                             | leads to (revoked / entered-in-error; followup_terms)            |
| consent update: consent     | `consent` {status, share_with_justice, recorded_at} as in the    |
|                             | referral document                                                |
| change_id, recorded_by      | not mapped (`message_id` is derived from change_id)              |

A cancellation or consent update carries no person: the hub keeps no personal data between
messages, and these follow-ups bring none.

Wire form: canonical JSON (sorted keys, no spaces, UTF-8). The receiver checks
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the exact body bytes>` with the shared key
(`signature`), comparing in constant time, before it parses the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from hub.messages import Alert, ChangeKind, Consent, FollowUp, HubIdentity, Recipient, SourceRef
from hub.transforms.fhir_vocabulary import VULNERABILITY_LABELS
from hub.transforms.followup_terms import (
    cancellation_reason,
    new_consent,
    updated_alert,
)
from hub.transforms.followup_to_bundle import CANCELLED_STATUS
from hub.transforms.referral_ids import followup_ids, referral_ids

SCHEMA = "ld.webhook-referral/1"
EVENT_SCHEMA = "ld.webhook-event/1"
EVENTS = {
    ChangeKind.UPDATE: "referral.updated",
    ChangeKind.CANCELLATION: "referral.cancelled",
    ChangeKind.CONSENT: "consent.updated",
}
# The fields of an update that repeat the referral document's, mapped the same way.
_REFERRAL_CONTENT = ("urgency", "pathway", "vulnerabilities", "person", "consent")
CONTENT_TYPE = "application/json"
SIGNATURE_HEADER = "X-Hub-Signature-256"


def _instant(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValueError("webhook times need a time zone; got a naive datetime")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build_webhook_referral(
    alert: Alert, *, recipient: Recipient, hub: HubIdentity
) -> dict[str, Any]:
    """The webhook document for one alert and one recipient, as a JSON-ready dict."""
    person, source = alert.person, alert.source
    ref = SourceRef(kind=source.kind, organisation=source.organisation, reference=source.reference)
    return {
        "schema": SCHEMA,
        "referral_id": referral_ids(hub.id_key(), alert.alert_id, recipient.endpoint).bundle_id,
        "alert_id": alert.alert_id,
        "sent_at": _instant(alert.sent_at),
        **_parties(ref, recipient=recipient, hub=hub),
        "urgency": str(alert.urgency),
        "pathway": str(alert.pathway),
        "vulnerabilities": [
            {"type": str(v.type), "label": VULNERABILITY_LABELS[v.type], "detail": v.detail}
            for v in alert.vulnerabilities
        ],
        "person": {
            "name": {"given": list(person.name.given), "family": person.name.family},
            "date_of_birth": person.date_of_birth.isoformat(),
            "nhs_number": person.nhs_number,
        },
        "consent": _consent(alert.consent),
    }


def build_webhook_followup(
    follow_up: FollowUp, *, recipient: Recipient, hub: HubIdentity
) -> dict[str, Any]:
    """The `ld.webhook-event/1` document for one follow-up and one recipient."""
    alert_id, endpoint = follow_up.alert_id, recipient.endpoint
    document: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "event": EVENTS[follow_up.kind],
        "message_id": followup_ids(hub.id_key(), alert_id, endpoint, follow_up.change_id).bundle_id,
        "referral_id": referral_ids(hub.id_key(), alert_id, endpoint).bundle_id,
        "alert_id": alert_id,
        "sent_at": _instant(follow_up.sent_at),
        **_parties(follow_up.source, recipient=recipient, hub=hub),
    }
    if follow_up.kind is ChangeKind.UPDATE:
        referral = build_webhook_referral(updated_alert(follow_up), recipient=recipient, hub=hub)
        document.update({key: referral[key] for key in _REFERRAL_CONTENT})
        reason = follow_up.update_reason
        document["reason"] = str(reason) if reason is not None else None
    elif follow_up.kind is ChangeKind.CANCELLATION:
        cancellation = cancellation_reason(follow_up)
        document["reason"] = str(cancellation)
        document["status"] = CANCELLED_STATUS[cancellation]
    else:
        document["consent"] = _consent(new_consent(follow_up))
    return document


def _parties(source: SourceRef, *, recipient: Recipient, hub: HubIdentity) -> dict[str, Any]:
    return {
        "reference": source.reference,
        "source": {
            "kind": str(source.kind),
            "organisation": {"code": source.organisation.code, "name": source.organisation.name},
        },
        "sender": {"ods_code": hub.ods_code, "name": hub.name},
        "recipient": {
            "endpoint": recipient.endpoint,
            "ods_code": recipient.ods_code,
            "organisation_name": recipient.organisation_name,
        },
    }


def _consent(consent: Consent) -> dict[str, Any]:
    return {
        "status": str(consent.status),
        "share_with_justice": consent.share_with_justice,
        "recorded_at": _instant(consent.recorded_at),
    }


def webhook_bytes(document: dict[str, Any]) -> bytes:
    """The wire form: canonical JSON (sorted keys, no spaces), UTF-8."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signature(body: bytes, key: bytes) -> str:
    """The X-Hub-Signature-256 value: `sha256=` and the hex HMAC-SHA256 of exactly `body`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
