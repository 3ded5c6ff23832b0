"""The justice status a service's response says: every status table, and the one decision.

Pure: no clock, no I/O, no logging. Reads a servicerequest-response Bundle that has already
validated as FHIR R4 (response_to_outcome checks that first) and appends a Problem (FHIR path,
never a value) for anything it cannot map: it never guesses. docs/outcome-mapping.md is the
reader's version of these tables; this docstring is the review checklist.

Every resource read *says* one thing: a justice status, `present` (the person was there: no
status of its own, but it rules out did_not_attend), or `nothing`. A status code missing from
its table (entered-in-error, unknown, anything FHIR R4 does not have) is refused.

| resource: which ones are read           | status (and condition)                   | says           |
|-----------------------------------------|------------------------------------------|----------------|
| Task: at most one                       | table below                              | decides        |
| ServiceRequest: at most one             | revoked, completed                       | closed         |
|                                         | draft, active, on-hold                   | nothing        |
| Encounter: only those whose             | finished                                 | attended       |
| serviceProvider is MessageHeader.sender | arrived, in-progress, onleave            | present        |
| (the referral's custody or court        | planned, triaged                         | nothing        |
| Encounter, echoed back, is not read)    | cancelled: R4 says neither who nor why   | refused        |
| Appointment: every one (the referral    | noshow                                   | did_not_attend |
| carries none: each is the service's)    | arrived, checked-in, fulfilled           | present        |
|                                         | proposed, pending, booked, waitlist      | nothing        |
|                                         | cancelled: not a no-show                 | refused        |
| CarePlan: every one (the referral       | active or completed, with a referral     | referred_on    |
| carries none)                           | completed or revoked, no referral        | closed         |
|                                         | draft, active or on-hold, no referral    | nothing        |
|                                         | revoked, draft or on-hold + a referral   | refused        |

A referral is a CarePlan.activity.detail of kind ServiceRequest (doNotPerform not true) whose
status is in-progress or completed; not-started, scheduled, on-hold, cancelled and stopped ones
are not (yet) referrals; entered-in-error and unknown are refused. A referral's detail.code
names the service by a SNOMED CT code listed in onward_services.py; referred_to is the hub's
label for it (never the sender's display or text). An unlisted code, none, or codes for two
services is refused. At most one referral per response (one onward service each).

| Task.status | Task.businessStatus (BUSINESS_STATUS_SYSTEM)     | status                       |
|-------------|--------------------------------------------------|------------------------------|
| received    | (none)                                           | received                     |
| accepted    | (none)                                           | accepted                     |
| rejected    | (none)                                           | declined                     |
| in-progress | screened / assessed                              | screened / assessed          |
| completed   | attended / did-not-attend / referred-on / closed | attended / did_not_attend /  |
|             |                                                  | referred_on / closed         |
| any other, or businessStatus missing, unknown, text only, or not for this status: refused |

Precedence. With a Task, the Task decides. Without one, the first of referred_on, attended,
did_not_attend, closed that any resource says decides (WITHOUT_TASK); nothing said is refused.
Then every resource must agree with the status decided (AGREES), or the response is refused as
a contradiction, at that resource's path:

| a resource that says | agrees only with                                        | why                     |
|----------------------|---------------------------------------------------------|-------------------------|
| nothing              | any status                                              |                         |
| closed               | declined, attended, did_not_attend, referred_on, closed | the referral is over    |
| present, attended    | screened, assessed, attended, referred_on, closed       | the service has started |
| did_not_attend       | did_not_attend, closed                                  |                         |
| referred_on          | referred_on, closed                                     |                         |

referred_to: when the status is referred_on and a CarePlan makes a referral, its service type
(a coded service type wins over free text); otherwise the Task's output of type `referred-to`
(TASK_OUTPUT_SYSTEM): valueString as sent, or valueCodeableConcept read like a referral's
detail.code. A coded Task output naming another service than the CarePlan is a contradiction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hub.messages import OutcomeStatus, Problem
from hub.transforms.fhir_vocabulary import PROJECT_BASE
from hub.transforms.onward_services import onward_service

BUSINESS_STATUS_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-referral-business-status"
TASK_OUTPUT_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-referral-task-output"
REFERRED_TO = "referred-to"
DOCS = "docs/outcome-mapping.md"

Entry = tuple[int, Mapping[str, Any]]


class Says(StrEnum):
    NOTHING = "nothing"
    PRESENT = "present"
    CLOSED = "closed"
    ATTENDED = "attended"
    DID_NOT_ATTEND = "did_not_attend"
    REFERRED_ON = "referred_on"


S = OutcomeStatus
TASK_ONLY: dict[str, OutcomeStatus] = {
    "received": S.RECEIVED,
    "accepted": S.ACCEPTED,
    "rejected": S.DECLINED,
}
TASK_WITH_BUSINESS: dict[tuple[str, str], OutcomeStatus] = {
    ("in-progress", "screened"): S.SCREENED,
    ("in-progress", "assessed"): S.ASSESSED,
    ("completed", "attended"): S.ATTENDED,
    ("completed", "did-not-attend"): S.DID_NOT_ATTEND,
    ("completed", "referred-on"): S.REFERRED_ON,
    ("completed", "closed"): S.CLOSED,
}
TASK_STATUS_FOR: dict[OutcomeStatus, tuple[str, str | None]] = {
    **{status: (task, None) for task, status in TASK_ONLY.items()},
    **{status: pair for pair, status in TASK_WITH_BUSINESS.items()},
}

SERVICE_REQUEST_SAYS: dict[str, Says] = {
    **dict.fromkeys(("revoked", "completed"), Says.CLOSED),
    **dict.fromkeys(("draft", "active", "on-hold"), Says.NOTHING),
}
ENCOUNTER_SAYS: dict[str, Says] = {
    "finished": Says.ATTENDED,
    **dict.fromkeys(("arrived", "in-progress", "onleave"), Says.PRESENT),
    # BaRS uses triaged for a telephone triage: the person need not have been there.
    **dict.fromkeys(("planned", "triaged"), Says.NOTHING),
}
APPOINTMENT_SAYS: dict[str, Says] = {
    # BaRS's own "Safeguarding DNA Feedback" response (REFRESP01) says it this way.
    "noshow": Says.DID_NOT_ATTEND,
    **dict.fromkeys(("arrived", "checked-in", "fulfilled"), Says.PRESENT),
    **dict.fromkeys(("proposed", "pending", "booked", "waitlist"), Says.NOTHING),
}
CARE_PLAN_SAYS: dict[tuple[str, bool], Says] = {  # (CarePlan.status, makes a referral)
    **dict.fromkeys((("active", True), ("completed", True)), Says.REFERRED_ON),
    **dict.fromkeys((("completed", False), ("revoked", False)), Says.CLOSED),
    **dict.fromkeys((("draft", False), ("active", False), ("on-hold", False)), Says.NOTHING),
}
# CarePlan.activity.detail.status of a ServiceRequest activity: has the referral been made?
REFERRAL_MADE: dict[str, bool] = {
    **dict.fromkeys(("in-progress", "completed"), True),
    **dict.fromkeys(("not-started", "scheduled", "on-hold", "cancelled", "stopped"), False),
}
_REFUSED_WHY = {
    ("Encounter", "cancelled"): "a cancelled Encounter says neither who cancelled nor why: send "
    "Appointment noshow, or the Task, for did_not_attend",
    ("Appointment", "cancelled"): "a cancelled Appointment is not a no-show: send Appointment "
    "noshow, or the Task, for did_not_attend",
}

_SEEN = frozenset({S.SCREENED, S.ASSESSED, S.ATTENDED, S.REFERRED_ON, S.CLOSED})
AGREES: dict[Says, frozenset[OutcomeStatus]] = {
    Says.NOTHING: frozenset(OutcomeStatus),
    Says.CLOSED: frozenset({S.DECLINED, S.ATTENDED, S.DID_NOT_ATTEND, S.REFERRED_ON, S.CLOSED}),
    Says.PRESENT: _SEEN,
    Says.ATTENDED: _SEEN,
    Says.DID_NOT_ATTEND: frozenset({S.DID_NOT_ATTEND, S.CLOSED}),
    Says.REFERRED_ON: frozenset({S.REFERRED_ON, S.CLOSED}),
}
WITHOUT_TASK = (Says.REFERRED_ON, Says.ATTENDED, Says.DID_NOT_ATTEND, Says.CLOSED)


@dataclass(frozen=True, slots=True)
class Statement:
    """What one resource says, and the FHIR path a contradiction is reported at."""

    says: Says
    path: str
    what: str


@dataclass(frozen=True, slots=True)
class Decision:
    status: OutcomeStatus | None
    task: Entry | None = None
    service_request: Entry | None = None
    referred_to: str | None = None


def resource_path(index: int) -> str:
    return f"Bundle.entry[{index}].resource"


def resolve(entries: list[Mapping[str, Any]], reference: object) -> Entry | None:
    """The entry a Reference points at: by fullUrl, or by `<type>/<id>`."""
    if not isinstance(reference, str):
        return None
    for i, entry in enumerate(entries):
        resource = entry["resource"]
        if reference in (entry.get("fullUrl"), f"{resource['resourceType']}/{resource.get('id')}"):
            return i, resource
    return None


def of_type(entries: list[Mapping[str, Any]], resource_type: str) -> list[Entry]:
    return [
        (i, e["resource"])
        for i, e in enumerate(entries)
        if e["resource"]["resourceType"] == resource_type
    ]


def decide(
    entries: list[Mapping[str, Any]], *, sender_index: int | None, problems: list[Problem]
) -> Decision:
    """The status the response says, with the Task and ServiceRequest it came from."""
    before = len(problems)
    tasks, requests = of_type(entries, "Task"), of_type(entries, "ServiceRequest")
    for name, found in (("Task", tasks), ("ServiceRequest", requests)):
        if len(found) > 1:
            problems.append(Problem("Bundle.entry", f"more than one {name}"))
    if len(tasks) > 1 or len(requests) > 1:
        return Decision(None)
    task = tasks[0] if tasks else None
    request = requests[0] if requests else None
    statements: list[Statement] = []
    if request is not None:
        _read_status(request, SERVICE_REQUEST_SAYS, "the ServiceRequest", statements, problems)
    for encounter in of_type(entries, "Encounter"):
        provider = resolve(entries, (encounter[1].get("serviceProvider") or {}).get("reference"))
        if sender_index is not None and provider is not None and provider[0] == sender_index:
            _read_status(encounter, ENCOUNTER_SAYS, "the Encounter", statements, problems)
    for appointment in of_type(entries, "Appointment"):
        _read_status(appointment, APPOINTMENT_SAYS, "the Appointment", statements, problems)
    referrals: list[tuple[str, str | None]] = []
    for plan in of_type(entries, "CarePlan"):
        referrals += _read_care_plan(plan, statements, problems)
    for path, _ in referrals[1:]:
        problems.append(Problem(path, "one referral per response: send one for each service"))

    named, coded = _task_referred_to(*task, problems) if task is not None else (None, False)
    if task is not None:
        status = _task_status(*task, problems)
    else:
        said = {s.says for s in statements}
        status = next((S(s.value) for s in WITHOUT_TASK if s in said), None)
        if status is None and len(problems) == before:
            problems.append(_nothing_to_map(request))
    if status is not None:
        against = "the Task" if task is not None else f"the {status} another resource says"
        problems += [
            Problem(s.path, f"{s.what} says {s.says}, which contradicts {against}")
            for s in statements
            if status not in AGREES[s.says]
        ]
    plan_service = referrals[0][1] if len(referrals) == 1 else None
    if coded and plan_service and named != plan_service:
        problems.append(Problem(referrals[0][0], "codes another service than the Task's output"))
    if plan_service and status is S.REFERRED_ON:
        named = plan_service  # a coded service type wins over the Task's free text
    return Decision(status, task, request, named)


def _nothing_to_map(request: Entry | None) -> Problem:
    if request is not None:
        return Problem(
            f"{resource_path(request[0])}.status",
            "without a Task only revoked or completed can be mapped, unless an Encounter, "
            f"Appointment or CarePlan says an outcome ({DOCS})",
        )
    return Problem(
        "Bundle.entry",
        "nothing to map: no Task, ServiceRequest, Encounter (of the sender), Appointment or "
        f"CarePlan that says an outcome ({DOCS})",
    )


def _read_status(
    entry: Entry,
    table: Mapping[str, Says],
    what: str,
    statements: list[Statement],
    problems: list[Problem],
) -> None:
    index, resource = entry
    path = f"{resource_path(index)}.status"
    says = table.get(str(resource.get("status")))
    if says is None:
        why = _REFUSED_WHY.get((resource["resourceType"], str(resource.get("status"))))
        problems.append(
            Problem(path, why or f"this {resource['resourceType']} status has no mapping")
        )
        return
    statements.append(Statement(says, path, what))


def _read_care_plan(
    entry: Entry, statements: list[Statement], problems: list[Problem]
) -> list[tuple[str, str | None]]:
    """The CarePlan's statement, and each referral it makes: (its path, the service type)."""
    index, plan = entry
    referrals: list[tuple[str, str | None]] = []
    for n, activity in enumerate(plan.get("activity", [])):
        detail = activity.get("detail") or {}
        if detail.get("kind") != "ServiceRequest" or detail.get("doNotPerform") is True:
            continue
        path = f"{resource_path(index)}.activity[{n}].detail"
        made = REFERRAL_MADE.get(str(detail.get("status")))
        if made is None:
            problems.append(Problem(f"{path}.status", "this activity status has no mapping"))
        elif made:
            referrals.append((path, onward_service(detail.get("code"), f"{path}.code", problems)))
    status_path = f"{resource_path(index)}.status"
    says = CARE_PLAN_SAYS.get((str(plan.get("status")), bool(referrals)))
    if says is None:
        problems.append(
            Problem(
                status_path,
                "this CarePlan status does not go with a referral in progress or completed"
                if referrals and (str(plan.get("status")), False) in CARE_PLAN_SAYS
                else "this CarePlan status has no mapping",
            )
        )
        return []
    path = referrals[0][0] if says is Says.REFERRED_ON else status_path
    statements.append(Statement(says, path, "the CarePlan"))
    return referrals


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
                f"{resource_path(index)}.businessStatus",
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
    status = str(task.get("status"))
    if business is None and status in TASK_ONLY:
        return TASK_ONLY[status]
    if business is not None and (status, business) in TASK_WITH_BUSINESS:
        return TASK_WITH_BUSINESS[(status, business)]
    where = "businessStatus" if business is not None else "status"
    problems.append(
        Problem(
            f"{resource_path(index)}.{where}", "this Task status and businessStatus have no mapping"
        )
    )
    return None


def _task_referred_to(
    index: int, task: Mapping[str, Any], problems: list[Problem]
) -> tuple[str | None, bool]:
    """The Task's referred-to output, and whether it names the service by code."""
    values = [
        (n, output)
        for n, output in enumerate(task.get("output", []))
        if any(
            c.get("system") == TASK_OUTPUT_SYSTEM and c.get("code") == REFERRED_TO
            for c in (output.get("type") or {}).get("coding", [])
        )
    ]
    if not values:
        return None, False
    n, output = values[0]
    path = f"{resource_path(index)}.output[{n}]"
    if len(values) == 1 and "valueCodeableConcept" in output:
        concept = output["valueCodeableConcept"]
        return onward_service(concept, f"{path}.valueCodeableConcept", problems), True
    if len(values) > 1 or "valueString" not in output:
        problems.append(
            Problem(path, "needs one referred-to output: valueString or valueCodeableConcept")
        )
        return None, False
    return str(output["valueString"]), False
