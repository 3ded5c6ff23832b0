"""What an operator may see of a parked message before a reveal: an allowlist. Each message
kind (justice alert and follow-ups, referral outcome, FHIR Bundle, OperationOutcome, message
headers) has a typed description of the fields whose meaning and safety are known; a field is
shown only when it is on its kind's list AND its value has the listed type (an NHS number given
as an integer, a name given as a string, an object where a list belongs: hidden). Names become
initials, NHS numbers their last three digits; everything else, unknown keys at any depth
included, becomes HIDDEN. Pure: no I/O, nothing logged. The lists are in allowlists.py, their
vocabulary and the walk that applies them in mask_spec.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hub.security.allowlists import BUNDLE, HEADERS, JUSTICE, fhir_resource
from hub.security.mask_spec import HIDDEN, Leaf, apply_spec


def shown_or_hidden(value: Any, leaf: Leaf) -> Any:
    return apply_spec(value, leaf)


def mask_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return apply_spec(dict(headers), HEADERS)


def mask_document(doc: Any) -> Any:
    """A JSON document as an operator may see it: FHIR (a Bundle, or one resource) by the FHIR
    list, anything else by the justice list. A document nested past MAX_DEPTH shows nothing."""
    if json_depth(doc) > MAX_DEPTH:
        return HIDDEN
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        return apply_spec(doc, BUNDLE)
    if isinstance(doc, dict) and isinstance(doc.get("resourceType"), str):
        return fhir_resource(doc)
    return apply_spec(doc, JUSTICE)


MAX_DEPTH = 64  # deeper than any message the hub reads; a deeper one is shown as text


def json_depth(doc: Any, *, limit: int = MAX_DEPTH) -> int:
    """How deeply `doc` nests (a scalar is 0), found without recursion; stops past `limit`."""
    deepest, stack = 0, [(doc, 0)]
    while stack and deepest <= limit:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def view_body(body: bytes, *, reveal: bool) -> Any:
    """The body as JSON if it is JSON (and not nested absurdly deep); masked unless `reveal`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    if doc is None or json_depth(doc) > MAX_DEPTH:
        return body.decode("utf-8", "replace") if reveal else f"[{len(body)} bytes, not JSON]"
    return doc if reveal else mask_document(doc)
