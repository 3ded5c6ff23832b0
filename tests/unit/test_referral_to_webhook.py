"""referral_to_webhook: the plain-JSON social-care referral, its stable bytes, and the HMAC
signature a receiver checks."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest

from hub.contracts.alert import parse_alert
from hub.endpoints.webhook import render_webhook_json
from hub.messages import Alert, HubIdentity, Recipient
from hub.transforms.referral_ids import referral_ids
from hub.transforms.referral_to_webhook import (
    SCHEMA,
    build_webhook_referral,
    signature,
    webhook_bytes,
)
from tests.fixtures.alerts import (
    DEFAULT_SENT_AT,
    NHS_NUMBER_CUSTODY,
    REMOVE,
    court_alert,
    custody_alert,
    to_body,
)
from tests.fixtures.ids import ID_KEY

pytestmark = pytest.mark.unit

HUB = HubIdentity(
    ods_code="X26HUB", name="L&D Hub", endpoint="https://ld-hub.example.nhs.uk/fhir", ids=ID_KEY
)
ASC = Recipient(endpoint="leeds-asc", ods_code="XLA01", organisation_name="Leeds Adult Social Care")
SENT_AT = datetime.fromisoformat(DEFAULT_SENT_AT.replace("Z", "+00:00"))


def alert_from(document: dict[str, object]) -> Alert:
    return parse_alert(to_body(document), content_type="application/json", now=SENT_AT)


def test_a_custody_alert_becomes_the_documented_json() -> None:
    alert = alert_from(custody_alert(alert_id="0b7d9c1e-3f7a-4c55-9a39-6f0b1c2d3e4f"))

    doc = build_webhook_referral(alert, recipient=ASC, hub=HUB)

    assert doc == {
        "schema": SCHEMA,
        "referral_id": referral_ids(ID_KEY, alert.alert_id, "leeds-asc").bundle_id,
        "alert_id": "0b7d9c1e-3f7a-4c55-9a39-6f0b1c2d3e4f",
        "sent_at": "2026-11-23T09:30:00Z",
        "reference": "WY-26-004517",
        "source": {
            "kind": "custody",
            "organisation": {"code": "WYP", "name": "West Yorkshire Police"},
        },
        "sender": {"ods_code": "X26HUB", "name": "L&D Hub"},
        "recipient": {
            "endpoint": "leeds-asc",
            "ods_code": "XLA01",
            "organisation_name": "Leeds Adult Social Care",
        },
        "urgency": "urgent",
        "pathway": "adult",
        "vulnerabilities": [
            {
                "type": "mental_health",
                "label": doc["vulnerabilities"][0]["label"],
                "detail": "Reports low mood and hearing voices since May.",
            },
            {
                "type": "alcohol_misuse",
                "label": doc["vulnerabilities"][1]["label"],
                "detail": "Drinks daily; showed signs of withdrawal.",
            },
            {
                "type": "unstable_accommodation",
                "label": doc["vulnerabilities"][2]["label"],
                "detail": "Sofa-surfing for three weeks.",
            },
        ],
        "person": {
            "name": {"given": ["Jordan", "Lee"], "family": "Testperson"},
            "date_of_birth": "1991-04-17",
            "nhs_number": NHS_NUMBER_CUSTODY,
        },
        "consent": {
            "status": "given",
            "share_with_justice": True,
            "recorded_at": "2026-11-23T09:12:00Z",
        },
    }
    assert all(v["label"] for v in doc["vulnerabilities"])


def test_what_a_social_care_front_door_does_not_need_is_left_out() -> None:
    alert = alert_from(court_alert())

    text = webhook_bytes(build_webhook_referral(alert, recipient=ASC, hub=HUB)).decode()

    for absent in ("pnc", "address", "Courtroom 4", "CLD-0112", "female", "cells"):
        assert absent not in text


def test_a_person_without_an_nhs_number_has_null() -> None:
    alert = alert_from(court_alert(person={"nhs_number": REMOVE}))

    doc = build_webhook_referral(alert, recipient=ASC, hub=HUB)

    assert doc["person"]["nhs_number"] is None


def test_the_same_alert_renders_the_same_bytes_every_time() -> None:
    document = custody_alert()
    first = render_webhook_json(alert_from(document), ASC, HUB)
    again = render_webhook_json(alert_from(document), ASC, HUB)

    assert first == again
    assert first.content_type == "application/json"
    assert json.loads(first.body)["alert_id"] == document["alert_id"]


def test_the_signature_is_the_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"alert_id":"a"}'
    key = b"shared-secret"

    value = signature(body, key)

    assert value == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert value == "sha256=" + hmac.new(b"shared-secret", body, "sha256").hexdigest()


def test_any_change_to_the_body_or_key_changes_the_signature() -> None:
    body = webhook_bytes(
        build_webhook_referral(alert_from(custody_alert()), recipient=ASC, hub=HUB)
    )

    assert signature(body, b"k") != signature(body + b" ", b"k")
    assert signature(body, b"k") != signature(body, b"K")
