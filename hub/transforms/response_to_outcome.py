"""BaRS servicerequest-response message Bundle ⇄ ServiceResponse (what the hub acts on).

Pure: no clock, no uuid4, no I/O, no logging. What cannot be mapped is an InvalidMessage listing
every problem found (FHIR paths, never the values): the parser never guesses. Which status a
response says, and when its resources contradict each other, is response_status.py; the full
table for service implementers and justice readers is docs/outcome-mapping.md.

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
| Task, ServiceRequest, Encounter,          | status (response_status.py)                          |
| Appointment, CarePlan                     |                                                      |
| Task.note[].text (joined by a blank line) | recommendation: meant for the court / custody        |
| Task.output[type=referred-to], or a       | referred_to (response_status.py)                     |
| CarePlan referral's coded service type    |                                                      |
| ServiceRequest.note[].text, then          | note: clinical, stays on the health side             |
| CarePlan.note[].text (joined)             |                                                      |

The recommendation rides on the Task because the Task is the service's answer about this
referral; every other free text is clinical, so the two never mix. Free text that is not a
`note` (CarePlan.description, activity details, Appointment.comment…) is not read at all.
`rejected` and `overdue` are made by the hub, never by a service: build_service_response
refuses them.
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
from hub.transforms.fhir_vocabulary import (
    BARS_BUNDLE_PROFILE,
    ID_NAMESPACE,
    MESSAGE_EVENTS_SYSTEM,
    MESSAGE_REASON_SYSTEM,
    ODS_SYSTEM,
    UKCORE_PROFILE,
    fhir_instant,
)
from hub.transforms.response_status import (
    BUSINESS_STATUS_SYSTEM,
    REFERRED_TO,
    TASK_OUTPUT_SYSTEM,
    TASK_STATUS_FOR,
    decide,
    of_type,
    resolve,
)
from hub.transforms.response_status import resource_path as _res

__all__ = [
    "BUSINESS_STATUS_SYSTEM",
    "TASK_OUTPUT_SYSTEM",
    "build_service_response",
    "parse_service_response",
]

STAGE = "response_to_outcome"
RESPONSE_DEFINITION = (
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral"
)


def _path(loc: Sequence[int | str]) -> str:
    return "Bundle" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


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


def _notes(resources: Sequence[Mapping[str, Any]]) -> str | None:
    texts = [n["text"] for r in resources for n in r.get("note", []) if n.get("text")]
    return "\n\n".join(texts) if texts else None


def _sender(
    entries: list[Mapping[str, Any]], header: Mapping[str, Any], problems: list[Problem]
) -> tuple[int | None, str | None]:
    """The sending Organization's entry index and its ODS code."""
    found = resolve(entries, (header.get("sender") or {}).get("reference"))
    if found is None or found[1]["resourceType"] != "Organization":
        problems.append(
            Problem(f"{_res(0)}.sender", "must reference an Organization in the Bundle")
        )
        return None, None
    index, org = found
    codes = [i.get("value") for i in org.get("identifier", []) if i.get("system") == ODS_SYSTEM]
    if len(codes) != 1 or not codes[0]:
        problems.append(Problem(f"{_res(index)}.identifier", "needs exactly one ODS code"))
        return index, None
    return index, str(codes[0])


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
    sender_index, sender_ods = _sender(entries, header, problems)
    decision = decide(entries, sender_index=sender_index, problems=problems)
    if (
        problems
        or message_id is None
        or at is None
        or response_to is None
        or sender_ods is None
        or decision.status is None
    ):
        raise InvalidMessage(problems, stage=STAGE)
    clinical = [decision.service_request] if decision.service_request is not None else []
    return ServiceResponse(
        response_to=response_to,
        message_id=message_id,
        sender_ods=sender_ods,
        status=decision.status,
        at=at,
        recommendation=_notes([decision.task[1]]) if decision.task is not None else None,
        referred_to=decision.referred_to,
        note=_notes([r for _, r in clinical + of_type(entries, "CarePlan")]),
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
    if status not in TASK_STATUS_FOR:
        raise ValueError(f"a service never sends {status}: the hub makes it")
    task_status, business = TASK_STATUS_FOR[status]
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
