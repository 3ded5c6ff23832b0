"""Intake records the coded facts the pathway report needs: an alert's vulnerability types as
codes (sorted, each once), never their free-text detail."""

from __future__ import annotations

import pytest

from tests.fixtures.alerts import custody_alert
from tests.unit.test_consent_sequences import Hub

pytestmark = pytest.mark.unit


def test_intake_keeps_an_alerts_vulnerability_types_as_sorted_codes_without_their_detail() -> None:
    hub = Hub()
    alert = custody_alert(
        vulnerabilities=[
            {"type": "mental_health", "detail": "Reports low mood."},
            {"type": "autism", "detail": "Diagnosed in 2019."},
            {"type": "mental_health", "detail": "Hears voices."},
        ]
    )

    assert hub.receive(alert)

    record = hub.ledger.get_alert(alert["alert_id"])
    assert record is not None
    assert record.facts.vulnerability_types == ("autism", "mental_health")
    assert "low mood" not in repr(record)
