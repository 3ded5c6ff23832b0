"""Personal data out of a parked message before an operator sees it: an alert's or a FHIR
Bundle's name becomes initials, the NHS number its last three digits, and dates of birth,
addresses and free text are hidden. Pure: no I/O, nothing logged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hub.log import scrub_text

HIDDEN = "[hidden]"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def view_body(body: bytes, *, reveal: bool) -> Any:
    """The body as JSON if it is JSON; masked unless `reveal`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace") if reveal else f"[{len(body)} bytes, not JSON]"
    return doc if reveal else mask_document(doc)


def mask_document(doc: Any) -> Any:
    """Personal data out of an alert, a FHIR Bundle, or any other JSON (where every string
    is scrubbed and free-text keys are hidden)."""
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        return _mask_bundle(doc)
    if isinstance(doc, dict) and isinstance(doc.get("person"), dict):
        return _mask_alert(doc)
    return _mask_any(doc)


def initials(given: Sequence[str], family: str | None) -> str:
    names = [*given[:1], *([family] if family else [])]
    return " ".join(f"{n.strip()[0].upper()}." for n in names if n and n.strip()) or HIDDEN


def mask_nhs_number(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    return "******" + digits[-3:] if len(digits) >= 3 else HIDDEN


def _mask_alert(alert: dict[str, Any]) -> dict[str, Any]:
    masked = json.loads(json.dumps(alert))
    person = masked["person"]
    name = person.get("name")
    if isinstance(name, dict):
        given = [g for g in name.get("given", []) if isinstance(g, str)]
        family = name.get("family") if isinstance(name.get("family"), str) else None
        person["name"] = initials(given, family)
    if isinstance(person.get("nhs_number"), str):
        person["nhs_number"] = mask_nhs_number(person["nhs_number"])
    for key in ("pnc_id", "date_of_birth", "address"):
        if key in person:
            person[key] = HIDDEN
    for vulnerability in masked.get("vulnerabilities", []) or []:
        if isinstance(vulnerability, dict) and "detail" in vulnerability:
            vulnerability["detail"] = HIDDEN
    return masked


def _mask_bundle(bundle: dict[str, Any]) -> dict[str, Any]:
    masked = json.loads(json.dumps(bundle))
    for entry in masked.get("entry", []) or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        # Free text at any depth: a narrative, ServiceRequest.note (the vulnerability detail),
        # a CarePlan's or activity's description, an Appointment's comment, a Task output…
        _hide_free_text(resource)
        if resource.get("resourceType") == "Patient":
            _mask_patient(resource)  # after: its name becomes initials in `text`
    return masked


# FHIR elements that hold words someone wrote, wherever they appear in a resource.
_FHIR_FREE_TEXT = frozenset(
    {"text", "note", "description", "comment", "patientInstruction", "valueString"}
)


def _hide_free_text(value: Any) -> None:
    if isinstance(value, dict):
        for key in list(value):
            if key in _FHIR_FREE_TEXT:
                value[key] = HIDDEN
            else:
                _hide_free_text(value[key])
    elif isinstance(value, list):
        for item in value:
            _hide_free_text(item)


def _mask_patient(patient: dict[str, Any]) -> None:
    names = patient.get("name")
    if isinstance(names, list):
        patient["name"] = [
            {"text": initials(n.get("given", []), n.get("family"))}
            for n in names
            if isinstance(n, dict)
        ]
    for identifier in patient.get("identifier", []) or []:
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            nhs = identifier.get("system") == NHS_NUMBER_SYSTEM
            identifier["value"] = mask_nhs_number(identifier["value"]) if nhs else HIDDEN
    for key in ("birthDate", "address", "telecom"):
        if key in patient:
            patient[key] = HIDDEN


_FREE_TEXT_KEYS = frozenset(
    {"name", "given", "family", "date_of_birth", "birthdate", "nhs_number", "pnc_id"}
    | {"address", "detail", "note", "text", "telecom", "recommendation"}
)


def _mask_any(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: HIDDEN if str(k).lower() in _FREE_TEXT_KEYS else _mask_any(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_any(v) for v in value]
    return value
