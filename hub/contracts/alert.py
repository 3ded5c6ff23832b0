"""Parse and validate `ld.identification-alert/1` (and check `ld.referral-outcome/1`) bodies.

Pure: no I/O beyond reading the packaged JSON Schemas, no clock (time comes in as `now`).
Problem messages name fields, never the values sent: those may be personal data.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from hub.contracts.body import (
    _decode,
    _duplicate_key_problems,
    _get,
    text_problems,
)
from hub.contracts.identifiers import (
    _NHS_NUMBER,
    _PNC_SHAPE,
    nhs_number_is_valid,
    pnc_id_is_valid,
)
from hub.contracts.problems import (
    ROOT,
    _dedupe,
    _schema_problems,
)
from hub.contracts.schemas import (
    _is_uuid,
    _parse_date,
    _parse_datetime,
    _validator,
    is_valid,
)
from hub.errors import InvalidMessage
from hub.messages import (
    ALERT_SCHEMA,
    Address,
    Alert,
    Consent,
    ConsentStatus,
    Hearing,
    Organisation,
    Pathway,
    Person,
    PersonName,
    Problem,
    ReportedBy,
    Source,
    SourceKind,
    Urgency,
    Vulnerability,
    VulnerabilityType,
)

# How far ahead of the hub's clock a sender's clock may run: a timestamp that claims a past
# moment (PAST_MOMENTS, in every justice contract that has the field) beyond it is refused.
CLOCK_SKEW = timedelta(minutes=5)
PAST_MOMENTS = ("sent_at", "consent.recorded_at")
_SKEW_TEXT = f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes"
ADULT_AGE = 18
MAX_AGE_YEARS = 120


def _age_on(born: date, day: date) -> int:
    # Someone born on 29 February comes of age on 1 March in a common year.
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _semantic_problems(
    document: dict[str, Any], *, now: datetime, expected_kind: str | None
) -> Iterator[Problem]:
    """Checks JSON Schema cannot express, run on whichever fields are individually well-formed."""
    nhs_number = _get(document, "person", "nhs_number")
    shaped = isinstance(nhs_number, str) and _NHS_NUMBER.fullmatch(nhs_number)
    if shaped and not nhs_number_is_valid(str(nhs_number)):
        yield Problem("person.nhs_number", "fails the Modulus 11 check")
    pnc_id = _get(document, "person", "pnc_id")
    if isinstance(pnc_id, str) and _PNC_SHAPE.fullmatch(pnc_id) and not pnc_id_is_valid(pnc_id):
        yield Problem("person.pnc_id", "wrong check character (or impossible year)")

    yield from _future_problems(document, now=now)
    sent_at = _parse_datetime(document.get("sent_at"))
    recorded_at = _parse_datetime(_get(document, "consent", "recorded_at"))
    if recorded_at is not None and sent_at is not None and recorded_at > sent_at + CLOCK_SKEW:
        yield Problem("consent.recorded_at", f"more than {_SKEW_TEXT} after sent_at")

    born = _parse_date(_get(document, "person", "date_of_birth"))
    if born is not None:
        if born > now.date():
            yield Problem("person.date_of_birth", "is in the future")
        elif sent_at is not None:
            # The date in the sender's own offset is the day the person was seen.
            sent_on = _parse_datetime_keep_offset(document["sent_at"]).date()
            yield from _age_problems(born, sent_on, document.get("pathway"))

    kind = _get(document, "source", "kind")
    if expected_kind is not None and isinstance(kind, str) and kind != expected_kind:
        yield Problem("source.kind", f"does not match the queue it arrived on ({expected_kind})")


def _future_problems(document: dict[str, Any], *, now: datetime) -> Iterator[Problem]:
    """The clock-skew rule: a timestamp that claims a moment already past (PAST_MOMENTS) may
    be at most CLOCK_SKEW after the hub's clock, so a sender's clock running ahead cannot date a
    consent after one the hub receives later. hearing.at is in the future by nature: not checked.
    """
    for path in PAST_MOMENTS:
        moment = _parse_datetime(_get(document, *path.split(".")))
        if moment is not None and moment > now + CLOCK_SKEW:
            yield Problem(path, f"more than {_SKEW_TEXT} after the hub's clock")


def _parse_datetime_keep_offset(value: str) -> datetime:
    return datetime.fromisoformat(value.upper())


def _age_problems(born: date, sent_on: date, pathway: object) -> Iterator[Problem]:
    age = _age_on(born, sent_on)
    if born < _years_before(sent_on):
        yield Problem("person.date_of_birth", "more than 120 years before sent_at")
        return
    if pathway == Pathway.YOUTH and age >= ADULT_AGE:
        yield Problem("pathway", "youth pathway requires a person under 18 on sent_at")
    elif pathway == Pathway.ADULT and age < ADULT_AGE:
        yield Problem("pathway", "adult pathway requires a person aged 18 or over on sent_at")


def _years_before(day: date, years: int = MAX_AGE_YEARS) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


def parse_alert(
    body: bytes,
    *,
    content_type: str | None,
    now: datetime,
    max_bytes: int = 65536,
    expected_kind: str | None = None,
) -> Alert:
    """The `Alert` in `body`, or `InvalidMessage` listing every problem found.

    `now` (timezone-aware) bounds `sent_at` and `date_of_birth`; `expected_kind` is the source
    kind of the queue the body arrived on, when known.
    """
    document, problems = read_document(body, content_type=content_type, max_bytes=max_bytes)
    check_document(
        document,
        problems,
        schema=ALERT_SCHEMA,
        now=now,
        expected_kind=expected_kind,
        supported=ALERT_SCHEMA,
    )
    return build_alert(document)


def read_document(
    body: bytes, *, content_type: str | None, max_bytes: int
) -> tuple[dict[str, Any], list[Problem]]:
    """The JSON object in `body` and the problems found so far (content type, duplicate keys);
    InvalidMessage when it cannot be read as an object at all."""
    document, problems = _decode(body, content_type=content_type, max_bytes=max_bytes)
    problems.extend(_duplicate_key_problems(document))
    if not isinstance(document, dict):
        raise InvalidMessage([*problems, Problem(ROOT, "must be a JSON object")])
    return document, problems


def check_document(
    document: dict[str, Any],
    problems: list[Problem],
    *,
    schema: str,
    now: datetime,
    expected_kind: str | None,
    supported: str,
) -> None:
    """Raise InvalidMessage listing every problem of `document` against the contract `schema`
    (e.g. "ld.identification-alert/1", whose file is hub/schemas/ld.identification-alert.1.json)
    plus the checks JSON Schema cannot express. `supported` names the versions accepted where
    this document arrived, for the message when `schema` is missing or another version."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    alert_id = document.get("alert_id")
    context = {"alert_id": alert_id} if _is_uuid(alert_id) and isinstance(alert_id, str) else {}
    if "schema" not in document:
        problems.append(Problem("schema", f"required field missing: supported is {supported}"))
    elif document["schema"] != schema:
        # Another version's fields cannot be judged by this one's rules: stop here.
        problems.append(Problem("schema", f"unsupported schema version: supported is {supported}"))
        raise InvalidMessage(problems, **context)
    schema_file = schema.replace("/", ".")
    if not is_valid(schema_file, document):  # most messages are valid: no error tree to build
        problems.extend(
            p for p in _schema_problems(_validator(schema_file), document) if p.path != "schema"
        )
    problems.extend(_semantic_problems(document, now=now, expected_kind=expected_kind))
    problems.extend(text_problems(document))
    if problems:
        raise InvalidMessage(_dedupe(problems), **context)


def build_alert(d: dict[str, Any]) -> Alert:
    """Only called on a document that passed every check above."""
    src, per, con = d["source"], d["person"], d["consent"]
    address = per.get("address")
    hearing = d.get("hearing")
    return Alert(
        alert_id=d["alert_id"],
        sent_at=must_datetime(d["sent_at"]),
        source=Source(
            kind=SourceKind(src["kind"]),
            organisation=Organisation(
                code=src["organisation"]["code"], name=src["organisation"]["name"]
            ),
            location=src["location"],
            reference=src["reference"],
            reported_by=ReportedBy(role=src["reported_by"]["role"], id=src["reported_by"]["id"]),
        ),
        person=Person(
            name=PersonName(given=tuple(per["name"]["given"]), family=per["name"]["family"]),
            date_of_birth=date.fromisoformat(per["date_of_birth"]),
            sex=per["sex"],
            nhs_number=per.get("nhs_number"),
            pnc_id=per.get("pnc_id"),
            address=(
                Address(lines=tuple(address["lines"]), postcode=address["postcode"])
                if address is not None
                else None
            ),
        ),
        pathway=Pathway(d["pathway"]),
        vulnerabilities=tuple(
            Vulnerability(type=VulnerabilityType(v["type"]), detail=v["detail"])
            for v in d["vulnerabilities"]
        ),
        urgency=Urgency(d["urgency"]),
        consent=Consent(
            status=ConsentStatus(con["status"]),
            share_with_justice=con["share_with_justice"],
            recorded_at=must_datetime(con["recorded_at"]),
            recorded_by=con["recorded_by"],
        ),
        hearing=(
            Hearing(at=must_datetime(hearing["at"]), court=hearing["court"])
            if hearing is not None
            else None
        ),
    )


def must_datetime(value: str) -> datetime:
    parsed = _parse_datetime(value)
    if parsed is None:  # pragma: no cover - guarded by the schema's format check
        raise AssertionError("date-time passed validation but does not parse")
    return parsed


# ---- for rejected outcomes -----------------------------------------------------------------
