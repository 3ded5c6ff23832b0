"""The consent filter, over generated outcomes and consent states: no clinical field ever
reaches the justice side without consent to share, and the service name is neutral then."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.messages import ConsentStatus, OutcomeStatus, Recipient
from hub.records import AlertFacts, AlertRecord, AlertState, ReferralRecord
from hub.security.ids import IdKey
from hub.stages.outcomes import build_outcome
from hub.transforms.consent_filter import (
    CLINICAL_FIELDS,
    NEUTRAL_SERVICE_CODE,
    NEUTRAL_SERVICE_NAME,
    justice_view,
    may_share_detail,
)

pytestmark = pytest.mark.unit

texts = st.one_of(st.none(), st.text(min_size=1, max_size=40))
statuses = st.sampled_from([s for s in OutcomeStatus if s not in ("rejected",)])


@given(
    consent=st.sampled_from(list(ConsentStatus)),
    share=st.booleans(),
    rec=texts,
    referred=texts,
    note=texts,
    name=st.text(min_size=1, max_size=40),
)
def test_no_clinical_field_crosses_without_consent_to_share(
    consent: ConsentStatus,
    share: bool,
    rec: str | None,
    referred: str | None,
    note: str | None,
    name: str,
) -> None:
    view = justice_view(
        consent_status=str(consent),
        share_with_justice=share,
        service_code="RXX03",
        service_name=name,
        recommendation=rec,
        referred_to=referred,
        note=note,
    )
    if not (consent is ConsentStatus.GIVEN and share):
        assert view.detail == {}
        assert view.service_name == NEUTRAL_SERVICE_NAME
        assert view.service_code == NEUTRAL_SERVICE_CODE  # an ODS code can be looked up
    else:
        assert (view.service_code, view.service_name) == ("RXX03", name)
    assert "note" not in view.detail  # the clinical note never crosses, consent or not
    assert set(view.detail) <= set(CLINICAL_FIELDS)


@given(
    consent=st.sampled_from(list(ConsentStatus)),
    share=st.booleans(),
    status=statuses,
    rec=texts,
    referred=texts,
    note=texts,
)
def test_outgoing_outcomes_carry_no_clinical_value_without_consent(
    consent: ConsentStatus,
    share: bool,
    status: OutcomeStatus,
    rec: str | None,
    referred: str | None,
    note: str | None,
) -> None:
    at = datetime(2026, 11, 23, 10, tzinfo=UTC)
    alert = AlertRecord(
        facts=AlertFacts(
            alert_id="a1",
            body_sha256="0" * 64,
            source_kind="custody",
            organisation_code="WYP01",
            reference="WY-1",
            pathway="adult",
            urgency="routine",
            consent_status=str(consent),
            share_with_justice=share,
            received_at=at,
        ),
        state=AlertState.ROUTED,
        rule="default",
    )
    referral = ReferralRecord(bundle_id="b1", alert_id="a1", endpoint="leeds-dat", request_id="r1")
    recipient = Recipient(
        endpoint="leeds-dat", ods_code="RXX03", organisation_name="Leeds Drug and Alcohol Team"
    )
    outcome = build_outcome(
        alert=alert,
        referral=referral,
        recipient=recipient,
        status=status,
        at=at,
        answers="m1",
        ids=IdKey.of("k" * 32),
        recommendation=rec,
        referred_to=referred,
        note=note,
    )
    sent = outcome.to_json_dict()
    if not may_share_detail(consent_status=str(consent), share_with_justice=share):
        # free text and the service's revealing name reach the wire only through these two
        assert "detail" not in sent
        assert sent["service"] == {"code": NEUTRAL_SERVICE_CODE, "name": NEUTRAL_SERVICE_NAME}
    else:
        assert set(sent.get("detail", {})) <= {"recommendation", "referred_to"}
