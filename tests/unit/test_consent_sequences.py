"""Consent cannot be outrun: an alert, then consent updates and alert updates carrying consent, in
any order and with any timestamps (within and beyond the clock-skew allowance), driven through the
real intake stage with the in-memory ledger and a publisher that keeps what it is given.

After every message: the hub accepted exactly what the clock-skew rule allows; the consent in
force is what the documented precedence rule gives (written out again here, independently); what
reaches the justice side never shares more than the consent most recently received; and the last
message each service was sent carries exactly the consent in force.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.adapters.memory.ledger import MemoryLedger
from hub.adapters.memory.publisher import MemoryPublisher, Published
from hub.endpoints.fhir_rest import render_fhir_bundle, render_fhir_followup
from hub.endpoints.hl7v2_mllp import render_hl7v2_followup, render_hl7v2_ref_i12
from hub.endpoints.webhook import render_webhook_followup, render_webhook_json
from hub.errors import InvalidMessage
from hub.messages import HubIdentity, OutcomeStatus, Recipient
from hub.routes.rules import build_route_table
from hub.security.ids import IdKey
from hub.stages.intake import IntakeStage
from hub.stages.outcomes import build_outcome
from hub.transforms.consent_filter import NEUTRAL_SERVICE_NAME
from hub.transforms.followup_terms import CONSENT_LABELS
from hub.wire import H_ENDPOINT, Envelope
from tests.fixtures.alerts import (
    consent_update_of,
    custody_alert,
    routing_key_of,
    to_body,
    update_of,
)

ID_KEY = IdKey.of("unit-test-id-key-" + "k" * 32)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)  # the README's documented allowance, stated independently
HUB = HubIdentity(ods_code="X26", name="L&D hub", endpoint="https://hub.example/fhir", ids=ID_KEY)
RECIPIENTS = {
    "fhir": Recipient(endpoint="fhir", ods_code="RGD01", organisation_name="Drug and alcohol team"),
    "hook": Recipient(endpoint="hook", ods_code="RGD02", organisation_name="Housing support"),
    "hl7": Recipient(endpoint="hl7", ods_code="RGD03", organisation_name="Liaison team"),
}
STATUSES = ("given", "refused", "not_asked", "lacks_capacity")
FHIR_CONSENT = {  # consent.status → (Consent.status, provision.type): the mapping table
    "given": ("active", "permit"),
    "refused": ("rejected", "deny"),
    "not_asked": ("proposed", "deny"),
    "lacks_capacity": ("active", "permit"),
}


@dataclass(frozen=True)
class Told:
    """A consent as the tests compare it: (status, share_with_justice, recorded_at)."""

    status: str
    share: bool
    recorded_at: datetime


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def shares(c: Told) -> int:
    """The precedence rule's rank, spelled out from the README: 0 refuses the referral, 1 allows
    it without detail for justice, 2 lets detail cross to justice."""
    if c.status == "given" and c.share:
        return 2
    return 1 if c.status in ("given", "lacks_capacity") else 0


def in_force_after(current: Told, incoming: Told) -> Told:
    """The README's rule: sharing less always wins; sharing more only when recorded strictly
    later; sharing the same unless recorded earlier."""
    if shares(incoming) < shares(current):
        return incoming
    if shares(incoming) > shares(current):
        return incoming if incoming.recorded_at > current.recorded_at else current
    return incoming if incoming.recorded_at >= current.recorded_at else current


def acceptable(sent_at: datetime, recorded_at: datetime) -> bool:
    """The clock-skew rule as documented: no claimed past moment beyond NOW + SKEW (and a
    consent recorded no more than SKEW after the message was sent)."""
    return sent_at <= NOW + SKEW and recorded_at <= NOW + SKEW and recorded_at <= sent_at + SKEW


def told_by(published: Published) -> Told | None:
    """The consent one published message tells its service (None: an HL7 REF^I12, which has no
    field for it)."""
    if published.headers[H_ENDPOINT] == "hl7":
        return hl7_told(published.body.decode("utf-8"))
    body = json.loads(published.body)
    if published.headers[H_ENDPOINT] == "hook":
        consent = body["consent"]
        return Told(
            consent["status"],
            consent["share_with_justice"],
            datetime.fromisoformat(consent["recorded_at"]),
        )
    resource = next(
        e["resource"] for e in body["entry"] if e["resource"]["resourceType"] == "Consent"
    )
    status = next(
        s
        for s, f in FHIR_CONSENT.items()
        if f == (resource["status"], resource["provision"]["type"])
        and (s == "lacks_capacity") == ("policy" in resource)
    )
    share = resource["provision"]["provision"][0]["type"] == "permit"
    return Told(status, share, datetime.fromisoformat(resource["dateTime"]))


def hl7_told(message: str) -> Told | None:
    found = {
        key: re.search(rf"{key}: ([^~|\r]*)", message)
        for key in (
            "Consent to referral",
            "Share outcomes with the justice side",
            "Consent recorded",
        )
    }
    if not all(found.values()):
        return None
    label, share, when = (m.group(1) for m in found.values() if m is not None)
    status = next(str(s) for s, text in CONSENT_LABELS.items() if text == label)
    recorded = datetime.strptime(when, "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    return Told(status, share == "Yes", recorded)


def to_the_minute(c: Told) -> Told:
    """HL7 says when a consent was recorded to the minute (HL7v2 mapping table)."""
    return Told(c.status, c.share, c.recorded_at.replace(second=0, microsecond=0))


def envelope(message: dict[str, Any]) -> Envelope:
    return Envelope(
        body=to_body(message),
        queue="justice.custody",
        exchange="justice.alerts",
        routing_key=routing_key_of(message),
        headers={},
        message_id=None,
        user_id=None,
        content_type="application/json",
    )


def a_consent() -> st.SearchStrategy[tuple[str, bool, int, int]]:
    """(status, share_with_justice, sent_at and recorded_at as seconds from NOW): mostly within
    the allowance, some on it and some just beyond."""
    seconds = st.one_of(
        st.integers(min_value=-1800, max_value=300),
        st.sampled_from([-1, 0, 1, 299, 300, 301, 600]),
    )
    return st.tuples(st.sampled_from(STATUSES), st.booleans(), seconds, seconds)


steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["consent", "update"]), a_consent()),
        st.tuples(st.just("again"), st.integers(min_value=0, max_value=10)),
    ),
    max_size=7,
)


class Hub:
    def __init__(self) -> None:
        self.ledger = MemoryLedger()
        self.publisher = MemoryPublisher()
        self.stage = IntakeStage(
            ids=ID_KEY,
            ledger=self.ledger,
            publisher=self.publisher,
            routes=build_route_table({"default": list(RECIPIENTS)}),
            recipients=RECIPIENTS,
            hub=HUB,
            clock=lambda: NOW,
            max_body_bytes=65536,
            renderers={
                "fhir": render_fhir_bundle,
                "hook": render_webhook_json,
                "hl7": render_hl7v2_ref_i12,
            },
            followup_renderers={
                "fhir": render_fhir_followup,
                "hook": render_webhook_followup,
                "hl7": render_hl7v2_followup,
            },
        )

    def receive(self, message: dict[str, Any]) -> bool:
        """Process one message as the consumer would; False if it was refused."""
        try:
            self.stage.process(envelope(message))
        except InvalidMessage:
            return False
        return True

    def consent_in_force(self, alert_id: str) -> Told:
        record = self.ledger.get_alert(alert_id)
        assert record is not None and record.facts.consent_recorded_at is not None
        facts = record.facts
        return Told(facts.consent_status, facts.share_with_justice, facts.consent_recorded_at)

    def justice_view_of_an_answer(self, alert_id: str, endpoint: str) -> tuple[str, dict[str, str]]:
        """What the justice side would get if `endpoint` answered now, through the real
        outcome builder (the consent filter reading the ledger)."""
        alert = self.ledger.get_alert(alert_id)
        assert alert is not None
        referral = next(
            r
            for r in self.ledger.referrals_for(alert_id)
            if r.kind == "new" and r.endpoint == endpoint
        )
        outcome = build_outcome(
            alert=alert,
            referral=referral,
            recipient=RECIPIENTS[endpoint],
            status=OutcomeStatus.ASSESSED,
            ids=ID_KEY,
            at=NOW,
            answers="response-1",
            recommendation="Suitable for interview with an appropriate adult",
            referred_to="Community drug team",
            note="Clinical note",
        )
        return outcome.service.name, dict(outcome.detail)

    def last_told(self, endpoint: str) -> Told | None:
        sent = [p for p in self.publisher.published if p.headers[H_ENDPOINT] == endpoint]
        return told_by(sent[-1])


@settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(first=a_consent(), later=steps)
def test_consent_in_force_is_never_outrun_and_services_are_told_exactly_it(
    first: tuple[str, bool, int, int], later: list[tuple[str, Any]]
) -> None:
    hub = Hub()
    status, share, sent, recorded = first
    sent_at, recorded_at = NOW + timedelta(seconds=sent), NOW + timedelta(seconds=recorded)
    alert = custody_alert(
        sent_at=iso(sent_at),
        consent={"status": status, "share_with_justice": share, "recorded_at": iso(recorded_at)},
    )
    alert_id = alert["alert_id"]
    accepted = hub.receive(alert)
    assert accepted == acceptable(sent_at, recorded_at)
    if not accepted:
        return
    expected = Told(status, share, recorded_at)
    last_received = expected
    sent_messages: list[dict[str, Any]] = []
    check(hub, alert_id, expected=expected, last_received=last_received)

    for kind, what in later:
        if kind == "again":  # a redelivery of an earlier follow-up changes nothing
            if not sent_messages:
                continue
            hub.receive(sent_messages[what % len(sent_messages)])
        else:
            status, share, sent, recorded = what
            sent_at, recorded_at = NOW + timedelta(seconds=sent), NOW + timedelta(seconds=recorded)
            consent = {"status": status, "share_with_justice": share}
            if kind == "consent":
                message = consent_update_of(
                    alert, **consent, sent_at=iso(sent_at), recorded_at=iso(recorded_at)
                )
            else:
                message = update_of(
                    alert,
                    sent_at=iso(sent_at),
                    consent={**consent, "recorded_at": iso(recorded_at)},
                )
            accepted = hub.receive(message)
            assert accepted == acceptable(sent_at, recorded_at)
            if accepted:
                sent_messages.append(message)
                incoming = Told(status, share, recorded_at)
                expected = in_force_after(expected, incoming)
                last_received = incoming

        check(hub, alert_id, expected=expected, last_received=last_received)


def check(hub: Hub, alert_id: str, *, expected: Told, last_received: Told) -> None:
    in_force = hub.consent_in_force(alert_id)
    assert in_force == expected
    assert shares(in_force) <= shares(last_received)
    for endpoint in RECIPIENTS:
        name, detail = hub.justice_view_of_an_answer(alert_id, endpoint)
        if shares(in_force) < 2:
            assert (name, detail) == (NEUTRAL_SERVICE_NAME, {})
        else:
            assert name == RECIPIENTS[endpoint].organisation_name and detail
        told = hub.last_told(endpoint)
        if endpoint == "hl7":
            assert told is None or told == to_the_minute(in_force)
        else:
            assert told == in_force


def test_a_consent_is_applied_once_even_when_another_arrives_while_it_is_being_published() -> None:
    # Two intake consumers: a grant recorded after the withdrawal is processed while the
    # withdrawal's messages are still being published. The withdrawal must not be applied again
    # when it is marked done, undoing the newer grant the services were just told.
    hub = Hub()
    alert = custody_alert(sent_at=iso(NOW - timedelta(minutes=10)))
    assert hub.receive(alert)
    withdrawal = consent_update_of(
        alert, status="refused", share_with_justice=False, sent_at=iso(NOW)
    )
    grant = consent_update_of(
        alert,
        status="given",
        share_with_justice=True,
        sent_at=iso(NOW + timedelta(minutes=1)),
    )
    publish = hub.publisher.publish
    pending = [grant]

    def publish_then_take_the_next(**message: Any) -> None:
        publish(**message)
        if pending:
            assert hub.receive(pending.pop())

    hub.publisher.publish = publish_then_take_the_next  # type: ignore[method-assign]
    assert hub.receive(withdrawal)

    granted = Told("given", True, NOW + timedelta(minutes=1))
    assert hub.consent_in_force(alert["alert_id"]) == granted
    first = hub.publisher.published[len(RECIPIENTS)].headers[H_ENDPOINT]
    assert hub.last_told(first) == granted
