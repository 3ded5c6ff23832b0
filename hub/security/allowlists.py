"""The masking allowlists: per message kind (justice alert and follow-ups, referral outcome,
FHIR Bundle, OperationOutcome, message headers) the fields whose meaning and safety are known,
each with the type its value must have; names become initials, NHS numbers their last three
digits. Written in mask_spec.py's vocabulary; masking.py applies them. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from hub.security.mask_spec import (
    HIDDEN,
    Either,
    Leaf,
    ListOf,
    Obj,
    Spec,
    Special,
    apply_spec,
)

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def _pattern(regex: str) -> Callable[[Any], bool]:
    compiled = re.compile(regex)
    return lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None


def _one_of(*values: str) -> Leaf:
    allowed = frozenset(values)
    return Leaf(lambda v: isinstance(v, str) and v in allowed)


UUID = Leaf(
    _pattern(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
)
# A code: no spaces, nothing that reads as words someone wrote.
CODE = Leaf(_pattern(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}"))
ID = CODE
SCHEMA = Leaf(_pattern(r"ld\.[a-z-]{1,40}/\d{1,3}"))
# A moment with a time of day (a date alone may be a date of birth).
INSTANT = Leaf(_pattern(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?"))
URI = Leaf(_pattern(r"(https?://|urn:(uuid|oid):)[A-Za-z0-9._~:/?#@!$&'()*+,;=%|\-]{1,200}"))
REFERENCE = Leaf(
    _pattern(
        r"urn:uuid:[0-9a-fA-F-]{36}|[A-Z][A-Za-z]{1,40}/[A-Za-z0-9.\-]{1,64}|#[A-Za-z0-9.\-]{1,64}"
    )
)
BOOL = Leaf(lambda v: isinstance(v, bool))
COUNT = Leaf(lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**9)
# The hub's own routing and queue names.
HUB_NAME = Leaf(_pattern(r"(hub|justice)[A-Za-z0-9_.\-]{0,120}"))
CONTENT_TYPE = Leaf(_pattern(r"[a-z]+/[a-z0-9.+\-]{1,60}(; ?[a-z\-]+=[A-Za-z0-9.\-]{1,40})?"))
# An organisation's code (ODS-style): upper-case letters and digits.
ORG_CODE = Leaf(_pattern(r"[A-Z0-9]{3,10}"))
# An organisation's or service's name: not about a person, shown if it is short plain text.
ORG_NAME = Leaf(_pattern(r"[A-Za-z0-9 &'(),.\-]{1,120}"))


def initials(given: Sequence[Any], family: Any) -> str:
    names = [*[g for g in given[:1] if isinstance(g, str)], *([family] if family else [])]
    return (
        " ".join(f"{n.strip()[0].upper()}." for n in names if isinstance(n, str) and n.strip())
        or HIDDEN
    )


def mask_nhs_number(value: Any) -> str:
    """Ten digits (spaces allowed) become their last three; anything else is hidden."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{3} ?\d{3} ?\d{4}", value):
        return HIDDEN
    return "******" + value[-3:]


def _alert_name(value: Any) -> Any:
    if not isinstance(value, dict):
        return HIDDEN
    given, family = value.get("given"), value.get("family")
    if not isinstance(given, list) or not isinstance(family, str):
        return HIDDEN
    return initials(given, family)


def _human_names(value: Any) -> Any:
    if not isinstance(value, list):
        return HIDDEN
    return [
        {"text": _alert_name({"given": n.get("given", []), "family": n.get("family")})}
        if isinstance(n, dict)
        else HIDDEN
        for n in value[:20]
    ]


# FHIR identifier systems whose values are ids or codes, not about a person's identity.
_SHOWN_SYSTEMS = frozenset(
    {
        "https://fhir.nhs.uk/Id/ods-organization-code",
        "https://fhir.nhs.uk/Id/dos-service-id",
        "https://ld-hub.example.nhs.uk/Id/alert-id",
    }
)


def _identifier(value: Any) -> Any:
    if not isinstance(value, dict):
        return HIDDEN
    system = value.get("system")
    shown: dict[str, Any] = {"system": system if URI.ok(system) else HIDDEN}
    if "value" in value:
        raw = value["value"]
        if system == NHS_NUMBER_SYSTEM:
            shown["value"] = mask_nhs_number(raw)
        elif system in _SHOWN_SYSTEMS and CODE.ok(raw):
            shown["value"] = raw
        else:
            shown["value"] = HIDDEN
    rest = {k: v for k, v in value.items() if k not in ("system", "value")}
    return {**shown, **apply_spec(rest, Obj({}))}


# -- the allowlists -------------------------------------------------------------------------

_CONSENT_STATUS = _one_of("given", "refused", "not_asked", "lacks_capacity", "withdrawn")
_SOURCE_KIND = _one_of("custody", "court")
_VULNERABILITY = _one_of(
    "mental_health",
    "learning_disability",
    "autism",
    "substance_misuse",
    "alcohol_misuse",
    "physical_health",
    "unstable_accommodation",
    "self_harm_suicide_risk",
    "domestic_abuse",
    "financial_hardship",
    "speech_language_communication",
)

# Justice-side messages (ld.identification-alert/1, ld.alert-update/1, ld.alert-cancellation/1,
# ld.consent-update/1, ld.referral-outcome/1): one list, the union of their safe fields, so a
# malformed message whose kind cannot be told is masked by the same rules.
JUSTICE = Obj(
    {
        "schema": SCHEMA,
        "alert_id": UUID,
        "update_id": UUID,
        "cancellation_id": UUID,
        "consent_update_id": UUID,
        "outcome_id": UUID,
        "message_id": UUID,
        "sent_at": INSTANT,
        "at": INSTANT,
        "source": Obj(
            {
                "kind": _SOURCE_KIND,
                "organisation": Obj({"code": ORG_CODE, "name": ORG_NAME}),
                "organisation_code": ORG_CODE,
                "reference": CODE,
                "reported_by": Obj({"id": CODE}),
            }
        ),
        "reference": CODE,
        "person": Obj(
            {
                "name": Special(_alert_name),
                "nhs_number": Special(mask_nhs_number),
                "sex": _one_of("male", "female", "other", "unknown"),
            }
        ),
        "pathway": _one_of("adult", "youth"),
        "urgency": _one_of("routine", "urgent", "emergency"),
        "vulnerabilities": ListOf(Obj({"type": _VULNERABILITY}), max_items=20),
        "consent": Obj(
            {
                "status": _CONSENT_STATUS,
                "share_with_justice": BOOL,
                "recorded_at": INSTANT,
                "recorded_by": CODE,
            }
        ),
        "hearing": Obj({"at": INSTANT}),
        "reason": _one_of(
            "new_information",
            "details_corrected",
            "person_released",
            "no_longer_required",
            "raised_in_error",
        ),
        "status": _one_of(
            "received",
            "rejected",
            "accepted",
            "declined",
            "screened",
            "assessed",
            "referred_on",
            "attended",
            "did_not_attend",
            "closed",
            "overdue",
        ),
        "service": Obj({"code": ORG_CODE, "name": ORG_NAME}),
    }
)

_CODING = Obj({"system": URI, "code": CODE, "version": CODE})
_CODEABLE = Obj({"coding": ListOf(_CODING, max_items=20)})
_REF = Obj({"reference": REFERENCE, "type": CODE})
_REFS = Either((ListOf(_REF), _REF))
_PERIOD = Obj({"start": INSTANT, "end": INSTANT})
_IDENTIFIERS = Either((ListOf(Special(_identifier)), Special(_identifier)))
_EXTENSIONS = ListOf(Obj({"url": URI, "valueCodeableConcept": _CODEABLE}), max_items=20)

# FHIR elements shown wherever they appear in a resource (the same element name means the same
# thing across the R4 resources a BaRS message carries). Free text (text, note, description,
# comment, display, valueString…), names, dates of birth, addresses and telecoms are not here.
_FHIR_ELEMENTS: dict[str, Spec] = {
    "resourceType": CODE,
    "id": ID,
    "meta": Obj({"profile": ListOf(URI, max_items=10), "lastUpdated": INSTANT}),
    "status": CODE,
    "intent": CODE,
    "priority": CODE,
    "use": CODE,
    "severity": CODE,
    "definition": URI,
    "authoredOn": INSTANT,
    "dateTime": INSTANT,
    "timestamp": INSTANT,
    "lastModified": INSTANT,
    "period": _PERIOD,
    "identifier": _IDENTIFIERS,
    "eventCoding": _CODING,
    "type": Either((_CODEABLE, CODE)),
    "class": _CODING,
    "category": Either((ListOf(_CODEABLE), _CODEABLE)),
    "code": Either((_CODEABLE, CODE)),
    "reasonCode": ListOf(_CODEABLE),
    "reason": _CODEABLE,
    "scope": _CODEABLE,
    "policyRule": _CODEABLE,
    "businessStatus": _CODEABLE,
    "statusReason": _CODEABLE,
    "role": _CODEABLE,
    "extension": _EXTENSIONS,
    "source": Obj({"endpoint": URI}),
    "destination": ListOf(Obj({"endpoint": URI, "receiver": _REF})),
    "response": Obj({"identifier": ID, "code": CODE}),
    "focus": _REFS,
    "sender": _REF,
    "receiver": _REF,
    "author": _REF,
    "subject": _REF,
    "patient": _REF,
    "encounter": _REF,
    "requester": _REF,
    "performer": _REFS,
    "organization": _REFS,
    "serviceProvider": _REF,
    "supportingInfo": _REFS,
    "basedOn": _REFS,
    "partOf": _REFS,
    "for": _REF,
    "owner": _REF,
    "managingOrganization": _REF,
}
_PROVISION = Obj(
    {
        "type": CODE,
        "period": _PERIOD,
        "actor": ListOf(Obj({"role": _CODEABLE, "reference": _REF})),
    }
)
_FHIR_RESOURCE = Obj({**_FHIR_ELEMENTS, "provision": _PROVISION})
# Per resource type, what differs from the elements above.
_FHIR_BY_TYPE: dict[str, Obj] = {
    "Patient": Obj({**_FHIR_ELEMENTS, "name": Special(_human_names)}),
    "Organization": Obj({**_FHIR_ELEMENTS, "name": ORG_NAME}),
    "Consent": Obj(
        {**_FHIR_ELEMENTS, "provision": Obj({**_PROVISION.fields, "provision": ListOf(_PROVISION)})}
    ),
    "OperationOutcome": Obj(
        {
            "resourceType": CODE,
            "id": ID,
            "issue": ListOf(
                Obj({"severity": CODE, "code": CODE, "details": _CODEABLE}), max_items=50
            ),
        }
    ),
}


def fhir_resource(value: Any) -> Any:
    if not isinstance(value, dict):
        return HIDDEN
    kind = value.get("resourceType")
    return apply_spec(
        value, _FHIR_BY_TYPE.get(kind, _FHIR_RESOURCE) if isinstance(kind, str) else _FHIR_RESOURCE
    )


BUNDLE = Obj(
    {
        "resourceType": CODE,
        "id": ID,
        "meta": _FHIR_ELEMENTS["meta"],
        "type": CODE,
        "timestamp": INSTANT,
        "identifier": _IDENTIFIERS,
        "entry": ListOf(
            Obj({"fullUrl": Either((REFERENCE, URI)), "resource": Special(fhir_resource)}),
            max_items=100,
        ),
    }
)


# Headers of a parked message whose meaning the hub knows; each value must have its type.
# Free text (x-hub-error, x-hub-operation-outcome, x-hub-problems) is shown by hub.operations
# through its own rules; any other header, a publisher's own included, is hidden.
HEADERS = Obj(
    {
        "x-hub-alert-id": UUID,
        "x-hub-bundle-id": UUID,
        "x-hub-request-id": UUID,
        "x-hub-received-request-id": UUID,
        "x-hub-endpoint": CODE,
        "x-hub-stage": _one_of("intake", "deliver", "outcome"),
        "x-hub-error-class": CODE,
        "x-hub-attempts": COUNT,
        "x-hub-http-status": COUNT,
        "x-hub-first-failure": INSTANT,
        "x-hub-last-failure": INSTANT,
        "x-hub-original-exchange": HUB_NAME,
        "x-hub-original-routing-key": HUB_NAME,
        "x-hub-original-queue": HUB_NAME,
        "x-hub-replayed-from": Leaf(_pattern(r"\d{1,12}")),
        "x-hub-kind": CODE,
        "x-hub-change-id": UUID,
        "x-delivery-count": COUNT,
    }
)


def _field_names(spec: Spec, seen: set[str]) -> set[str]:
    if isinstance(spec, Obj):
        for name, sub in spec.fields.items():
            if name not in seen:
                seen.add(name)
                _field_names(sub, seen)
    elif isinstance(spec, ListOf):
        _field_names(spec.item, seen)
    elif isinstance(spec, Either):
        for option in spec.options:
            _field_names(option, seen)
    return seen


# Every field name some allowlist knows (a key on it is structure, not content).
KNOWN_FIELDS: frozenset[str] = frozenset(
    _field_names(Obj({**JUSTICE.fields, **BUNDLE.fields, **_FHIR_ELEMENTS}), set())
    | {"name", "entry", "resource", "issue", "details", "provision", "given", "family"}
)
