"""response_to_outcome: the round trip for every status a service can send, and every refusal."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from hub.errors import InvalidMessage
from hub.messages import OutcomeStatus, ServiceResponse
from hub.transforms.response_to_outcome import (
    BUSINESS_STATUS_SYSTEM,
    build_service_response,
    parse_service_response,
)

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
