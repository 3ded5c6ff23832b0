"""BaRS servicerequest-response message Bundle ⇄ ServiceResponse (what the hub acts on).

Pure: no clock, no uuid4, no I/O, no logging. What cannot be mapped is an InvalidMessage listing
every problem found (FHIR paths, never the values): the parser never guesses.

How a service answers (BaRS "reversing roles": it POSTs a message Bundle to the hub's
`$process-message`), and how it is read:

| FHIR path                                 | ServiceResponse / rule                               |
|-------------------------------------------|------------------------------------------------------|
| Bundle                                    | must validate as FHIR R4 (R4B models), type message  |
| Bundle.id                                 | message_id                                           |
| Bundle.timestamp                          | at                                                   |
| Bundle.entry[0].resource                  | a MessageHeader, eventCoding servicerequest-response |
|                                           | (system message-events-bars)                         |
| MessageHeader.response.identifier         | response_to (= the referral Bundle's id)             |
| MessageHeader.response.code               | must be `ok` (failures come back as HTTP errors)     |
| MessageHeader.sender → Organization       | sender_ods (its one ODS_SYSTEM identifier)           |
| Task (at most one): status, businessStat. | status (table below)                                 |
| ServiceRequest (at most one): status      | status when there is no Task (table below)           |
| Task.note[].text (joined by a blank line) | recommendation: meant for the court / custody        |
| Task.output[type=referred-to].valueString | referred_to                                          |
| ServiceRequest.note[].text (joined)       | note: clinical, stays on the health side             |

The recommendation rides on the Task because the Task is the service's answer about this
referral; the clinical note stays on the ServiceRequest, so the two never mix. businessStatus
is read from its coding in BUSINESS_STATUS_SYSTEM only; text is never interpreted.

| Task.status | Task.businessStatus                       | status                      |
|-------------|-------------------------------------------|-----------------------------|
| received    | (none)                                    | received                    |
| accepted    | (none)                                    | accepted                    |
| rejected    | (none)                                    | declined                    |
| in-progress | screened / assessed                       | screened / assessed         |
| completed   | attended / did-not-attend / referred-on / | attended / did_not_attend / |
|             | closed                                    | referred_on / closed        |
| any other   | or businessStatus missing / unknown / not |                             |
|             | allowed with this status                  | InvalidMessage              |

| ServiceRequest.status (no Task) | status                                            |
|---------------------------------|---------------------------------------------------|
| revoked, completed              | closed                                            |
| active                          | InvalidMessage: an open referral says nothing new |
| anything else                   | InvalidMessage                                    |

With both, the Task decides; a revoked or completed ServiceRequest beside a Task that is still
received / accepted / in-progress is a contradiction (InvalidMessage). `rejected` and `overdue`
are made by the hub, never by a service: build_service_response refuses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from hub.errors import InvalidMessage
from hub.messages import OutcomeStatus, Problem, ServiceResponse
from hub.transforms.alert_to_referral import (
    BARS_BUNDLE_PROFILE,
    ID_NAMESPACE,
    MESSAGE_EVENTS_SYSTEM,
    MESSAGE_REASON_SYSTEM,
    ODS_SYSTEM,
    PROJECT_BASE,
    UKCORE_PROFILE,
    fhir_instant,
)

STAGE = "response_to_outcome"
BUSINESS_STATUS_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-referral-business-status"
TASK_OUTPUT_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-referral-task-output"
REFERRED_TO = "referred-to"
RESPONSE_DEFINITION = (
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral"
)

_TASK_ONLY: dict[str, OutcomeStatus] = {
    "received": OutcomeStatus.RECEIVED,
    "accepted": OutcomeStatus.ACCEPTED,
    "rejected": OutcomeStatus.DECLINED,
}
_TASK_WITH_BUSINESS: dict[tuple[str, str], OutcomeStatus] = {
    ("in-progress", "screened"): OutcomeStatus.SCREENED,
    ("in-progress", "assessed"): OutcomeStatus.ASSESSED,
    ("completed", "attended"): OutcomeStatus.ATTENDED,
    ("completed", "did-not-attend"): OutcomeStatus.DID_NOT_ATTEND,
    ("completed", "referred-on"): OutcomeStatus.REFERRED_ON,
    ("completed", "closed"): OutcomeStatus.CLOSED,
}
_TASK_STATUS_FOR: dict[OutcomeStatus, tuple[str, str | None]] = {
    **{status: (task, None) for task, status in _TASK_ONLY.items()},
    **{status: pair for pair, status in _TASK_WITH_BUSINESS.items()},
}
_SR_CLOSED = ("revoked", "completed")
_TASK_OPEN = ("received", "accepted", "in-progress")

_Entry = tuple[int, Mapping[str, Any]]


def _path(loc: Sequence[int | str]) -> str:
    return "Bundle" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _res(index: int) -> str:
    return f"Bundle.entry[{index}].resource"


def _structure_problems(bundle: object) -> list[Problem]:
    """Everything the R4B models reject, with FHIR paths (pydantic messages carry no values)."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return [Problem("Bundle", "not a FHIR Bundle")]
    entries = bundle.get("entry")
    if isinstance(entries, list):
        unknown = []
        for i, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(resource, Mapping):
                unknown.append(Problem(f"Bundle.entry[{i}].resource", "missing or not an object"))
                continue
            try:
                get_fhir_model_class(str(resource.get("resourceType")))
            except ValueError:
                unknown.append(Problem(f"{_res(i)}.resourceType", "not a FHIR R4 resource type"))
        if unknown:
            return unknown
    try:
        Bundle.model_validate(bundle)
    except pydantic.ValidationError as exc:
        return [Problem(_path(err["loc"]), err["msg"]) for err in exc.errors()]
    return []


def _resolve(entries: list[Mapping[str, Any]], reference: object) -> _Entry | None:
    """The entry a Reference points at: by fullUrl, or by `<type>/<id>`."""
    if not isinstance(reference, str):
        return None
    for i, entry in enumerate(entries):
        resource = entry["resource"]
        if reference in (entry.get("fullUrl"), f"{resource['resourceType']}/{resource.get('id')}"):
            return i, resource
    return None


def _of_type(entries: list[Mapping[str, Any]], resource_type: str) -> list[_Entry]:
    return [
        (i, e["resource"])
        for i, e in enumerate(entries)
        if e["resource"]["resourceType"] == resource_type
    ]


def _notes(resource: Mapping[str, Any]) -> str | None:
    texts = [note["text"] for note in resource.get("note", [])]
    return "\n\n".join(texts) if texts else None


def _sender_ods(
    entries: list[Mapping[str, Any]], header: Mapping[str, Any], problems: list[Problem]
) -> str | None:
    found = _resolve(entries, header.get("sender", {}).get("reference"))
    if found is None or found[1]["resourceType"] != "Organization":
        problems.append(
            Problem(f"{_res(0)}.sender", "must reference an Organization in the Bundle")
        )
        return None
    index, org = found
    codes = [i.get("value") for i in org.get("identifier", []) if i.get("system") == ODS_SYSTEM]
    if len(codes) != 1 or not codes[0]:
        problems.append(Problem(f"{_res(index)}.identifier", "needs exactly one ODS code"))
        return None
    return str(codes[0])


def _business_status(index: int, task: Mapping[str, Any], problems: list[Problem]) -> str | None:
    if "businessStatus" not in task:
        return None
    codes = [
        c.get("code")
        for c in task["businessStatus"].get("coding", [])
        if c.get("system") == BUSINESS_STATUS_SYSTEM
    ]
    if len(codes) != 1 or not codes[0]:
        problems.append(
            Problem(
                f"{_res(index)}.businessStatus",
                f"needs exactly one coding from {BUSINESS_STATUS_SYSTEM}",
            )
        )
        return None
    return str(codes[0])


def _task_status(
    index: int, task: Mapping[str, Any], problems: list[Problem]
) -> OutcomeStatus | None:
    before = len(problems)
    business = _business_status(index, task, problems)
    if len(problems) > before:
        return None
    status = task["status"]
    if business is None and status in _TASK_ONLY:
        return _TASK_ONLY[status]
    if business is not None and (status, business) in _TASK_WITH_BUSINESS:
        return _TASK_WITH_BUSINESS[(status, business)]
    where = f"{_res(index)}.businessStatus" if business is not None else f"{_res(index)}.status"
    problems.append(Problem(where, "this Task status and businessStatus have no mapping"))
    return None


def _referred_to(index: int, task: Mapping[str, Any], problems: list[Problem]) -> str | None:
    values = [
        (n, output)
        for n, output in enumerate(task.get("output", []))
        if any(
            c.get("system") == TASK_OUTPUT_SYSTEM and c.get("code") == REFERRED_TO
            for c in output["type"].get("coding", [])
        )
    ]
    if not values:
        return None
    n, output = values[0]
    if len(values) > 1 or "valueString" not in output:
        problems.append(
            Problem(f"{_res(index)}.output[{n}]", "needs one referred-to output with valueString")
        )
        return None
    return str(output["valueString"])


def parse_service_response(bundle: Mapping[str, Any]) -> ServiceResponse:
    """Reduce a servicerequest-response message Bundle to a ServiceResponse, or say why not."""
    problems = _structure_problems(bundle)
    if problems:
        raise InvalidMessage(problems, stage=STAGE)
    entries: list[Mapping[str, Any]] = bundle.get("entry", [])
    if not entries or entries[0]["resource"]["resourceType"] != "MessageHeader":
        raise InvalidMessage(
            [Problem(f"{_res(0)}.resourceType", "the first entry must be a MessageHeader")],
            stage=STAGE,
        )
    header = entries[0]["resource"]
    message_id, at = _bundle_facts(bundle, problems)
    response_to = _response_to(header, problems)
    sender_ods = _sender_ods(entries, header, problems)
    status, task, service_request = _status(entries, problems)
    referred_to = _referred_to(*task, problems) if task is not None else None
    if (
        problems
        or message_id is None
        or at is None
        or response_to is None
        or sender_ods is None
        or status is None
    ):
        raise InvalidMessage(problems, stage=STAGE)
    return ServiceResponse(
        response_to=response_to,
        message_id=message_id,
        sender_ods=sender_ods,
        status=status,
        at=at,
        recommendation=_notes(task[1]) if task is not None else None,
        referred_to=referred_to,
        note=_notes(service_request[1]) if service_request is not None else None,
    )


def _bundle_facts(
    bundle: Mapping[str, Any], problems: list[Problem]
) -> tuple[str | None, datetime | None]:
    if bundle["type"] != "message":
        problems.append(Problem("Bundle.type", "must be message"))
    message_id = bundle.get("id")
    if not message_id:
        problems.append(Problem("Bundle.id", "missing: the response's own message id"))
    at = None
    if not bundle.get("timestamp"):
        problems.append(Problem("Bundle.timestamp", "missing"))
    else:
        try:
            at = datetime.fromisoformat(bundle["timestamp"])
        except ValueError:
            problems.append(Problem("Bundle.timestamp", "not a time the hub can represent"))
    return message_id, at


def _response_to(header: Mapping[str, Any], problems: list[Problem]) -> str | None:
    event = header.get("eventCoding", {})
    if (event.get("system"), event.get("code")) != (
        MESSAGE_EVENTS_SYSTEM,
        "servicerequest-response",
    ):
        problems.append(
            Problem(
                f"{_res(0)}.eventCoding", "must be servicerequest-response (message-events-bars)"
            )
        )
    response = header.get("response")
    if response is None:
        problems.append(Problem(f"{_res(0)}.response", "missing: which referral does this answer?"))
        return None
    if response["code"] != "ok":
        problems.append(Problem(f"{_res(0)}.response.code", "must be ok"))
    return str(response["identifier"])


def _status(
    entries: list[Mapping[str, Any]], problems: list[Problem]
) -> tuple[OutcomeStatus | None, _Entry | None, _Entry | None]:
    """The outcome status from the Task and/or ServiceRequest, and those two entries."""
    tasks = _of_type(entries, "Task")
    requests = _of_type(entries, "ServiceRequest")
    for name, found in (("Task", tasks), ("ServiceRequest", requests)):
        if len(found) > 1:
            problems.append(Problem("Bundle.entry", f"more than one {name}"))
    if len(tasks) > 1 or len(requests) > 1:
        return None, None, None
    task = tasks[0] if tasks else None
    request = requests[0] if requests else None
    if task is None and request is None:
        problems.append(Problem("Bundle.entry", "neither a Task nor a ServiceRequest to map"))
        return None, None, None
    request_closed = request is not None and request[1]["status"] in _SR_CLOSED
    if task is None:
        assert request is not None
        if request_closed:
            return OutcomeStatus.CLOSED, None, request
        problems.append(
            Problem(
                f"{_res(request[0])}.status",
                "without a Task only revoked or completed can be mapped",
            )
        )
        return None, None, request
    if request is not None and request_closed and task[1]["status"] in _TASK_OPEN:
        problems.append(
            Problem(
                f"{_res(request[0])}.status",
                "the ServiceRequest is closed but the Task is still open",
            )
        )
    return _task_status(*task, problems), task, request


def _rid(message_id: str, role: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{message_id}|response|{role}"))


def build_service_response(
    *,
    referral_bundle_id: str,
    service_ods: str,
    service_name: str,
    status: OutcomeStatus,
    at: datetime,
    message_id: str,
    recommendation: str | None = None,
    note: str | None = None,
    referred_to: str | None = None,
) -> dict[str, Any]:
    """The message Bundle a service sends back (the demo's pretend trust, tests): the inverse
    of parse_service_response. Resource ids are uuid5 over message_id, so it stays pure."""
    if status not in _TASK_STATUS_FOR:
        raise ValueError(f"a service never sends {status}: the hub makes it")
    task_status, business = _TASK_STATUS_FOR[status]
    when = fhir_instant(at)
    header_id, task_id, sr_id, org_id = (
        _rid(message_id, role) for role in ("message-header", "task", "service-request", "sender")
    )

    def meta(profile: str) -> dict[str, Any]:
        return {"profile": [profile], "lastUpdated": when}

    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": meta(UKCORE_PROFILE + "Task"),
        "status": task_status,
        "intent": "order",
        "focus": {"reference": f"urn:uuid:{sr_id}"},
        "lastModified": when,
        "owner": {"reference": f"urn:uuid:{org_id}"},
    }
    if business is not None:
        task["businessStatus"] = {"coding": [{"system": BUSINESS_STATUS_SYSTEM, "code": business}]}
    if recommendation:
        task["note"] = [{"text": recommendation}]
    if referred_to:
        task["output"] = [
            {
                "type": {"coding": [{"system": TASK_OUTPUT_SYSTEM, "code": REFERRED_TO}]},
                "valueString": referred_to,
            }
        ]
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sr_id,
        "meta": meta(UKCORE_PROFILE + "ServiceRequest"),
        "status": "completed" if task_status == "completed" else "active",
        "intent": "plan",
        # R4 needs a subject; the referral named the person, the answer need not repeat them.
        "subject": {"display": "the person named in the referral"},
        "performer": [{"reference": f"urn:uuid:{org_id}"}],
    }
    if note:
        service_request["note"] = [{"text": note}]
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "meta": meta(UKCORE_PROFILE + "MessageHeader"),
        "eventCoding": {"system": MESSAGE_EVENTS_SYSTEM, "code": "servicerequest-response"},
        "sender": {"reference": f"urn:uuid:{org_id}"},
        # The service's own reply address is not known here; its ODS code stands in.
        "source": {"endpoint": f"{ODS_SYSTEM}|{service_ods}"},
        "reason": {"coding": [{"system": MESSAGE_REASON_SYSTEM, "code": "new", "display": "New"}]},
        "response": {"identifier": referral_bundle_id, "code": "ok"},
        "focus": [{"reference": f"urn:uuid:{sr_id}"}],
        "definition": RESPONSE_DEFINITION,
    }
    organization = {
        "resourceType": "Organization",
        "id": org_id,
        "meta": meta(UKCORE_PROFILE + "Organization"),
        "identifier": [{"system": ODS_SYSTEM, "value": service_ods}],
        "name": service_name,
    }
    resources = [header, task, service_request, organization]
    return {
        "resourceType": "Bundle",
        "id": message_id,
        "meta": meta(BARS_BUNDLE_PROFILE),
        "type": "message",
        "timestamp": when,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
