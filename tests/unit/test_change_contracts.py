"""The follow-up contracts: `ld.alert-update/1`, `ld.alert-cancellation/1`, `ld.consent-update/1`
parsed from what a justice system publishes, and refused with every problem named."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.contracts.follow_ups import parse_justice_message
from hub.errors import InvalidMessage
from hub.messages import (
    Alert,
    CancellationReason,
    ChangeKind,
    ConsentStatus,
    FollowUp,
    UpdateReason,
)
from tests.fixtures.alerts import (
    cancellation_of,
    consent_update_of,
    court_alert,
    custody_alert,
    to_body,
    update_of,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LATER = "2026-11-23T11:00:00Z"


def parse(document: dict[str, Any], message_type: str | None = None) -> Alert | FollowUp:
    return parse_justice_message(
        to_body(document), content_type="application/json", now=NOW, message_type=message_type
    )


def problems(document: dict[str, Any], message_type: str | None = None) -> list[tuple[str, str]]:
    with pytest.raises(InvalidMessage) as caught:
        parse(document, message_type)
    return [(p.path, p.problem) for p in caught.value.problems]


def test_the_update_schema_is_the_alert_schema_plus_update_id_and_reason() -> None:
    spec = importlib.util.spec_from_file_location(
        "derive_update_schema", ROOT / "scripts" / "derive_update_schema.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schemas = ROOT / "hub" / "schemas"
    alert = json.loads((schemas / "ld.identification-alert.1.json").read_text("utf-8"))
    shipped = json.loads((schemas / "ld.alert-update.1.json").read_text("utf-8"))
    assert shipped == module.derive(alert), "run scripts/derive_update_schema.py"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("alert-update.json", ChangeKind.UPDATE),
        ("alert-cancellation.json", ChangeKind.CANCELLATION),
        ("consent-update.json", ChangeKind.CONSENT),
    ],
)
def test_the_documented_examples_parse(name: str, kind: ChangeKind) -> None:
    message = parse(json.loads((EXAMPLES / name).read_text("utf-8")))
    assert isinstance(message, FollowUp)
    assert message.kind is kind


def test_an_update_carries_the_whole_new_alert_under_the_same_alert_id() -> None:
    alert = custody_alert()
    message = parse(update_of(alert, sent_at=LATER, urgency="urgent"), "update")

    assert isinstance(message, FollowUp) and message.alert is not None
    assert message.alert.alert_id == message.alert_id == alert["alert_id"]
    assert str(message.alert.urgency) == "urgent"
    assert message.update_reason is UpdateReason.NEW_INFORMATION
    assert message.consent == message.alert.consent


def test_a_cancellation_and_a_consent_update_carry_no_personal_data() -> None:
    alert = custody_alert()
    cancel = parse(cancellation_of(alert, reason="raised_in_error", sent_at=LATER))
    consent = parse(
        consent_update_of(alert, status="refused", share_with_justice=False, sent_at=LATER)
    )

    assert isinstance(cancel, FollowUp) and isinstance(consent, FollowUp)
    assert cancel.cancellation is CancellationReason.RAISED_IN_ERROR
    assert cancel.alert is None and consent.alert is None
    assert consent.consent is not None and consent.consent.status is ConsentStatus.REFUSED


def test_a_message_must_be_routed_under_its_own_type() -> None:
    alert = custody_alert()
    found = problems(cancellation_of(alert, sent_at=LATER), "update")
    assert found == [
        (
            "$",
            "a ld.alert-cancellation/1 message must be published with routing key "
            "<kind>.<organisation>.cancellation, not ….update",
        )
    ]


def test_a_follow_up_is_as_strict_as_an_alert() -> None:
    alert = custody_alert()
    message = cancellation_of(alert, sent_at="2026-11-23T16:00:00Z")  # an hour in the future
    message["reason"] = "bored"
    message["extra"] = 1
    del message["cancellation_id"]

    paths = {path for path, _ in problems(message, "cancellation")}

    assert paths == {"sent_at", "reason", "$", "cancellation_id"}


def test_an_unknown_schema_is_refused_naming_every_supported_one() -> None:
    found = problems({"schema": "ld.alert-update/2", "alert_id": "x"}, "update")
    assert found == [
        (
            "schema",
            "unsupported schema version: supported are ld.identification-alert/1, "
            "ld.alert-update/1, ld.alert-cancellation/1, ld.consent-update/1",
        )
    ]


def test_a_body_without_schema_is_judged_as_its_routing_key_says() -> None:
    message = cancellation_of(custody_alert(), sent_at=LATER)
    del message["schema"]
    message["reason"] = "bored"

    paths = {path for path, _ in problems(message, "cancellation")}

    assert paths == {"schema", "reason"}


# ---- the clock-skew rule: a claimed past moment may not lie ahead of the hub's clock ---------

AHEAD = "2026-11-23T15:04:00Z"  # NOW + 4 minutes: within the allowance
BEYOND = "2026-11-23T15:05:01Z"  # NOW + 5 minutes 1 second
EDGE = "2026-11-23T15:05:00Z"  # NOW + exactly the allowance


def every_justice_message(sent_at: str) -> dict[str, dict[str, Any]]:
    alert = custody_alert(sent_at=sent_at)
    return {
        "identification": alert,
        "update": update_of(alert, sent_at=sent_at),
        "cancellation": cancellation_of(alert, sent_at=sent_at),
        "consent": consent_update_of(
            alert, status="refused", share_with_justice=False, sent_at=sent_at
        ),
    }


@pytest.mark.parametrize("message_type", ["identification", "update", "consent"])
def test_a_consent_recorded_beyond_the_clock_skew_ahead_of_the_hub_is_refused(
    message_type: str,
) -> None:
    # Sent within the allowance, and recorded within the allowance after it, but recorded more
    # than the allowance ahead of the hub's clock: it could outrank a withdrawal recorded now.
    message = every_justice_message(AHEAD)[message_type]
    message["consent"]["recorded_at"] = "2026-11-23T15:08:00Z"

    assert problems(message, message_type) == [
        ("consent.recorded_at", "more than 5 minutes after the hub's clock")
    ]


@pytest.mark.parametrize("message_type", ["identification", "update", "cancellation", "consent"])
def test_every_contract_refuses_a_sent_at_beyond_the_clock_skew(message_type: str) -> None:
    message = every_justice_message(BEYOND)[message_type]
    if "consent" in message:
        message["consent"]["recorded_at"] = AHEAD

    assert problems(message, message_type) == [
        ("sent_at", "more than 5 minutes after the hub's clock")
    ]


@pytest.mark.parametrize("message_type", ["identification", "update", "cancellation", "consent"])
def test_timestamps_exactly_the_clock_skew_ahead_are_accepted(message_type: str) -> None:
    message = every_justice_message(EDGE)[message_type]
    if "consent" in message:
        message["consent"]["recorded_at"] = EDGE

    assert parse(message, message_type).sent_at == datetime(2026, 11, 23, 15, 5, tzinfo=UTC)


def test_a_hearing_may_lie_in_the_future() -> None:
    alert = court_alert(sent_at="2026-11-23T14:59:00Z")
    alert["hearing"]["at"] = "2026-11-30T10:00:00Z"

    parsed = parse(alert, "identification")

    assert isinstance(parsed, Alert) and parsed.hearing is not None
