"""JSON Schema errors -> Problems that name fields, never the values sent."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hub.contracts.schemas import (
    _NAIVE_DATETIME,
)
from hub.messages import (
    Problem,
)

ROOT = "$"


_SAFE_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


# What a `pattern` is for, said without the value (keyed by the schema path of the field).
_PATTERN_HINTS = {
    "person.nhs_number": "10 digits",
    "person.pnc_id": "YYYY/NNNNNNNC (year, serial number, check letter)",
    "person.address.postcode": "a UK postcode in capitals",
    "source.organisation.code": "3 to 10 capital letters or digits",
    "source.reference": "up to 64 letters, digits or / _ . - characters",
}
_TYPE_NAMES = {
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
    "null": "null",
}


def _path(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or ROOT


def _child(path: str, name: str) -> str:
    return name if path == ROOT else f"{path}.{name}"


def _field_name(name: str) -> str:
    # Field names may be quoted, but a sender can put anything in a key: show only tame ones.
    return f"'{name}'" if _SAFE_FIELD_NAME.fullmatch(name) else "(name not shown)"


def _schema_problems(validator: Draft202012Validator, instance: object) -> list[Problem]:
    problems: list[Problem] = []
    for error in validator.iter_errors(instance):
        problems.extend(_error_problems(error))
    return _dedupe(problems)


def _error_problems(error: ValidationError) -> Iterator[Problem]:
    path = _path(error.absolute_path)
    keyword = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    rule = list(error.relative_schema_path)

    if rule[-2:] == ["else", "not"]:
        # The alert schema's conditional: only court alerts carry a hearing.
        yield Problem(_child(path, "hearing"), "only allowed when source.kind is court")
    elif keyword == "required":
        for name in expected:
            if isinstance(instance, dict) and name not in instance:
                message = "required field missing"
                if rule[:1] == ["then"]:
                    message += ": court alerts must have a hearing"
                yield Problem(_child(path, name), message)
    elif keyword == "additionalProperties":
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        for name in instance:
            if name not in known:
                yield Problem(path, f"unknown field {_field_name(name)}")
    elif keyword == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        yield Problem(path, "must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in types))
    elif keyword == "enum":
        yield Problem(path, "must be one of: " + ", ".join(str(v) for v in expected))
    elif keyword == "const":
        yield Problem(path, f"must be {expected}")
    elif keyword == "format":
        yield Problem(path, _format_message(expected, instance))
    elif keyword == "pattern":
        hint = _PATTERN_HINTS.get(_path(p for p in error.absolute_path if isinstance(p, str)))
        yield Problem(path, "does not match the expected format" + (f": {hint}" if hint else ""))
    elif keyword == "minLength":
        yield Problem(
            path,
            "must not be empty" if expected == 1 else f"must be at least {expected} characters",
        )
    elif keyword == "maxLength":
        yield Problem(path, f"must be at most {expected} characters")
    elif keyword == "minItems":
        yield Problem(path, f"must have at least {expected} item{'s' if expected != 1 else ''}")
    elif keyword == "maxItems":
        yield Problem(path, f"must have at most {expected} items")
    else:
        yield Problem(path, f"breaks the schema rule '{keyword}'")


def _format_message(fmt: str, instance: object) -> str:
    if fmt == "date-time":
        if isinstance(instance, str) and _NAIVE_DATETIME.fullmatch(instance):
            return "must include a timezone offset"
        return "not a valid date-time (RFC 3339, e.g. 2026-11-23T09:30:00Z)"
    if fmt == "date":
        return "not a valid date (YYYY-MM-DD)"
    if fmt == "uuid":
        return "not a valid UUID"
    return f"not a valid {fmt}"


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
