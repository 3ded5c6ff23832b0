"""referral_to_ref_i12: golden REF^I12 messages, STRICT validity, the field mapping, ACK reading."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from hub.contracts.alert import parse_alert
from hub.messages import Alert, HubIdentity, Recipient
from hub.transforms.referral_ids import referral_ids
from hub.transforms.referral_to_ref_i12 import (
    AckStatus,
    UnreadableAck,
    control_id_for,
    parse_ack,
    render_ref_i12,
)
from tests.fixtures.alerts import (
    DEFAULT_SENT_AT,
    NHS_NUMBER_CUSTODY,
    PNC_ID_COURT,
    PNC_ID_CUSTODY,
    REMOVE,
    court_alert,
    custody_alert,
    to_body,
    with_changes,
)
from tests.fixtures.ids import ID_KEY

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SENT_AT = datetime.fromisoformat(DEFAULT_SENT_AT.replace("Z", "+00:00"))
HUB = HubIdentity(
    ods_code="X26HUB", name="L&D Hub", endpoint="https://ld-hub.example.nhs.uk/fhir", ids=ID_KEY
)
LEEDS = Recipient(
    endpoint="leeds-ld",
    ods_code="RGD",
    organisation_name="Leeds and York Partnership NHS Foundation Trust",
)
YOUTH = Recipient(
    endpoint="leeds-yjh", ods_code="RXX04", organisation_name="Leeds Youth Justice Health Team"
)
CONTROL_ID = "0f3c9a1be2d44c5a8b71"

# Documented in the transform's docstring: hl7apy lists table 0396's HL7nnnn and 99zzz patterns
# literally, 2.5's table 0396 predates "SCT", and "ODS" is a local value of user-defined table
# 0338. Anything else hl7apy warns about is a mapping mistake.
EXPECTED_WARNINGS = (
    "Value HL7028",
    "Value HL70364 not in table HL70396",
    "Value SCT not in table HL70396",
    "Value 99LDV not in table HL70396",
    "Value ODS not in table HL70338",
)


def alert_from(document: dict[str, Any]) -> Alert:
    return parse_alert(to_body(document), content_type="application/json", now=SENT_AT)


def custody_adult() -> Alert:
    return alert_from(custody_alert(alert_id="6b1f1c1e-2f0a-4b8e-9d55-0c3a7e2b4f10"))


def court_youth_without_nhs_number() -> Alert:
    return alert_from(
        court_alert(
            alert_id="d2a4e6f8-1b3c-4d5e-8f70-9a1b2c3d4e5f",
            pathway="youth",
            urgency="emergency",
            person={"nhs_number": REMOVE, "date_of_birth": "2010-05-01"},
        )
    )


def custody_youth_with_nhs_number() -> Alert:
    return alert_from(custody_alert(pathway="youth", person={"date_of_birth": "2011-02-03"}))


def court_adult_without_nhs_number() -> Alert:
    return alert_from(court_alert(person={"nhs_number": REMOVE}))


def render(alert: Alert, recipient: Recipient = LEEDS) -> str:
    return render_ref_i12(alert, recipient=recipient, hub=HUB, control_id=CONTROL_ID)


def segments(message: str) -> list[list[str]]:
    """Each segment split into fields (MSH-1 not counted: index n is field n for every
    segment but MSH, whose index n is MSH-(n+1))."""
    return [s.split("|") for s in message.split("\r") if s]


def segment(message: str, name: str) -> list[str]:
    [found] = [s for s in segments(message) if s[0] == name]
    return found


GOLDEN_CASES: dict[str, tuple[Callable[[], Alert], Recipient]] = {
    "ref_i12_custody_adult": (custody_adult, LEEDS),
    "ref_i12_court_youth_no_nhs_number": (court_youth_without_nhs_number, YOUTH),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_ref_i12_matches_its_golden_file(name: str) -> None:
    make_alert, recipient = GOLDEN_CASES[name]
    message = render(make_alert(), recipient)
    readable = message.replace("\r", "\n")  # golden files hold one segment per line
    golden = GOLDEN / f"{name}.hl7"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(readable, encoding="utf-8")
    assert readable == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "make_alert",
    [
        custody_adult,
        court_adult_without_nhs_number,
        custody_youth_with_nhs_number,
        court_youth_without_nhs_number,
    ],
)
def test_every_message_parses_and_validates_strictly_with_only_documented_warnings(
    make_alert: Callable[[], Alert], tmp_path: Path
) -> None:
    message = render(make_alert())

    parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT)
    report = tmp_path / "report.txt"
    assert parsed.validate(report_file=str(report)) is True

    problems = report.read_text().splitlines()
    assert not [p for p in problems if p.startswith("Error")]
    unexpected = [p for p in problems if not any(w in p for w in EXPECTED_WARNINGS)]
    assert unexpected == []
    assert parsed.name == "REF_I12"
    assert parsed.msh.msh_9.to_er7() == "REF^I12^REF_I12"


def test_segments_come_in_ref_i12_order_and_end_with_a_carriage_return() -> None:
    message = render(custody_adult())

    assert message.endswith("\r")
    assert "\n" not in message
    assert [s[0] for s in segments(message)] == [
        "MSH", "RF1", "PRD", "PRD", "PID", "DG1", "DG1", "DG1", "NTE", "NTE", "NTE",
    ]  # fmt: skip


def test_msh_names_hub_and_recipient_and_takes_time_and_control_id_from_its_inputs() -> None:
    msh = segment(render(custody_adult()), "MSH")

    assert msh[2:7] == ["LD_HUB", "X26HUB", "", "RGD", "20261123093000+0000"]
    assert msh[8:12] == ["REF^I12^REF_I12", CONTROL_ID, "P", "2.5"]
    assert msh[17] == "UNICODE UTF-8"


def test_rf1_is_pending_and_names_the_referral_bundle_in_the_hub_namespace() -> None:
    alert = custody_adult()
    rf1 = segment(render(alert), "RF1")

    bundle_id = referral_ids(ID_KEY, alert.alert_id, LEEDS.endpoint).bundle_id
    assert rf1[1] == "P^Pending^HL70283"
    assert rf1[6] == f"{bundle_id}^X26HUB"
    assert rf1[7] == "20261123093000+0000"
    assert rf1[11] == f"{alert.alert_id}^WYP"


@pytest.mark.parametrize(
    ("urgency", "priority"),
    [
        ("routine", "R^Routine^HL70280"),
        ("urgent", "A^ASAP^HL70280"),
        ("emergency", "S^STAT^HL70280"),
    ],
)
def test_urgency_becomes_the_hl7_table_0280_priority(urgency: str, priority: str) -> None:
    alert = alert_from(custody_alert(urgency=urgency))

    assert segment(render(alert), "RF1")[2] == priority


def test_the_source_refers_and_the_recipient_is_referred_to() -> None:
    message = render(custody_adult())

    referring, referred_to = [s for s in segments(message) if s[0] == "PRD"]
    assert referring[1] == "RP^Referring Provider^HL70286"
    assert referring[2] == "West Yorkshire Police"
    assert referring[7] == "WYP^ODS"
    assert referred_to[1] == "RT^Referred to Provider^HL70286"
    assert referred_to[2] == "Leeds and York Partnership NHS Foundation Trust"
    assert referred_to[7] == "RGD^ODS"


def test_pid_carries_nhs_number_then_pnc_id_name_birth_date_sex_and_address() -> None:
    pid = segment(render(custody_adult()), "PID")

    assert pid[3].split("~") == [
        f"{NHS_NUMBER_CUSTODY}^^^NHS^NH",
        f"{PNC_ID_CUSTODY}^^^PNC&https://ld-hub.example.nhs.uk/Id/pnc-id&URI^PN",
    ]
    assert pid[5] == "Testperson^Jordan^Lee"
    assert pid[7] == "19910417"
    assert pid[8] == "M"
    assert pid[11] == "Flat 3^12 Example Street^Leeds^^LS11 5ZZ"


def test_without_an_nhs_number_the_pnc_id_alone_identifies_the_person() -> None:
    pid = segment(render(court_adult_without_nhs_number()), "PID")

    assert pid[3] == f"{PNC_ID_COURT}^^^PNC&https://ld-hub.example.nhs.uk/Id/pnc-id&URI^PN"
    assert len(pid) < 12 or pid[11] == ""  # the court fixture has no address


def test_without_any_person_identifier_the_source_reference_fills_pid3_as_a_visit_number() -> None:
    alert = alert_from(court_alert(person={"nhs_number": REMOVE, "pnc_id": REMOVE}))

    assert segment(render(alert), "PID")[3] == "13WY0512326^^^LMC01^VN"


@pytest.mark.parametrize(
    ("sex", "code"), [("male", "M"), ("female", "F"), ("other", "O"), ("unknown", "U")]
)
def test_sex_becomes_hl7_table_0001(sex: str, code: str) -> None:
    alert = alert_from(custody_alert(person={"sex": sex}))

    assert segment(render(alert), "PID")[8] == code


def test_more_than_three_address_lines_share_the_fourth_component() -> None:
    lines = ["Flat 3", "12 Example Street", "Beeston", "Leeds", "West Yorkshire"]
    alert = alert_from(custody_alert(person={"address": {"lines": lines, "postcode": "LS11 5ZZ"}}))

    pid11 = segment(render(alert), "PID")[11]
    assert pid11 == "Flat 3^12 Example Street^Beeston^Leeds, West Yorkshire^LS11 5ZZ"


def test_vulnerabilities_become_working_dg1s_with_snomed_where_known_else_a_local_code() -> None:
    dg1s = [s for s in segments(render(custody_adult())) if s[0] == "DG1"]

    assert [(d[1], d[3], d[6]) for d in dg1s] == [
        ("1", "74732009^Mental disorder^SCT^mental_health^Mental health^99LDV", "W"),
        (
            "2",
            "415685003^Suspected alcohol abuse^SCT^alcohol_misuse^Alcohol misuse^99LDV",
            "W",
        ),
        ("3", "unstable_accommodation^Unstable accommodation^99LDV", "W"),
    ]


def test_free_text_detail_goes_only_to_nte_one_repetition_per_line() -> None:
    document = with_changes(
        custody_alert(),
        {
            "vulnerabilities[0].detail": "Hearing voices.\nNot sleeping.\r\n",
            "vulnerabilities[1].detail": "   ",
        },
    )
    message = render(alert_from(document))

    ntes = [s for s in segments(message) if s[0] == "NTE"]
    assert [n[1:] for n in ntes] == [
        ["1", "P", "Mental health: Hearing voices.~Not sleeping.", "RE^Remark^HL70364"],
        [
            "2",
            "P",
            "Unstable accommodation: Sofa-surfing for three weeks.",
            "RE^Remark^HL70364",
        ],
    ]
    assert all("Hearing voices" not in "|".join(s) for s in segments(message) if s[0] != "NTE")


def test_hl7_separators_in_names_and_free_text_are_escaped_not_parsed() -> None:
    document = with_changes(
        custody_alert(),
        {
            "person.name.family": "O'Brien^Smith",
            "person.name.given": ["Jo|Anne", "Lee&Kim"],
            "vulnerabilities[0].detail": r"Says ~voices~ at C:\night",
        },
    )
    message = render(alert_from(document))

    pid = segment(message, "PID")
    assert pid[5] == r"O'Brien\S\Smith^Jo\F\Anne^Lee\T\Kim"
    assert r"Mental health: Says \R\voices\R\ at C:\E\night" in message
    parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT)
    assert len(parsed.pid.pid_5.children) == 3


def test_the_same_alert_renders_byte_identical_messages() -> None:
    assert render(custody_adult()) == render(custody_adult())


def test_control_id_for_is_twenty_characters_and_stable_per_referral() -> None:
    ids = referral_ids(ID_KEY, "6b1f1c1e-2f0a-4b8e-9d55-0c3a7e2b4f10", "leeds-ld")

    control_id = control_id_for(ids)
    assert len(control_id) == 20
    assert control_id == control_id_for(ids)
    assert control_id != control_id_for(referral_ids(ID_KEY, ids.bundle_id, "leeds-ld"))


@pytest.mark.parametrize("control_id", ["", "x" * 21, "bad\rid"])
def test_a_control_id_hl7_cannot_carry_is_refused(control_id: str) -> None:
    with pytest.raises(ValueError, match="control_id"):
        render_ref_i12(custody_adult(), recipient=LEEDS, hub=HUB, control_id=control_id)


def test_a_naive_timestamp_is_refused_rather_than_guessed() -> None:
    from dataclasses import replace

    alert = replace(custody_adult(), sent_at=datetime(2026, 11, 23, 9, 30))

    with pytest.raises(ValueError, match="time zone"):
        render(alert)


def test_a_non_utc_sent_at_is_written_in_utc() -> None:
    from dataclasses import replace
    from datetime import timedelta, timezone

    bst = timezone(timedelta(hours=1))
    alert = replace(custody_adult(), sent_at=datetime(2026, 6, 1, 10, 0, tzinfo=bst))

    assert segment(render(alert), "MSH")[6] == "20260601090000+0000"


# --- parse_ack ----------------------------------------------------------------------------------


def ack(code: str, *rest: str, text: str = "") -> str:
    lines = [
        "MSH|^~\\&|TRUST|RGD|LD_HUB|X26HUB|20261123093001||ACK^I12^ACK|A1|P|2.5",
        f"MSA|{code}|{CONTROL_ID}|{text}",
        *rest,
    ]
    return "\r".join(lines) + "\r"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AA", AckStatus.ACCEPTED),
        ("CA", AckStatus.ACCEPTED),
        ("AE", AckStatus.ERROR),
        ("CE", AckStatus.ERROR),
        ("AR", AckStatus.REJECTED),
        ("CR", AckStatus.REJECTED),
    ],
)
def test_msa1_decides_the_ack_status(code: str, status: AckStatus) -> None:
    result = parse_ack(ack(code))

    assert (result.status, result.code, result.control_id, result.text) == (
        status,
        code,
        CONTROL_ID,
        "",
    )


def test_msa3_and_err_texts_are_kept_unescaped() -> None:
    message = ack(
        "AR",
        "ERR||PID^1^3|102^Data type error^HL70357|E||||NHS number \\T\\ PNC id unknown",
        text="Rejected\\F\\ see ERR",
    )

    result = parse_ack(message)

    assert result.status is AckStatus.REJECTED
    assert result.text == "Rejected| see ERR; 102 Data type error; NHS number & PNC id unknown"


def test_a_v23_style_err1_code_is_read_too() -> None:
    result = parse_ack(ack("AE", "ERR|PID^1^3^207&Application internal error"))

    assert result.text == "207 Application internal error"


def test_an_ack_separated_by_newlines_is_still_read() -> None:
    assert parse_ack(ack("AA").replace("\r", "\n")).status is AckStatus.ACCEPTED


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "garbage",
        "MSH|^~\\&|TRUST|RGD|||20261123093001||ACK|A1|P|2.5\r",
        "MSH|^~\\&|TRUST|RGD|||20261123093001||ACK|A1|P|2.5\rMSA|ZZ|x\r",
    ],
)
def test_an_answer_that_is_not_an_ack_is_unreadable(answer: str) -> None:
    with pytest.raises(UnreadableAck):
        parse_ack(answer)
