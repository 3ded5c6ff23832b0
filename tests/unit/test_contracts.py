"""hub.contracts: the alert contract is strict, reports every problem, and never echoes values."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.contracts.alert import parse_alert
from hub.contracts.identifiers import nhs_number_is_valid, pnc_id_is_valid
from hub.contracts.outcome import validate_outcome
from hub.contracts.peek import peek_identity
from hub.contracts.schemas import load_schema
from hub.errors import InvalidMessage
from hub.messages import (
    Alert,
    ConsentStatus,
    OutcomeStatus,
    Pathway,
    Problem,
    ReferralOutcome,
    SourceKind,
    Urgency,
    VulnerabilityType,
)
from tests.fixtures.alerts import REMOVE, court_alert, custody_alert, to_body, with_changes

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
NOW = datetime(2026, 11, 23, 9, 31, tzinfo=UTC)  # a minute after the fixtures' sent_at
JSON = "application/json"


def parse(alert: dict[str, Any] | bytes, **kwargs: Any) -> Alert:
    body = alert if isinstance(alert, bytes) else to_body(alert)
    kwargs.setdefault("content_type", JSON)
    kwargs.setdefault("now", NOW)
    return parse_alert(body, **kwargs)


def problems_of(alert: dict[str, Any] | bytes, **kwargs: Any) -> list[Problem]:
    with pytest.raises(InvalidMessage) as caught:
        parse(alert, **kwargs)
    assert caught.value.problems, "InvalidMessage must say what is wrong"
    return list(caught.value.problems)


def has_problem(problems: list[Problem], path: str, text: str) -> bool:
    return any(p.path == path and text in p.problem for p in problems)


# ---- valid alerts ----------------------------------------------------------------------------


def test_a_valid_custody_alert_parses_to_the_matching_alert() -> None:
    # given
    raw = custody_alert()
    # when
    alert = parse(raw, expected_kind="custody")
    # then
    assert alert.alert_id == raw["alert_id"]
    assert alert.sent_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert alert.source.kind is SourceKind.CUSTODY
    assert alert.source.organisation.code == "WYP"
    assert alert.source.reference == raw["source"]["reference"]
    assert alert.source.reported_by.id == "LD-0427"
    assert alert.person.name.given == ("Jordan", "Lee")
    assert alert.person.date_of_birth == date(1991, 4, 17)
    assert alert.person.nhs_number == raw["person"]["nhs_number"]
    assert alert.person.pnc_id == raw["person"]["pnc_id"]
    assert alert.person.address is not None
    assert alert.person.address.lines == ("Flat 3", "12 Example Street", "Leeds")
    assert alert.pathway is Pathway.ADULT
    assert alert.urgency is Urgency.URGENT
    assert [v.type for v in alert.vulnerabilities] == [
        VulnerabilityType.MENTAL_HEALTH,
        VulnerabilityType.ALCOHOL_MISUSE,
        VulnerabilityType.UNSTABLE_ACCOMMODATION,
    ]
    assert isinstance(alert.vulnerabilities, tuple)
    assert alert.consent.status is ConsentStatus.GIVEN
    assert alert.consent.share_with_justice is True
    assert alert.consent.recorded_at == datetime(2026, 11, 23, 9, 12, tzinfo=UTC)
    assert alert.hearing is None


def test_a_valid_court_alert_parses_with_its_hearing() -> None:
    # given
    raw = court_alert()
    # when
    alert = parse(raw, expected_kind="court")
    # then
    assert alert.source.kind is SourceKind.COURT
    assert alert.person.address is None
    assert alert.consent.share_with_justice is False
    assert alert.hearing is not None
    assert alert.hearing.at == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert alert.hearing.court == "Courtroom 4"


def test_datetimes_with_an_offset_come_back_aware_and_in_utc() -> None:
    # given a sender on British Summer Time
    raw = with_changes(custody_alert(), {"sent_at": "2026-11-23T10:30:00+01:00"})
    # when
    alert = parse(raw)
    # then
    assert alert.sent_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert alert.sent_at.utcoffset() == timedelta(0)
    assert alert.consent.recorded_at.tzinfo is not None


def test_an_alert_without_the_optional_person_fields_parses() -> None:
    # given
    raw = with_changes(
        custody_alert(),
        {"person.nhs_number": REMOVE, "person.pnc_id": REMOVE, "person.address": REMOVE},
    )
    # when
    alert = parse(raw)
    # then
    assert (alert.person.nhs_number, alert.person.pnc_id, alert.person.address) == (None,) * 3


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON"],
)
def test_json_content_types_with_or_without_a_utf8_charset_are_accepted(
    content_type: str,
) -> None:
    assert parse(custody_alert(), content_type=content_type).source.kind is SourceKind.CUSTODY


@pytest.mark.parametrize("name", ["alert-custody.json", "alert-court.json"])
def test_the_documented_example_alerts_parse(name: str) -> None:
    # given
    body = (EXAMPLES / name).read_bytes()
    sent_at = datetime.fromisoformat(json.loads(body)["sent_at"].replace("Z", "+00:00"))
    # when
    alert = parse(body, now=sent_at + timedelta(minutes=1))
    # then
    assert len(alert.vulnerabilities) >= 3
    assert (alert.hearing is not None) == (alert.source.kind is SourceKind.COURT)


# ---- bodies that cannot be read ----------------------------------------------------------------


def test_a_body_over_the_size_limit_is_rejected_with_its_size_and_the_limit() -> None:
    body = to_body(custody_alert())
    problems = problems_of(body, max_bytes=100)
    assert problems == [Problem("$", f"body is {len(body)} bytes; the limit is 100 bytes")]


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("text/plain", "content type must be application/json"),
        ("application/xml", "content type must be application/json"),
        ("application/json; charset=latin-1", "charset must be utf-8"),
    ],
)
def test_a_wrong_content_type_is_a_problem(content_type: str, text: str) -> None:
    assert has_problem(problems_of(custody_alert(), content_type=content_type), "$", text)


def test_a_body_that_is_not_utf8_is_rejected() -> None:
    body = to_body(custody_alert()).replace(b"Testperson", "Testpérson".encode("latin-1"))
    assert has_problem(problems_of(body), "$", "not valid UTF-8")


@pytest.mark.parametrize("body", [b"{", b"", b"{'a': 1}", b'{"alert_id": NaN}', b"[" * 100_000])
def test_a_body_that_is_not_json_is_rejected(body: bytes) -> None:
    problems = problems_of(body, max_bytes=1_000_000)
    assert [p.path for p in problems] == ["$"]
    assert problems[0].problem.startswith("not valid JSON")


def test_duplicate_keys_are_reported_at_the_object_that_holds_them() -> None:
    # given an alert whose person object says sex twice
    body = to_body(custody_alert()).replace(b'"sex": "male"', b'"sex": "male", "sex": "female"')
    # when
    problems = problems_of(body)
    # then
    assert problems == [Problem("person", "duplicate key 'sex'")]


@pytest.mark.parametrize("body", [b"[]", b'"alert"', b"42", b"null"])
def test_a_body_that_is_not_an_object_is_rejected(body: bytes) -> None:
    assert problems_of(body) == [Problem("$", "must be a JSON object")]


def test_an_unsupported_schema_version_names_the_supported_one_and_stops() -> None:
    raw = with_changes(custody_alert(), {"schema": "ld.identification-alert/2", "foo": 1})
    assert problems_of(raw) == [
        Problem("schema", "unsupported schema version: supported is ld.identification-alert/1")
    ]


def test_a_missing_schema_version_is_reported_with_the_other_problems() -> None:
    problems = problems_of(with_changes(custody_alert(), {"schema": REMOVE, "urgency": "soon"}))
    assert has_problem(problems, "schema", "supported is ld.identification-alert/1")
    assert has_problem(problems, "urgency", "must be one of")


# ---- schema problems ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path", "text"),
    [
        ({"foo": 1}, "$", "unknown field 'foo'"),
        ({"person.name.middle": "X"}, "person.name", "unknown field 'middle'"),
        ({"person.date_of_birth": REMOVE}, "person.date_of_birth", "required field missing"),
        ({"consent": REMOVE}, "consent", "required field missing"),
        ({"urgency": "soon"}, "urgency", "must be one of: routine, urgent, emergency"),
        ({"source.kind": "prison"}, "source.kind", "must be one of: custody, court"),
        ({"vulnerabilities[1].type": "grief"}, "vulnerabilities[1].type", "must be one of"),
        ({"person.date_of_birth": "1991-02-30"}, "person.date_of_birth", "not a valid date"),
        ({"person.date_of_birth": "17/04/1991"}, "person.date_of_birth", "not a valid date"),
        ({"alert_id": "not-a-uuid"}, "alert_id", "not a valid UUID"),
        ({"sent_at": "2026-11-23T09:30:00"}, "sent_at", "must include a timezone offset"),
        (
            {"consent.recorded_at": "2026-11-23T09:12:00"},
            "consent.recorded_at",
            "must include a timezone offset",
        ),
        ({"sent_at": "yesterday"}, "sent_at", "not a valid date-time"),
        ({"sent_at": "2026-11-23T25:30:00Z"}, "sent_at", "not a valid date-time"),
        ({"person.name.given[0]": 5}, "person.name.given[0]", "must be a string"),
        ({"person.name": "Jordan"}, "person.name", "must be an object"),
        ({"consent.share_with_justice": "yes"}, "consent.share_with_justice", "true or false"),
        ({"person.nhs_number": "12345"}, "person.nhs_number", "does not match the expected format"),
        ({"person.address.postcode": "ls11 5zz"}, "person.address.postcode", "expected format"),
        ({"vulnerabilities": []}, "vulnerabilities", "must have at least 1 item"),
        ({"person.name.family": ""}, "person.name.family", "must not be empty"),
        ({"hearing": {"at": "2026-11-23T14:00:00Z", "court": "1"}}, "hearing", "only allowed"),
    ],
)
def test_each_schema_fault_is_reported_at_its_field_path(
    changes: dict[str, Any], path: str, text: str
) -> None:
    # given a custody alert with one fault
    raw = with_changes(custody_alert(), changes)
    # when
    problems = problems_of(raw)
    # then
    assert has_problem(problems, path, text), problems


def test_a_court_alert_without_a_hearing_is_reported() -> None:
    problems = problems_of(with_changes(court_alert(), {"hearing": REMOVE}))
    assert problems == [
        Problem("hearing", "required field missing: court alerts must have a hearing")
    ]


def test_each_unknown_field_is_its_own_problem() -> None:
    problems = problems_of(with_changes(custody_alert(), {"foo": 1, "bar": 2}))
    assert set(problems) == {
        Problem("$", "unknown field 'foo'"),
        Problem("$", "unknown field 'bar'"),
    }


# ---- semantic problems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "path", "text"),
    [
        ({"person.nhs_number": "9990000027"}, "person.nhs_number", "fails the Modulus 11 check"),
        ({"person.nhs_number": "4857773456"}, "person.nhs_number", "fails the Modulus 11 check"),
        ({"person.pnc_id": "2019/0448213C"}, "person.pnc_id", "check character"),
        ({"person.pnc_id": "201/0448213B"}, "person.pnc_id", "check character"),
        ({"person.date_of_birth": "2026-11-24"}, "person.date_of_birth", "is in the future"),
        ({"sent_at": "2026-11-23T09:36:01Z"}, "sent_at", "more than 5 minutes after"),
        ({"consent.recorded_at": "2026-11-23T09:35:01Z"}, "consent.recorded_at", "after sent_at"),
        (
            {"pathway": "youth"},
            "pathway",
            "youth pathway requires a person under 18 on sent_at",
        ),
        (
            {"person.date_of_birth": "2008-11-24"},
            "pathway",
            "adult pathway requires a person aged 18 or over on sent_at",
        ),
        ({"person.date_of_birth": "1906-11-22"}, "person.date_of_birth", "more than 120 years"),
    ],
)
def test_each_semantic_fault_is_reported_at_its_field_path(
    changes: dict[str, Any], path: str, text: str
) -> None:
    problems = problems_of(with_changes(custody_alert(), changes))
    assert has_problem(problems, path, text), problems


@pytest.mark.parametrize(
    ("changes", "pathway"),
    [
        ({"person.date_of_birth": "2008-11-23"}, "adult"),  # 18th birthday on sent_at
        ({"person.date_of_birth": "2008-11-24", "pathway": "youth"}, "youth"),
        ({"person.date_of_birth": "1906-11-23"}, "adult"),  # exactly 120 years
        ({"sent_at": "2026-11-23T09:36:00Z"}, "adult"),  # exactly 5 minutes ahead
        ({"consent.recorded_at": "2026-11-23T09:35:00Z"}, "adult"),
    ],
)
def test_values_on_the_boundaries_are_accepted(changes: dict[str, Any], pathway: str) -> None:
    assert parse(with_changes(custody_alert(), changes)).pathway == pathway


def test_an_alert_on_the_wrong_queue_is_reported_at_source_kind() -> None:
    problems = problems_of(custody_alert(), expected_kind="court")
    assert problems == [Problem("source.kind", "does not match the queue it arrived on (court)")]


def test_an_alert_with_several_faults_reports_all_of_them() -> None:
    # given
    raw = with_changes(
        custody_alert(),
        {
            "foo": True,
            "urgency": REMOVE,
            "person.sex": "m",
            "person.nhs_number": "9990000027",
            "vulnerabilities[0].detail": 7,
            "pathway": "youth",
        },
    )
    # when
    problems = problems_of(raw, content_type="text/plain", expected_kind="court")
    # then
    expected = [
        ("$", "content type must be application/json"),
        ("$", "unknown field 'foo'"),
        ("urgency", "required field missing"),
        ("person.sex", "must be one of"),
        ("person.nhs_number", "Modulus 11"),
        ("vulnerabilities[0].detail", "must be a string"),
        ("pathway", "youth pathway requires"),
        ("source.kind", "does not match the queue"),
    ]
    for path, text in expected:
        assert has_problem(problems, path, text), (path, problems)
    assert len(problems) == len(expected)


def test_problem_messages_never_contain_the_values_sent() -> None:
    # given personal data in bad values and in an unknown field, and a name used as a key
    secrets = ["9990000027", "Zebedee Quixotic", "2099-12-31", "zz99 9qq", "01/23456A", "Morwenna"]
    raw = with_changes(
        custody_alert(),
        {
            "person.nhs_number": secrets[0],
            "nickname": secrets[1],
            "person.date_of_birth": secrets[2],
            "person.address.postcode": secrets[3],
            "person.pnc_id": secrets[4],
            "person.name.Morwenna Quist": 1,
            "person.name.given[0]": 123456789,
            "urgency": secrets[5],
        },
    )
    # when
    with pytest.raises(InvalidMessage) as caught:
        parse(raw)
    # then
    text = str(caught.value) + " ".join(p.path + p.problem for p in caught.value.problems)
    for secret in [*secrets, "123456789", "Quist"]:
        assert secret.lower() not in text.lower()
    assert has_problem(list(caught.value.problems), "person.name", "unknown field (name not shown)")


def test_an_invalid_alert_carries_its_alert_id_for_the_rejection() -> None:
    raw = with_changes(custody_alert(), {"urgency": "soon"})
    with pytest.raises(InvalidMessage) as caught:
        parse(raw)
    assert caught.value.alert_id == raw["alert_id"]


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(custody_alert(), now=datetime(2026, 11, 23, 9, 31))


def test_now_in_another_offset_is_compared_as_an_instant() -> None:
    now = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert parse(custody_alert(), now=now).sent_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


# ---- NHS numbers -------------------------------------------------------------------------------


def reference_nhs_number_is_valid(s: str) -> bool:
    # Independent formulation: with the check digit weighted 1, a valid number's weighted sum is
    # a multiple of 11 (a required check of 10 can never be met by one digit).
    if len(s) != 10 or not all(c in "0123456789" for c in s):
        return False
    return (
        sum(int(c) * w for c, w in zip(s, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1], strict=True)) % 11 == 0
    )


def with_check_digit(prefix: str) -> str | None:
    for digit in "0123456789":
        if reference_nhs_number_is_valid(prefix + digit):
            return prefix + digit
    return None


@pytest.mark.parametrize("number", ["9434765919", "9476719931", "9990000026", "9997654323"])
def test_known_valid_nhs_numbers_are_valid(number: str) -> None:
    assert nhs_number_is_valid(number)


@pytest.mark.parametrize(
    "number",
    ["4857773456", "3478526985", "9434765918", "943476591", "94347659190", "943476591X", "", " "],
)
def test_known_invalid_nhs_numbers_are_invalid(number: str) -> None:
    assert not nhs_number_is_valid(number)


def test_an_nhs_number_whose_check_would_be_10_is_invalid_whatever_its_last_digit() -> None:
    # given a prefix for which 11 - (sum mod 11) == 10
    prefix = next(
        p for p in (f"{n:09d}" for n in range(100_000_000, 100_001_000)) if not with_check_digit(p)
    )
    # then no tenth digit makes it valid
    assert not any(nhs_number_is_valid(prefix + d) for d in "0123456789")


def test_nhs_numbers_in_other_scripts_digits_are_invalid() -> None:
    assert not nhs_number_is_valid("٩٤٣٤٧٦٥٩١٩")  # 9434765919 in Arabic-Indic digits


@given(st.text(alphabet="0123456789", min_size=9, max_size=11))
def test_nhs_number_check_agrees_with_an_independent_implementation(number: str) -> None:
    assert nhs_number_is_valid(number) == reference_nhs_number_is_valid(number)


@given(
    st.text(alphabet="0123456789", min_size=9, max_size=9),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=1, max_value=9),
)
def test_changing_any_one_digit_of_a_valid_nhs_number_makes_it_invalid(
    prefix: str, position: int, shift: int
) -> None:
    # given a valid number (prefixes whose check would be 10 have none)
    number = with_check_digit(prefix)
    if number is None:
        return
    assert nhs_number_is_valid(number)
    # when one digit changes (every weight is non-zero mod 11, so the check always changes)
    changed_digit = str((int(number[position]) + shift) % 10)
    changed = number[:position] + changed_digit + number[position + 1 :]
    # then
    assert not nhs_number_is_valid(changed)


# ---- PNC ids -----------------------------------------------------------------------------------

PNC_LETTERS = "ZABCDEFGHJKLMNPQRTUVWXY"


@pytest.mark.parametrize(
    "pnc_id",
    [
        "01/23456K",  # check letters computed: 010023456 % 23 == 10 -> K
        "01/1111X",
        "0123456K",  # no slash, two-digit year
        "2001/0023456K",
        "20010023456K",  # no slash, four-digit year
        "2003/0062845E",  # MoJ hmpps-person-record test data
        "1979/0026538X",
        "2012/394773H",
        "2019/0448213B",
        "2009/0391846F",
    ],
)
def test_pnc_ids_with_the_right_check_letter_are_valid(pnc_id: str) -> None:
    assert pnc_id_is_valid(pnc_id)


@pytest.mark.parametrize(
    "pnc_id",
    [
        "01/23456A",
        "01/1111A",
        "2003/0062845F",
        "2003/0062845e",
        "2003/00628451",
        "201/0448213B",  # three-digit year
        "1803/0062845E",  # a four-digit year must be 19xx or 20xx
        "01/12345678A",  # serial longer than 7 digits
        "",
    ],
)
def test_pnc_ids_with_a_wrong_check_letter_or_shape_are_invalid(pnc_id: str) -> None:
    assert not pnc_id_is_valid(pnc_id)


@given(
    st.integers(min_value=1900, max_value=2099),
    st.integers(min_value=0, max_value=9_999_999),
    st.booleans(),
    st.sampled_from(PNC_LETTERS),
)
def test_a_pnc_id_is_valid_exactly_when_its_letter_is_the_computed_one(
    year: int, serial: int, short_year: bool, letter: str
) -> None:
    # given
    yy = f"{year % 100:02d}"
    expected = PNC_LETTERS[int(yy + f"{serial:07d}") % 23]
    pnc_id = f"{yy if short_year else year}/{serial}{letter}"
    # then
    assert pnc_id_is_valid(pnc_id) == (letter == expected)


# ---- schemas, outcomes, and identity for rejections --------------------------------------------


def test_load_schema_returns_the_packaged_schema_and_is_safe_to_mutate() -> None:
    schema = load_schema("ld.identification-alert.1")
    schema["title"] = "changed"
    assert load_schema("ld.identification-alert.1")["title"] == "ld.identification-alert/1"
    assert load_schema("ld.referral-outcome.1")["title"] == "ld.referral-outcome/1"


@pytest.mark.parametrize("name", ["nope.1", "../errors", ""])
def test_load_schema_refuses_unknown_or_odd_names(name: str) -> None:
    with pytest.raises(ValueError):
        load_schema(name)


def an_outcome(**changes: Any) -> dict[str, Any]:
    outcome = ReferralOutcome(
        outcome_id=str(uuid.uuid4()),
        alert_id=str(uuid.uuid4()),
        reference="WY-26-004517",
        source_kind=SourceKind.CUSTODY,
        organisation_code="WYP",
        status=OutcomeStatus.REJECTED,
        at=datetime(2026, 11, 23, 9, 31, tzinfo=UTC),
        reasons=(Problem("urgency", "required field missing"),),
    ).to_json_dict()
    return with_changes(outcome, changes)


def test_a_valid_outcome_has_no_problems() -> None:
    assert validate_outcome(an_outcome()) == []


def test_an_invalid_outcome_reports_every_problem() -> None:
    # given
    outcome = an_outcome(status="lost", at="2026-11-23T09:31:00", extra=1, outcome_id=REMOVE)
    # when
    problems = validate_outcome(outcome)
    # then
    assert set(problems) == {
        Problem("status", "must be one of: " + ", ".join(s.value for s in OutcomeStatus)),
        Problem("at", "must include a timezone offset"),
        Problem("$", "unknown field 'extra'"),
        Problem("outcome_id", "required field missing"),
    }


def test_peek_identity_finds_the_ids_of_an_alert_that_failed_validation() -> None:
    raw = with_changes(custody_alert(), {"person.nhs_number": "4857773456", "foo": 1})
    assert peek_identity(to_body(raw)) == (raw["alert_id"], "WY-26-004517")


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'{"alert_id": 7, "source": "x"}',
        b'{"alert_id": "has spaces in it", "source": {"reference": "<script>"}}',
        b"[" * 100_000,
    ],
)
def test_peek_identity_gives_none_for_what_it_cannot_trust(body: bytes) -> None:
    assert peek_identity(body) == (None, None)


@given(st.binary(max_size=200))
def test_peek_identity_never_raises(body: bytes) -> None:
    alert_id, reference = peek_identity(body)
    assert alert_id is None or isinstance(alert_id, str)
    assert reference is None or isinstance(reference, str)


# ---- the fixture factory itself ----------------------------------------------------------------


def test_factory_overrides_deep_merge_and_sent_at_moves_the_consent_time() -> None:
    # when
    raw = court_alert(alert_id="1f1c7dae-1c52-4543-8f82-cea9276c3bf9", person={"sex": "male"})
    later = custody_alert(sent_at="2026-12-01T12:00:00Z")
    # then
    assert raw["alert_id"] == "1f1c7dae-1c52-4543-8f82-cea9276c3bf9"
    assert raw["person"]["sex"] == "male" and raw["person"]["name"]["family"] == "Sampleton"
    assert later["consent"]["recorded_at"] == "2026-12-01T11:42:00Z"
    assert parse(later, now=datetime(2026, 12, 1, 12, 0, tzinfo=UTC)).sent_at.day == 1
    assert custody_alert()["alert_id"] != custody_alert()["alert_id"]


def test_with_changes_leaves_the_original_alone() -> None:
    raw = custody_alert()
    changed = with_changes(raw, {"vulnerabilities[0].type": "autism", "person.sex": REMOVE})
    assert changed["vulnerabilities"][0]["type"] == "autism" and "sex" not in changed["person"]
    assert raw["vulnerabilities"][0]["type"] == "mental_health" and "sex" in raw["person"]
