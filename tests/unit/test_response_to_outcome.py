"""response_to_outcome: the round trip for every status a service can send, and every refusal."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.errors import InvalidMessage
from hub.messages import OutcomeStatus, ServiceResponse
from hub.transforms.response_status import BUSINESS_STATUS_SYSTEM
from hub.transforms.response_to_outcome import build_service_response, parse_service_response

pytestmark = pytest.mark.unit

REFERRAL_ID = "03737d84-98a9-511b-94f2-061134bebc1a"
MESSAGE_ID = "5b0e6a34-1f0c-4d51-9d6e-2f7a8c9b0d1e"
AT = datetime(2025, 4, 4, 15, 45, 12, 250000, tzinfo=UTC)
SERVICE_SENDS = [
    s for s in OutcomeStatus if s not in (OutcomeStatus.REJECTED, OutcomeStatus.OVERDUE)
]


def response(status: OutcomeStatus = OutcomeStatus.ACCEPTED, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "referral_bundle_id": REFERRAL_ID,
        "service_ods": "RGD",
        "service_name": "Leeds Liaison and Diversion",
        "status": status,
        "at": AT,
        "message_id": MESSAGE_ID,
    }
    return build_service_response(**(fields | extra))


def entry_of(bundle: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    )


def problems_of(bundle: object) -> list[tuple[str, str]]:
    with pytest.raises(InvalidMessage) as caught:
        parse_service_response(bundle)  # type: ignore[arg-type]
    assert caught.value.stage == "response_to_outcome"
    return [(p.path, p.problem) for p in caught.value.problems]


def paths_of(bundle: object) -> list[str]:
    return [path for path, _ in problems_of(bundle)]


@pytest.mark.parametrize("status", SERVICE_SENDS)
def test_every_status_a_service_sends_survives_the_round_trip(status: OutcomeStatus) -> None:
    referred_to = "Community mental health team" if status is OutcomeStatus.REFERRED_ON else None
    bundle = response(
        status,
        recommendation="Fit to be interviewed with an appropriate adult.",
        note="Known to CMHT; care coordinator informed.",
        referred_to=referred_to,
    )

    parsed = parse_service_response(json.loads(json.dumps(bundle)))

    assert parsed == ServiceResponse(
        response_to=REFERRAL_ID,
        message_id=MESSAGE_ID,
        sender_ods="RGD",
        status=status,
        at=AT,
        recommendation="Fit to be interviewed with an appropriate adult.",
        referred_to=referred_to,
        note="Known to CMHT; care coordinator informed.",
    )


@pytest.mark.parametrize("status", SERVICE_SENDS)
def test_a_bare_response_has_no_recommendation_note_or_onward_service(
    status: OutcomeStatus,
) -> None:
    parsed = parse_service_response(response(status))

    assert (parsed.status, parsed.recommendation, parsed.note, parsed.referred_to) == (
        status,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("status", SERVICE_SENDS)
def test_every_built_response_validates_as_fhir_r4(status: OutcomeStatus) -> None:
    Bundle.model_validate(json.loads(json.dumps(response(status, recommendation="r", note="n"))))


@pytest.mark.parametrize("status", [OutcomeStatus.REJECTED, OutcomeStatus.OVERDUE])
def test_hub_made_statuses_cannot_be_built_as_a_service_response(status: OutcomeStatus) -> None:
    with pytest.raises(ValueError, match="hub makes it"):
        response(status)


def test_a_time_with_an_offset_is_kept_as_the_same_instant() -> None:
    local = AT.astimezone(timezone(timedelta(hours=1)))

    parsed = parse_service_response(response(at=local))

    assert parsed.at == AT


def test_a_revoked_service_request_without_a_task_means_closed() -> None:
    bundle = response(note="Discharged.")
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Task"]
    entry_of(bundle, "ServiceRequest")["status"] = "revoked"

    parsed = parse_service_response(bundle)

    assert (parsed.status, parsed.note, parsed.recommendation) == (
        OutcomeStatus.CLOSED,
        "Discharged.",
        None,
    )


def test_several_notes_are_joined_in_order() -> None:
    bundle = response()
    entry_of(bundle, "Task")["note"] = [{"text": "first"}, {"text": "second"}]

    assert parse_service_response(bundle).recommendation == "first\n\nsecond"


def _drop(resource_type: str) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        bundle["entry"] = [
            e for e in bundle["entry"] if e["resource"]["resourceType"] != resource_type
        ]

    return change


def _set(resource_type: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        entry_of(bundle, resource_type)[key] = value

    return change


def _business(code: str | None) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        task = entry_of(bundle, "Task")
        if code is None:
            task.pop("businessStatus", None)
        else:
            task["businessStatus"] = {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": code}]}

    return change


def _duplicate(resource_type: str) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        extra = copy.deepcopy(
            next(e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)
        )
        extra["resource"]["id"] = "another"
        extra["fullUrl"] = "urn:uuid:another"
        bundle["entry"].append(extra)

    return change


def _header(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        if value is None:
            bundle["entry"][0]["resource"].pop(key)
        else:
            bundle["entry"][0]["resource"][key] = value

    return change


def _all(*changes: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        for one in changes:
            one(bundle)

    return change


def _sender_ods(bundle: dict[str, Any]) -> None:
    entry_of(bundle, "Organization")["identifier"] = [
        {"system": "https://example.org/x", "value": "1"}
    ]


def _reversed(bundle: dict[str, Any]) -> None:
    bundle["entry"].reverse()


def _type_history(bundle: dict[str, Any]) -> None:
    bundle["type"] = "history"


def _not_fhir(bundle: dict[str, Any]) -> None:
    bundle["entry"][1]["resource"]["resourceType"] = "Nonsense"


def _bad_timestamp(bundle: dict[str, Any]) -> None:
    bundle["timestamp"] = "2025-04-04T15:45:12"  # no offset: not a FHIR instant


def _extra_field(bundle: dict[str, Any]) -> None:
    bundle["entry"][0]["resource"]["colour"] = "blue"


def _two_referred_to(bundle: dict[str, Any]) -> None:
    task = entry_of(bundle, "Task")
    task["output"] = task["output"] * 2


UNMAPPABLE: dict[str, tuple[OutcomeStatus, Callable[[dict[str, Any]], None], str]] = {
    "not a message bundle": (OutcomeStatus.ACCEPTED, _type_history, "Bundle.type"),
    "message header not first": (
        OutcomeStatus.ACCEPTED,
        _reversed,
        "Bundle.entry[0].resource.resourceType",
    ),
    "wrong event": (
        OutcomeStatus.ACCEPTED,
        _header(
            "eventCoding",
            {
                "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
                "code": "servicerequest-request",
            },
        ),
        "Bundle.entry[0].resource.eventCoding",
    ),
    "no response element": (
        OutcomeStatus.ACCEPTED,
        _header("response", None),
        "Bundle.entry[0].resource.response",
    ),
    "response code not ok": (
        OutcomeStatus.ACCEPTED,
        _header("response", {"identifier": REFERRAL_ID, "code": "fatal-error"}),
        "Bundle.entry[0].resource.response.code",
    ),
    "no sender": (
        OutcomeStatus.ACCEPTED,
        _header("sender", None),
        "Bundle.entry[0].resource.sender",
    ),
    "sender does not resolve": (
        OutcomeStatus.ACCEPTED,
        _header("sender", {"reference": "urn:uuid:nowhere"}),
        "Bundle.entry[0].resource.sender",
    ),
    "sender without ods code": (
        OutcomeStatus.ACCEPTED,
        _sender_ods,
        "Bundle.entry[3].resource.identifier",
    ),
    "neither task nor service request": (
        OutcomeStatus.ACCEPTED,
        _all(_drop("Task"), _drop("ServiceRequest")),
        "Bundle.entry",
    ),
    "two tasks": (OutcomeStatus.ACCEPTED, _duplicate("Task"), "Bundle.entry"),
    "two service requests": (OutcomeStatus.ACCEPTED, _duplicate("ServiceRequest"), "Bundle.entry"),
    "unknown task status": (
        OutcomeStatus.ACCEPTED,
        _set("Task", "status", "on-hold"),
        "Bundle.entry[1].resource.status",
    ),
    "cancelled task": (
        OutcomeStatus.ACCEPTED,
        _set("Task", "status", "cancelled"),
        "Bundle.entry[1].resource.status",
    ),
    "in-progress without business status": (
        OutcomeStatus.SCREENED,
        _business(None),
        "Bundle.entry[1].resource.status",
    ),
    "completed without business status": (
        OutcomeStatus.ATTENDED,
        _business(None),
        "Bundle.entry[1].resource.status",
    ),
    "unknown business status": (
        OutcomeStatus.ATTENDED,
        _business("went-fishing"),
        "Bundle.entry[1].resource.businessStatus",
    ),
    "business status on the wrong task status": (
        OutcomeStatus.ATTENDED,
        _business("screened"),
        "Bundle.entry[1].resource.businessStatus",
    ),
    "business status on received": (
        OutcomeStatus.RECEIVED,
        _business("attended"),
        "Bundle.entry[1].resource.businessStatus",
    ),
    "business status as text only": (
        OutcomeStatus.ASSESSED,
        _set("Task", "businessStatus", {"text": "assessed"}),
        "Bundle.entry[1].resource.businessStatus",
    ),
    "active service request alone": (
        OutcomeStatus.ACCEPTED,
        _drop("Task"),
        "Bundle.entry[1].resource.status",
    ),
    "draft service request alone": (
        OutcomeStatus.ACCEPTED,
        _all(_drop("Task"), _set("ServiceRequest", "status", "draft")),
        "Bundle.entry[1].resource.status",
    ),
    "closed service request beside an open task": (
        OutcomeStatus.ACCEPTED,
        _set("ServiceRequest", "status", "revoked"),
        "Bundle.entry[2].resource.status",
    ),
    "two referred-to outputs": (
        OutcomeStatus.REFERRED_ON,
        _two_referred_to,
        "Bundle.entry[1].resource.output[0]",
    ),
    "unknown resource type": (
        OutcomeStatus.ACCEPTED,
        _not_fhir,
        "Bundle.entry[1].resource.resourceType",
    ),
    "timestamp without offset": (OutcomeStatus.ACCEPTED, _bad_timestamp, "Bundle.timestamp"),
    "field FHIR does not have": (
        OutcomeStatus.ACCEPTED,
        _extra_field,
        "Bundle.entry[0].resource.colour",
    ),
}


@pytest.mark.parametrize("case", sorted(UNMAPPABLE))
def test_an_unmappable_response_is_refused_with_the_path_at_fault(case: str) -> None:
    status, change, path = UNMAPPABLE[case]
    bundle = response(
        status, referred_to="Housing" if status is OutcomeStatus.REFERRED_ON else None
    )
    change(bundle)

    assert path in paths_of(bundle)


@pytest.mark.parametrize("body", [None, [], "Bundle", {"resourceType": "Patient"}])
def test_something_that_is_not_a_bundle_is_refused(body: object) -> None:
    assert paths_of(body) == ["Bundle"]


def test_every_problem_is_reported_together() -> None:
    bundle = response()
    _type_history(bundle)
    _header("response", None)(bundle)
    _set("Task", "status", "on-hold")(bundle)

    assert set(paths_of(bundle)) >= {
        "Bundle.type",
        "Bundle.entry[0].resource.response",
        "Bundle.entry[1].resource.status",
    }


def test_problems_never_quote_the_values_they_refuse() -> None:
    bundle = response(recommendation="SECRET-CLINICAL-TEXT")
    entry_of(bundle, "Task")["note"] = [{"text": "SECRET-CLINICAL-TEXT", "time": "yesterday"}]

    problems = problems_of(bundle)

    assert problems
    assert all("SECRET" not in problem and "yesterday" not in problem for _, problem in problems)


def _paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*path, i))
    return found


def _without(bundle: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return changed


def _full_response() -> dict[str, Any]:
    return response(OutcomeStatus.REFERRED_ON, recommendation="r", note="n", referred_to="Housing")


@pytest.mark.parametrize("path", _paths(_full_response()), ids=str)
def test_removing_any_element_gives_a_response_or_invalid_message_never_a_crash(
    path: tuple[str | int, ...],
) -> None:
    bundle = _without(_full_response(), path)

    try:
        parsed = parse_service_response(bundle)
    except InvalidMessage as exc:
        assert exc.problems
    else:
        assert parsed.response_to == REFERRAL_ID


# --- Encounter, Appointment and CarePlan (tables in hub/transforms/response_status.py) ---------

SNOMED = "http://snomed.info/sct"
DAT_CODE, DAT = "417096006", "Community drug and alcohol team"
HOUSING_CODE, HOUSING = "710911006", "Housing service"
S = OutcomeStatus


def _add(bundle: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    bundle["entry"].append({"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource})
    return bundle


def path_of(bundle: dict[str, Any], resource_id: str) -> str:
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["id"] == resource_id)
    return f"Bundle.entry[{index}].resource"


def sender_ref(bundle: dict[str, Any]) -> dict[str, str]:
    return {"reference": f"urn:uuid:{entry_of(bundle, 'Organization')['id']}"}


def encounter(bundle: dict[str, Any], status: str, *, by_sender: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "encounter-1",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    }
    if by_sender:
        resource["serviceProvider"] = sender_ref(bundle)
    return _add(bundle, resource)


def appointment(bundle: dict[str, Any], status: str) -> dict[str, Any]:
    return _add(
        bundle,
        {
            "resourceType": "Appointment",
            "id": "appointment-1",
            "status": status,
            "participant": [{"actor": {"display": "the person"}, "status": "accepted"}],
        },
    )


def referral(
    status: str = "completed", *, code: str = DAT_CODE, kind: str = "ServiceRequest", **extra: Any
) -> dict[str, Any]:
    coding = {"system": SNOMED, "code": code, "display": "whatever the sender calls it"}
    return {"detail": {"kind": kind, "status": status, "code": {"coding": [coding]}, **extra}}


def care_plan(
    bundle: dict[str, Any], status: str, *activities: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": "care-plan-1",
        "status": status,
        "intent": "plan",
        "subject": {"display": "the person named in the referral"},
        **extra,
    }
    if activities:
        resource["activity"] = list(activities)
    return _add(bundle, resource)


def no_task(**extra: Any) -> dict[str, Any]:
    """A response with an active ServiceRequest and no Task: on its own it says nothing."""
    bundle = response(OutcomeStatus.ACCEPTED, **extra)
    _drop("Task")(bundle)
    return bundle


def status_of(bundle: dict[str, Any]) -> OutcomeStatus:
    return parse_service_response(json.loads(json.dumps(bundle))).status


NOTHING_TO_MAP = "Bundle.entry[1].resource.status"  # the active ServiceRequest of no_task()

ENCOUNTER_ALONE: dict[str, OutcomeStatus | None] = {
    "finished": S.ATTENDED,
    "arrived": None,
    "in-progress": None,
    "onleave": None,
    "planned": None,
    "triaged": None,
}
APPOINTMENT_ALONE: dict[str, OutcomeStatus | None] = {
    "noshow": S.DID_NOT_ATTEND,
    "arrived": None,
    "checked-in": None,
    "fulfilled": None,
    "proposed": None,
    "pending": None,
    "booked": None,
    "waitlist": None,
}
REFUSED_CODES = ["cancelled", "entered-in-error", "unknown", "went-fishing"]


@pytest.mark.parametrize("status", sorted(ENCOUNTER_ALONE))
def test_each_encounter_status_of_the_service_maps_as_the_table_says(status: str) -> None:
    bundle = encounter(no_task(), status)

    expected = ENCOUNTER_ALONE[status]
    if expected is None:
        assert NOTHING_TO_MAP in paths_of(bundle)
    else:
        assert status_of(bundle) is expected


@pytest.mark.parametrize("status", REFUSED_CODES)
def test_a_cancelled_or_unknown_encounter_status_is_refused_even_beside_a_task(
    status: str,
) -> None:
    bundle = encounter(response(OutcomeStatus.DID_NOT_ATTEND), status)

    assert f"{path_of(bundle, 'encounter-1')}.status" in paths_of(bundle)


def test_a_cancelled_encounter_is_refused_with_the_way_to_say_did_not_attend() -> None:
    bundle = encounter(no_task(), "cancelled")

    [(_, problem)] = problems_of(bundle)
    assert "Appointment noshow" in problem


def test_an_encounter_the_sender_does_not_provide_is_not_read() -> None:
    bundle = response(OutcomeStatus.DID_NOT_ATTEND)
    custody = copy.deepcopy(entry_of(bundle, "Organization")) | {"id": "custody-suite"}
    custody["identifier"] = [
        {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "X"}
    ]
    _add(bundle, custody)
    encounter(bundle, "finished", by_sender=False)
    entry_of(bundle, "Encounter")["serviceProvider"] = {"reference": "urn:uuid:custody-suite"}

    assert status_of(bundle) is S.DID_NOT_ATTEND


def test_an_encounter_without_a_service_provider_alone_is_nothing_to_map() -> None:
    bundle = encounter(no_task(), "finished", by_sender=False)

    assert NOTHING_TO_MAP in paths_of(bundle)


@pytest.mark.parametrize("status", sorted(APPOINTMENT_ALONE))
def test_each_appointment_status_maps_as_the_table_says(status: str) -> None:
    bundle = appointment(no_task(), status)

    expected = APPOINTMENT_ALONE[status]
    if expected is None:
        assert NOTHING_TO_MAP in paths_of(bundle)
    else:
        assert status_of(bundle) is expected


@pytest.mark.parametrize("status", REFUSED_CODES)
def test_a_cancelled_or_unknown_appointment_status_is_refused(status: str) -> None:
    bundle = appointment(response(OutcomeStatus.DID_NOT_ATTEND), status)

    assert f"{path_of(bundle, 'appointment-1')}.status" in paths_of(bundle)


def test_a_no_show_appointment_alone_is_did_not_attend_as_in_the_bars_dna_feedback() -> None:
    bundle = no_task()
    entry_of(bundle, "ServiceRequest")["status"] = "revoked"
    appointment(bundle, "noshow")

    assert status_of(bundle) is S.DID_NOT_ATTEND


CARE_PLAN_ROWS: list[tuple[str, bool, OutcomeStatus | None]] = [
    ("active", True, S.REFERRED_ON),
    ("completed", True, S.REFERRED_ON),
    ("completed", False, S.CLOSED),
    ("revoked", False, S.CLOSED),
    ("draft", False, None),
    ("active", False, None),
    ("on-hold", False, None),
]


@pytest.mark.parametrize(("status", "refers", "expected"), CARE_PLAN_ROWS)
def test_each_care_plan_row_maps_as_the_table_says(
    status: str, refers: bool, expected: OutcomeStatus | None
) -> None:
    bundle = care_plan(no_task(), status, *([referral()] if refers else []))

    if expected is None:
        assert NOTHING_TO_MAP in paths_of(bundle)
    else:
        parsed = parse_service_response(bundle)
        assert (parsed.status, parsed.referred_to) == (expected, DAT if refers else None)


@pytest.mark.parametrize("status", ["revoked", "draft", "on-hold", *REFUSED_CODES])
def test_a_care_plan_status_that_does_not_go_with_a_referral_is_refused(status: str) -> None:
    bundle = care_plan(no_task(), status, referral())

    assert f"{path_of(bundle, 'care-plan-1')}.status" in paths_of(bundle)


@pytest.mark.parametrize("status", ["entered-in-error", "unknown", "went-fishing"])
def test_an_unknown_care_plan_status_is_refused(status: str) -> None:
    bundle = care_plan(response(OutcomeStatus.CLOSED), status)

    assert f"{path_of(bundle, 'care-plan-1')}.status" in paths_of(bundle)


@pytest.mark.parametrize(
    ("activity_status", "expected"),
    [
        ("in-progress", S.REFERRED_ON),
        ("completed", S.REFERRED_ON),
        ("not-started", S.CLOSED),
        ("scheduled", S.CLOSED),
        ("on-hold", S.CLOSED),
        ("cancelled", S.CLOSED),
        ("stopped", S.CLOSED),
    ],
)
def test_only_a_referral_in_progress_or_completed_has_been_made(
    activity_status: str, expected: OutcomeStatus
) -> None:
    bundle = care_plan(no_task(), "completed", referral(activity_status))

    assert status_of(bundle) is expected


@pytest.mark.parametrize("activity_status", ["entered-in-error", "unknown", "went-fishing"])
def test_an_unknown_referral_activity_status_is_refused(activity_status: str) -> None:
    bundle = care_plan(no_task(), "completed", referral(activity_status))

    assert f"{path_of(bundle, 'care-plan-1')}.activity[0].detail.status" in paths_of(bundle)


@pytest.mark.parametrize(
    "activity",
    [
        referral(kind="Appointment"),
        referral(kind="MedicationRequest"),
        referral(doNotPerform=True),
        {"outcomeCodeableConcept": [{"text": "seen and advised"}]},
    ],
    ids=["appointment", "medication", "do-not-perform", "outcome-only"],
)
def test_an_activity_that_is_not_a_referral_says_nothing_about_referring_on(
    activity: dict[str, Any],
) -> None:
    bundle = care_plan(no_task(), "completed", activity)

    assert status_of(bundle) is S.CLOSED


def test_referred_to_is_the_hubs_label_for_the_code_never_the_senders_display() -> None:
    bundle = care_plan(no_task(), "active", referral())

    assert parse_service_response(bundle).referred_to == DAT


@pytest.mark.parametrize(
    "code",
    [
        {"coding": [{"system": SNOMED, "code": "306206005", "display": "Referral to service"}]},
        {"coding": [{"system": SNOMED, "code": "123456789"}]},
        {"coding": [{"system": "https://trust.example/services", "code": "cmht"}]},
        {"text": "Community mental health team"},
        None,
        {
            "coding": [
                {"system": SNOMED, "code": DAT_CODE},
                {"system": SNOMED, "code": HOUSING_CODE},
            ]
        },
    ],
    ids=["generic-referral", "unlisted", "local-only", "text-only", "missing", "two-services"],
)
def test_a_referral_without_one_known_coded_service_type_is_refused(
    code: dict[str, Any] | None,
) -> None:
    activity = referral()
    if code is None:
        del activity["detail"]["code"]
    else:
        activity["detail"]["code"] = code
    bundle = care_plan(no_task(), "active", activity)

    assert f"{path_of(bundle, 'care-plan-1')}.activity[0].detail.code" in paths_of(bundle)


def test_the_same_service_coded_twice_is_one_service() -> None:
    activity = referral()
    activity["detail"]["code"]["coding"].append({"system": SNOMED, "code": DAT_CODE})
    bundle = care_plan(no_task(), "active", activity)

    assert parse_service_response(bundle).referred_to == DAT


def test_two_referrals_in_one_response_are_refused() -> None:
    bundle = care_plan(no_task(), "active", referral(), referral(code=HOUSING_CODE))

    assert f"{path_of(bundle, 'care-plan-1')}.activity[1].detail" in paths_of(bundle)


def test_care_plan_notes_are_clinical_never_the_recommendation() -> None:
    bundle = no_task(note="From the ServiceRequest.")
    care_plan(
        bundle,
        "active",
        referral(description="DETAIL-TEXT"),
        note=[{"text": "From the CarePlan."}],
        description="DESCRIPTION-TEXT",
    )

    parsed = parse_service_response(bundle)

    assert (parsed.recommendation, parsed.note) == (
        None,
        "From the ServiceRequest.\n\nFrom the CarePlan.",
    )
    assert "TEXT" not in repr(parsed)


def test_the_task_note_stays_the_recommendation_beside_a_care_plan() -> None:
    bundle = response(OutcomeStatus.REFERRED_ON, recommendation="For the court.", note="Clinical.")
    care_plan(bundle, "active", referral(), note=[{"text": "Plan."}])

    parsed = parse_service_response(bundle)

    assert (parsed.recommendation, parsed.note, parsed.referred_to) == (
        "For the court.",
        "Clinical.\n\nPlan.",
        DAT,
    )


# Without a Task: the first of referred_on, attended, did_not_attend, closed decides.
def _closed(bundle: dict[str, Any]) -> dict[str, Any]:
    entry_of(bundle, "ServiceRequest")["status"] = "completed"
    return bundle


def test_without_a_task_a_referral_on_outranks_attendance() -> None:
    bundle = care_plan(encounter(no_task(), "finished"), "active", referral())

    assert status_of(bundle) is S.REFERRED_ON


def test_without_a_task_attendance_outranks_a_closed_service_request() -> None:
    assert status_of(encounter(_closed(no_task()), "finished")) is S.ATTENDED


def test_without_a_task_a_no_show_outranks_a_closed_care_plan() -> None:
    bundle = care_plan(appointment(no_task(), "noshow"), "completed")

    assert status_of(bundle) is S.DID_NOT_ATTEND


@pytest.mark.parametrize(
    ("build", "at_fault"),
    [
        (lambda b: appointment(encounter(b, "finished"), "noshow"), "appointment-1"),
        (lambda b: appointment(encounter(b, "in-progress"), "noshow"), "encounter-1"),
        (lambda b: care_plan(appointment(b, "noshow"), "active", referral()), "appointment-1"),
    ],
    ids=["finished-and-no-show", "present-and-no-show", "no-show-and-referred-on"],
)
def test_without_a_task_resources_that_contradict_each_other_are_refused(
    build: Callable[[dict[str, Any]], dict[str, Any]], at_fault: str
) -> None:
    bundle = build(no_task())

    assert f"{path_of(bundle, at_fault)}.status" in paths_of(bundle)


# With a Task, the Task decides; each other resource must agree with it.
SAYS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "closed": lambda b: b,  # the builder's completed ServiceRequest; made revoked below
    "present": lambda b: encounter(b, "in-progress"),
    "attended": lambda b: encounter(b, "finished"),
    "did_not_attend": lambda b: appointment(b, "noshow"),
    "referred_on": lambda b: care_plan(b, "active", referral()),
}
AGREES_WITH: dict[str, set[OutcomeStatus]] = {
    "closed": {S.DECLINED, S.ATTENDED, S.DID_NOT_ATTEND, S.REFERRED_ON, S.CLOSED},
    "present": {S.SCREENED, S.ASSESSED, S.ATTENDED, S.REFERRED_ON, S.CLOSED},
    "attended": {S.SCREENED, S.ASSESSED, S.ATTENDED, S.REFERRED_ON, S.CLOSED},
    "did_not_attend": {S.DID_NOT_ATTEND, S.CLOSED},
    "referred_on": {S.REFERRED_ON, S.CLOSED},
}
AT_FAULT = {
    "closed": "Bundle.entry[2].resource.status",
    "present": "Bundle.entry[4].resource.status",
    "attended": "Bundle.entry[4].resource.status",
    "did_not_attend": "Bundle.entry[4].resource.status",
    "referred_on": "Bundle.entry[4].resource.activity[0].detail",
}


@pytest.mark.parametrize("task", SERVICE_SENDS, ids=str)
@pytest.mark.parametrize("says", sorted(SAYS))
def test_a_resource_beside_the_task_must_agree_with_it(says: str, task: OutcomeStatus) -> None:
    bundle = SAYS[says](response(task))
    if says == "closed":
        entry_of(bundle, "ServiceRequest")["status"] = "revoked"

    if task in AGREES_WITH[says]:
        assert status_of(bundle) is task
    else:
        assert AT_FAULT[says] in paths_of(bundle)


def test_a_contradiction_is_reported_without_quoting_the_resource() -> None:
    bundle = appointment(response(OutcomeStatus.ATTENDED), "noshow")
    entry_of(bundle, "Appointment")["comment"] = "SECRET-CLINICAL-TEXT"

    [(path, problem)] = problems_of(bundle)

    assert path == "Bundle.entry[4].resource.status"
    assert "contradicts the Task" in problem and "SECRET" not in problem


def test_the_task_decides_when_it_says_closed_after_a_referral_on() -> None:
    bundle = care_plan(response(OutcomeStatus.CLOSED), "completed", referral())

    parsed = parse_service_response(bundle)

    assert (parsed.status, parsed.referred_to) == (S.CLOSED, None)


def test_a_coded_service_type_wins_over_the_tasks_free_text() -> None:
    bundle = care_plan(
        response(OutcomeStatus.REFERRED_ON, referred_to="drugs team"), "active", referral()
    )

    assert parse_service_response(bundle).referred_to == DAT


def _coded_output(code: str) -> Callable[[dict[str, Any]], None]:
    def change(bundle: dict[str, Any]) -> None:
        output = entry_of(bundle, "Task")["output"][0]
        del output["valueString"]
        output["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": code}]}

    return change


def test_the_task_may_name_the_onward_service_by_code() -> None:
    bundle = response(OutcomeStatus.REFERRED_ON, referred_to="x")
    _coded_output(HOUSING_CODE)(bundle)

    assert parse_service_response(bundle).referred_to == HOUSING


def test_a_task_coding_an_unknown_onward_service_is_refused() -> None:
    bundle = response(OutcomeStatus.REFERRED_ON, referred_to="x")
    _coded_output("123456789")(bundle)

    assert "Bundle.entry[1].resource.output[0].valueCodeableConcept" in paths_of(bundle)


def test_a_task_and_a_care_plan_coding_different_services_are_refused() -> None:
    bundle = response(OutcomeStatus.REFERRED_ON, referred_to="x")
    _coded_output(HOUSING_CODE)(bundle)
    care_plan(bundle, "active", referral(code=DAT_CODE))

    assert "Bundle.entry[4].resource.activity[0].detail" in paths_of(bundle)


ENCOUNTER_CODES = [*ENCOUNTER_ALONE, *REFUSED_CODES]
APPOINTMENT_CODES = [*APPOINTMENT_ALONE, *REFUSED_CODES]
CARE_PLAN_CODES = ["active", "completed", "revoked", "draft", "on-hold", *REFUSED_CODES]
fhir_code = st.from_regex(r"[a-z][a-z\-]{0,15}", fullmatch=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    task=st.one_of(st.none(), st.sampled_from(SERVICE_SENDS)),
    encounter_status=st.one_of(st.none(), st.sampled_from(ENCOUNTER_CODES), fhir_code),
    appointment_status=st.one_of(st.none(), st.sampled_from(APPOINTMENT_CODES), fhir_code),
    plan=st.one_of(
        st.none(),
        st.tuples(
            st.one_of(st.sampled_from(CARE_PLAN_CODES), fhir_code),
            st.one_of(st.none(), st.sampled_from(["in-progress", "not-started"]), fhir_code),
        ),
    ),
)
def test_any_mix_of_resources_maps_consistently_or_is_refused_never_crashes(
    task: OutcomeStatus | None,
    encounter_status: str | None,
    appointment_status: str | None,
    plan: tuple[str, str | None] | None,
) -> None:
    bundle = response(task) if task is not None else no_task()
    if encounter_status is not None:
        encounter(bundle, encounter_status)
    if appointment_status is not None:
        appointment(bundle, appointment_status)
    if plan is not None:
        care_plan(bundle, plan[0], *([referral(plan[1])] if plan[1] else []))

    try:
        parsed = parse_service_response(bundle)
    except InvalidMessage as exc:
        assert exc.problems
        return
    assert task is None or parsed.status is task
    if encounter_status is not None:
        assert encounter_status in ENCOUNTER_ALONE
        if encounter_status in ("finished", "arrived", "in-progress", "onleave"):
            assert parsed.status in AGREES_WITH["attended"]
    if appointment_status is not None:
        assert appointment_status in APPOINTMENT_ALONE
        if appointment_status == "noshow":
            assert parsed.status in AGREES_WITH["did_not_attend"]
    if plan is not None:
        assert plan[0] in CARE_PLAN_CODES[:5]


def _rich_response() -> dict[str, Any]:
    bundle = response(OutcomeStatus.REFERRED_ON, recommendation="r", note="n", referred_to="x")
    encounter(bundle, "finished")
    appointment(bundle, "fulfilled")
    return care_plan(bundle, "active", referral(), note=[{"text": "p"}])


def test_the_rich_response_maps_and_validates_as_fhir_r4() -> None:
    Bundle.model_validate(json.loads(json.dumps(_rich_response())))

    assert parse_service_response(_rich_response()).referred_to == DAT


@pytest.mark.parametrize("path", _paths(_rich_response()), ids=str)
def test_removing_any_element_of_a_rich_response_never_crashes(
    path: tuple[str | int, ...],
) -> None:
    bundle = _without(_rich_response(), path)

    try:
        parsed = parse_service_response(bundle)
    except InvalidMessage as exc:
        assert exc.problems
    else:
        assert parsed.response_to == REFERRAL_ID
