"""followup_to_hl7v2: golden REF^I13 / REF^I14 messages, STRICT validity, the referral they name,
their own control ids, and no personal data where a follow-up carries none."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.endpoints.hl7v2_mllp import HL7V2_CONTENT_TYPE, hl7v2_control_id, render_hl7v2_followup
from hub.messages import CancellationReason, ConsentStatus, FollowUp, HubIdentity, Recipient
from hub.transforms.alert_to_referral import build_referral
from hub.transforms.followup_to_hl7v2 import followup_control_id, patient_id, render_followup
from hub.transforms.referral_ids import followup_ids, referral_ids
from hub.transforms.referral_to_ref_i12 import control_id_from_request_id, render_ref_i12
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
LEEDS = Recipient(
    endpoint="leeds-ld",
    ods_code="RGD",
    organisation_name="Leeds and York Partnership NHS Foundation Trust",
)
# A receiver whose name shares no word with the fixture person's address (which says "Leeds").
YORK = Recipient(endpoint="york-ld", ods_code="RCB", organisation_name="York Teaching Hospital")

# As test_referral_to_ref_i12's, plus the hub's local referral-status system (99LDS) that a
# cancellation's RF1-1 names; both documented in the transforms' docstrings.
EXPECTED_WARNINGS = (
    "Value HL7028",
    "Value HL70364 not in table HL70396",
    "Value SCT not in table HL70396",
    "Value 99LDV not in table HL70396",
    "Value 99LDS not in table HL70396",
    "Value ODS not in table HL70338",
)


def render(follow_up: FollowUp, recipient: Recipient = LEEDS) -> str:
    return render_hl7v2_followup(follow_up, recipient, HUB).body.decode("utf-8")


def segments(message: str) -> list[list[str]]:
    """Each segment split into fields (index n is field n, except MSH where it is MSH-(n+1))."""
    return [s.split("|") for s in message.split("\r") if s]


def segment(message: str, name: str) -> list[str]:
    [found] = [s for s in segments(message) if s[0] == name]
    return found


def withdrawn_in_an_update() -> FollowUp:
    return update(consent={"status": "refused", "share_with_justice": False})


GOLDEN_CASES: dict[str, Callable[[], FollowUp]] = {
    "ref_i13_update_consent_withdrawn": withdrawn_in_an_update,
    "ref_i14_cancellation_person_released": cancellation,
    "ref_i13_consent_update_refused": consent_update,
}

EVERY_FOLLOW_UP = [
    pytest.param(update, id="update"),
    pytest.param(withdrawn_in_an_update, id="update-consent-withdrawn"),
    *(
        pytest.param(lambda r=r: cancellation(r), id=f"cancellation-{r}")
        for r in CancellationReason
    ),
    *(
        pytest.param(
            lambda s=s, b=b: consent_update(s, share_with_justice=b), id=f"consent-{s}-{b}"
        )
        for s in ConsentStatus
        for b in (True, False)
    ),
]


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_each_follow_up_matches_its_golden_file(name: str) -> None:
    message = render(GOLDEN_CASES[name]())
    readable = message.replace("\r", "\n")  # golden files hold one segment per line
    golden = GOLDEN / f"{name}.hl7"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(readable, encoding="utf-8")
    assert readable == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("make", EVERY_FOLLOW_UP)
def test_every_follow_up_parses_and_validates_strictly_with_only_documented_warnings(
    make: Callable[[], FollowUp], tmp_path: Path
) -> None:
    follow_up = make()
    message = render(follow_up)

    parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT)
    report = tmp_path / "report.txt"
    assert parsed.validate(report_file=str(report)) is True

    problems = report.read_text().splitlines()
    assert not [p for p in problems if p.startswith("Error")]
    assert [p for p in problems if not any(w in p for w in EXPECTED_WARNINGS)] == []
    assert parsed.name == "REF_I12"
    trigger = "I14" if follow_up.kind == "cancellation" else "I13"
    assert parsed.msh.msh_9.to_er7() == f"REF^{trigger}^REF_I12"


@pytest.mark.parametrize("make", EVERY_FOLLOW_UP)
def test_every_follow_up_names_the_referral_as_its_ref_i12_did(
    make: Callable[[], FollowUp],
) -> None:
    i12 = render_ref_i12(
        original_alert(),
        recipient=LEEDS,
        hub=HUB,
        control_id=hl7v2_control_id(ID_KEY, ALERT_ID, "x"),
    )

    rf1 = segment(render(make()), "RF1")

    original = segment(i12, "RF1")
    assert rf1[6] == original[6] == f"{referral_ids(ID_KEY, ALERT_ID, 'leeds-ld').bundle_id}^X26HUB"
    assert rf1[11] == original[11] == f"{ALERT_ID}^WYP"


@pytest.mark.parametrize("make", EVERY_FOLLOW_UP)
def test_msh10_is_the_follow_ups_own_request_id_never_the_referrals(
    make: Callable[[], FollowUp],
) -> None:
    follow_up = make()

    control_id = segment(render(follow_up), "MSH")[9]

    request_id = followup_ids(ID_KEY, ALERT_ID, "leeds-ld", follow_up.change_id).request_id
    assert control_id == uuid.UUID(request_id).hex[:20] == control_id_from_request_id(request_id)
    assert control_id == followup_control_id(follow_up, "leeds-ld", ID_KEY)
    assert control_id != hl7v2_control_id(ID_KEY, ALERT_ID, "leeds-ld")
    assert control_id != segment(render(replace(follow_up, change_id=str(uuid.uuid4()))), "MSH")[9]


def test_an_update_is_the_i12_of_its_new_content_as_i13_without_a_status_plus_its_consent() -> None:
    follow_up = withdrawn_in_an_update()
    assert follow_up.alert is not None
    i12 = render_ref_i12(follow_up.alert, recipient=LEEDS, hub=HUB, control_id="c")

    i13 = segments(render(follow_up))

    expected = segments(i12)
    expected[0][8:10] = ["REF^I13^REF_I12", followup_control_id(follow_up, "leeds-ld", ID_KEY)]
    expected[1][1] = ""  # RF1-1: an update cannot know the receiver's current status
    assert i13[:-1] == expected
    assert i13[-1] == [
        "NTE",
        "4",
        "P",
        "Consent to referral: Refused or withdrawn~Share outcomes with the justice side: No"
        "~Consent recorded: 2026-11-23 11:27 UTC",
        "RE^Remark^HL70364",
    ]


def test_an_update_without_vulnerability_notes_numbers_its_consent_note_one() -> None:
    blank = [{"type": "autism", "detail": " "}]
    message = render(update(vulnerabilities=blank))

    assert [(n[1], n[3].split("~")[0]) for n in segments(message) if n[0] == "NTE"] == [
        ("1", "Consent to referral: Given")
    ]


@pytest.mark.parametrize(
    ("reason", "status", "label"),
    [
        (CancellationReason.PERSON_RELEASED, "revoked^Revoked^99LDS", "Person released"),
        (CancellationReason.NO_LONGER_REQUIRED, "revoked^Revoked^99LDS", "No longer required"),
        (
            CancellationReason.RAISED_IN_ERROR,
            "entered-in-error^Entered in error^99LDS",
            "Raised in error",
        ),
    ],
)
def test_a_cancellation_is_an_i14_whose_rf1_status_is_the_fhir_routes(
    reason: CancellationReason, status: str, label: str
) -> None:
    message = render(cancellation(reason))

    assert segment(message, "MSH")[8] == "REF^I14^REF_I12"
    assert segment(message, "RF1")[1] == status
    assert segment(message, "NTE")[3] == f"Referral cancelled by West Yorkshire Police: {label}"


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (ConsentStatus.GIVEN, "Given"),
        (ConsentStatus.REFUSED, "Refused or withdrawn"),
        (ConsentStatus.NOT_ASKED, "Not asked yet"),
        (
            ConsentStatus.LACKS_CAPACITY,
            "Lacks capacity: referral decided in their best interests"
            " (Mental Capacity Act 2005 s.4)",
        ),
    ],
)
def test_a_consent_update_is_an_i13_whose_note_carries_the_new_consent(
    status: ConsentStatus, label: str
) -> None:
    message = render(consent_update(status, share_with_justice=True))

    assert segment(message, "MSH")[8] == "REF^I13^REF_I12"
    assert segment(message, "RF1")[1] == ""
    assert segment(message, "NTE")[3].split("~") == [
        "Consent update from West Yorkshire Police",
        f"Consent to referral: {label}",
        "Share outcomes with the justice side: Yes",
        "Consent recorded: 2026-11-23 11:30 UTC",
    ]


@pytest.mark.parametrize("make", [cancellation, consent_update])
def test_without_personal_data_pid_holds_only_the_fhir_patient_id_and_an_anonymous_name(
    make: Callable[[], FollowUp],
) -> None:
    message = render(make())

    patient = build_referral(original_alert(), recipient=LEEDS, hub=HUB)["entry"]
    [fhir_patient_id] = [
        e["resource"]["id"] for e in patient if e["resource"]["resourceType"] == "Patient"
    ]
    assert patient_id(ID_KEY, ALERT_ID, "leeds-ld") == fhir_patient_id
    assert segment(message, "PID") == [
        "PID",
        "1",
        "",
        f"{fhir_patient_id}^^^X26HUB^ANON",
        "",
        "^^^^^^S",
    ]
    assert [s[0] for s in segments(message)] == ["MSH", "RF1", "PRD", "PRD", "PID", "NTE"]


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
def test_no_personal_data_reaches_a_cancellation_or_consent_update_even_if_an_alert_is_attached(
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
        message = render(follow_up, YORK)
        assert [value for value in personal_data(alert) if value in message] == []


@pytest.mark.parametrize(
    ("follow_up", "problem"),
    [
        (replace(update(), alert=None), "no updated alert"),
        (replace(update(), alert_id=str(uuid.uuid4())), "keep the alert_id"),
        (replace(cancellation(), cancellation=None), "no cancellation reason"),
        (replace(consent_update(), consent=None), "no consent"),
    ],
)
def test_a_follow_up_missing_what_its_kind_carries_is_refused(
    follow_up: FollowUp, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        render_followup(follow_up, recipient=LEEDS, hub=HUB, control_id="c")


def test_the_same_follow_up_renders_the_same_payload_every_time() -> None:
    first = render_hl7v2_followup(consent_update(), LEEDS, HUB)

    assert first == render_hl7v2_followup(consent_update(), LEEDS, HUB)
    assert first.content_type == HL7V2_CONTENT_TYPE
    assert first.body.endswith(b"\r")
    assert b"\n" not in first.body
