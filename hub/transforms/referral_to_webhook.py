"""Alert → a small plain-JSON referral for social-care systems (the `webhook` endpoint kind), and
the HMAC-SHA256 signature that travels with it.

Pure: no clock, no uuid4, no environment, no I/O, no logging. The ids are the FHIR route's uuid5
ids and the times come from the alert, so a retry sends the same bytes (and signature) again.

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

from hub.messages import Alert, HubIdentity, Recipient
from hub.transforms.alert_to_referral import VULNERABILITY_LABELS, referral_ids

SCHEMA = "ld.webhook-referral/1"
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
    person, consent, source = alert.person, alert.consent, alert.source
    return {
        "schema": SCHEMA,
        "referral_id": referral_ids(alert.alert_id, recipient.endpoint).bundle_id,
        "alert_id": alert.alert_id,
        "sent_at": _instant(alert.sent_at),
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
        "consent": {
            "status": str(consent.status),
            "share_with_justice": consent.share_with_justice,
            "recorded_at": _instant(consent.recorded_at),
        },
    }


def webhook_bytes(document: dict[str, Any]) -> bytes:
    """The wire form: canonical JSON (sorted keys, no spaces), UTF-8."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signature(body: bytes, key: bytes) -> str:
    """The X-Hub-Signature-256 value: `sha256=` and the hex HMAC-SHA256 of exactly `body`."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
