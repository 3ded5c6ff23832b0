"""Alerts full of personal data go through the whole flow (valid, invalid, outcomes back);
none of it may appear in what the hub logs."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from hub.log import configure_logging
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.fixtures.alerts import to_body, with_changes

pytestmark = pytest.mark.e2e

FAMILY = "Featherstonehaugh"
GIVEN = "Perpetua"
DOB = "1984-07-19"
POSTCODE = "LS6 2QT"
STREET = "27 Quarry Mount Terrace"
DETAIL = "Disclosed thoughts of jumping from the bridge"
NHS = "9991000046"
PNC = "2008/0004321T"


def personal_alert(**changes: Any) -> dict[str, Any]:
    alert = fresh_custody(
        person={
            "name": {"given": [GIVEN], "family": FAMILY},
            "date_of_birth": DOB,
            "sex": "female",
            "nhs_number": NHS,
            "pnc_id": PNC,
            "address": {"lines": [STREET, "Leeds"], "postcode": POSTCODE},
        },
        vulnerabilities=[{"type": "mental_health", "detail": DETAIL}],
    )
    return with_changes(alert, changes) if changes else alert


def test_personal_data_never_reaches_the_logs(rig: HubRig) -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    try:
        good = personal_alert()
        rig.justice.publish(good, routing_key=key_for(good))
        bad = personal_alert(**{"person.nhs_number": "9991000047", "pathway": "youth"})
        rig.justice.publish(to_body(bad), routing_key=key_for(bad), message_id=bad["alert_id"])
        # a body that is not even JSON, carrying personal data in its text
        raw = f'{{"name": "{GIVEN} {FAMILY}", "dob": "{DOB}", nhs {NHS}'.encode()
        rig.justice.publish(raw, routing_key=key_for(good), message_id="m-raw-1")
        rig.justice.wait_for(
            lambda got: (
                any(o["status"] == "assessed" for o in got)
                and sum(o["status"] == "rejected" for o in got) == 2
            )
        )
        wait_until(lambda: "outcome_returned" in stream.getvalue(), what="log lines")
    finally:
        configure_logging(level="INFO")
    logged = stream.getvalue()
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]
    assert any(line.get("event") == "alert_rejected" for line in lines)
    # What the absence checks below watch was written: both rejections, and the good alert's
    # journey (whose lines must each carry a correlation id).
    rejected = [line.get("alert_id") for line in lines if line.get("event") == "alert_rejected"]
    assert bad["alert_id"] in rejected and len(rejected) == 2, rejected
    events = {line.get("event") for line in lines}
    assert {"alert_routed", "referral_delivered", "outcome_returned"} <= events, events
    assert all(
        "correlation_id" in line
        for line in lines
        if line.get("event") in ("alert_routed", "referral_delivered", "outcome_returned")
    )
    for secret in (
        FAMILY,
        GIVEN,
        DOB,
        POSTCODE,
        STREET,
        DETAIL,
        NHS,
        PNC,
        "Quarry",
        "jumping",
        "9991000047",
    ):
        assert secret not in logged, f"{secret!r} leaked into the logs"


def test_a_services_error_body_quoting_the_person_never_reaches_the_logs(
    rig_factory: Any,
) -> None:
    from tests.e2e.test_delivery_failures import Script

    # given a service that refuses the referral with a 400 whose text names the person
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "details": {"coding": [{"code": "REC_BAD_REQUEST"}], "text": f"{GIVEN} {FAMILY}"},
                "diagnostics": f"Patient {GIVEN} {FAMILY} born {DOB} is already registered",
            }
        ],
    }
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    try:
        rig: HubRig = rig_factory(
            behaviour=Script("wy-ld", 400, 100, body=json.dumps(outcome).encode()), replies=None
        )
        alert = personal_alert()
        rig.justice.publish(alert, routing_key=key_for(alert))
        rig.justice.get_one("hub.dlq.deliver", timeout=15)
        wait_until(lambda: "message_dead_lettered" in stream.getvalue(), what="log lines")
    finally:
        configure_logging(level="INFO")

    # then the log says what happened, with the codes, and nothing of what the service wrote
    logged = stream.getvalue()
    dead = next(
        json.loads(line)
        for line in logged.splitlines()
        if line.strip() and json.loads(line).get("event") == "message_dead_lettered"
    )
    assert dead["reason"] == "HTTP 400: invalid REC_BAD_REQUEST"
    for secret in (FAMILY, GIVEN, "already registered"):
        assert secret not in logged, f"{secret!r} leaked into the logs"
