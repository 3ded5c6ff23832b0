"""referral_to_webhook's follow-up events: golden `ld.webhook-event/1` documents, the referral they
name, their own message ids, and no personal data where a follow-up carries none."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.endpoints.webhook import render_webhook_followup
from hub.messages import CancellationReason, ConsentStatus, FollowUp, HubIdentity, Recipient
from hub.transforms.referral_ids import followup_ids
from hub.transforms.referral_to_webhook import (
    EVENT_SCHEMA,
    build_webhook_followup,
    build_webhook_referral,
    signature,
    webhook_bytes,
)
from tests.fixtures.alerts import custody_alert
from tests.fixtures.followup_messages import (
    ALERT_ID,
    alert_from,
    cancellation,
    consent_update,
    original_alert,
    personal_data,
    update,
)
from tests.fixtures.ids import ID_KEY

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
HUB = HubIdentity(
    ods_code="X26HUB", name="L&D Hub", endpoint="https://ld-hub.example.nhs.uk/fhir", ids=ID_KEY
)
ASC = Recipient(endpoint="leeds-asc", ods_code="XLA01", organisation_name="Leeds Adult Social Care")
# A receiver whose name shares no word with the fixture person's address (which says "Leeds").
YORK = Recipient(endpoint="york-asc", ods_code="XYO01", organisation_name="York Social Care")

GOLDEN_CASES: dict[str, Callable[[], FollowUp]] = {
    "webhook_event_referral_updated": update,
    "webhook_event_referral_cancelled": lambda: cancellation(CancellationReason.RAISED_IN_ERROR),
    "webhook_event_consent_updated": consent_update,
}


def build(follow_up: FollowUp, recipient: Recipient = ASC) -> dict[str, Any]:
    return build_webhook_followup(follow_up, recipient=recipient, hub=HUB)


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_each_follow_up_event_matches_its_golden_file(name: str) -> None:
    document = build(GOLDEN_CASES[name]())
    pretty = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(pretty, encoding="utf-8")
    assert pretty == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("make", "event"),
    [
        (update, "referral.updated"),
        (cancellation, "referral.cancelled"),
        (consent_update, "consent.updated"),
    ],
)
def test_an_event_names_the_original_referral_and_has_its_own_message_id(
    make: Callable[[], FollowUp], event: str
) -> None:
    follow_up = make()
    original = build_webhook_referral(original_alert(), recipient=ASC, hub=HUB)

    document = build(follow_up)

    assert (document["schema"], document["event"]) == (EVENT_SCHEMA, event)
    assert document["referral_id"] == original["referral_id"]
    assert (
        document["message_id"]
        == followup_ids(ID_KEY, ALERT_ID, "leeds-asc", follow_up.change_id).bundle_id
    )
    assert document["message_id"] != original["referral_id"]
    other = build(replace(follow_up, change_id=str(uuid.uuid4())))
    assert other["message_id"] != document["message_id"]
    assert other["referral_id"] == document["referral_id"]
    for same in ("alert_id", "reference", "source", "sender", "recipient"):
        assert document[same] == original[same]
    assert document["sent_at"] == "2026-11-23T11:45:00Z"


def test_an_update_carries_the_new_content_exactly_as_a_referral_document_would() -> None:
    follow_up = update(urgency="emergency", vulnerabilities=[{"type": "autism", "detail": "x"}])
    assert follow_up.alert is not None
    referral = build_webhook_referral(follow_up.alert, recipient=ASC, hub=HUB)

    document = build(follow_up)

    for field in ("urgency", "pathway", "vulnerabilities", "person", "consent"):
        assert document[field] == referral[field]
    assert document["urgency"] == "emergency"
    assert document["reason"] == "new_information"


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (CancellationReason.PERSON_RELEASED, "revoked"),
        (CancellationReason.NO_LONGER_REQUIRED, "revoked"),
        (CancellationReason.RAISED_IN_ERROR, "entered-in-error"),
    ],
)
def test_a_cancellation_says_why_and_the_status_the_referral_is_left_in(
    reason: CancellationReason, status: str
) -> None:
    document = build(cancellation(reason))

    assert (document["reason"], document["status"]) == (str(reason), status)
    assert {"person", "consent", "vulnerabilities"}.isdisjoint(document)


def test_a_consent_update_carries_only_the_new_consent() -> None:
    document = build(consent_update(ConsentStatus.LACKS_CAPACITY, share_with_justice=True))

    assert document["consent"] == {
        "status": "lacks_capacity",
        "share_with_justice": True,
        "recorded_at": "2026-11-23T11:30:00Z",
    }
    assert {"person", "vulnerabilities", "reason", "status"}.isdisjoint(document)


_PERSONAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=12).map(
    lambda s: f"Zx{s}"
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    given_names=st.lists(_PERSONAL, min_size=1, max_size=3),
    family=_PERSONAL,
    lines=st.lists(_PERSONAL, min_size=1, max_size=4),
    detail=_PERSONAL,
    reason=st.sampled_from(CancellationReason),
    status=st.sampled_from(ConsentStatus),
    share=st.booleans(),
)
def test_no_personal_data_reaches_a_cancellation_or_consent_event_even_if_an_alert_is_attached(
    given_names: list[str],
    family: str,
    lines: list[str],
    detail: str,
    reason: CancellationReason,
    status: ConsentStatus,
    share: bool,
) -> None:
    person = {
        "name": {"given": given_names, "family": family},
        "address": {"lines": lines, "postcode": "LS11 5ZZ"},
    }
    document = custody_alert(alert_id=ALERT_ID, person=person)
    document["vulnerabilities"][0]["detail"] = detail
    alert = alert_from(document)

    for follow_up in (
        cancellation(reason, alert=alert),
        consent_update(status, share_with_justice=share, alert=alert),
    ):
        body = render_webhook_followup(follow_up, YORK, HUB).body.decode("utf-8")
        assert [value for value in personal_data(alert) if value in body] == []


def test_the_same_follow_up_renders_the_same_signed_bytes_every_time() -> None:
    first = render_webhook_followup(cancellation(), ASC, HUB)
    again = render_webhook_followup(cancellation(), ASC, HUB)

    assert first == again
    assert first.content_type == "application/json"
    assert first.body == webhook_bytes(json.loads(first.body))
    assert signature(first.body, b"k") == signature(again.body, b"k")


@pytest.mark.parametrize(
    "follow_up",
    [replace(update(), alert=None), replace(cancellation(), cancellation=None)],
)
def test_a_follow_up_missing_what_its_kind_carries_is_refused(follow_up: FollowUp) -> None:
    with pytest.raises(ValueError, match="carries no"):
        build(follow_up)
