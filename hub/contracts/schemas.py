"""The packaged JSON Schemas (hub/schemas) and their validators, loaded once; the date and
date-time formats they check."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker

_SCHEMA_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


# ASCII only: Python's \d (and int()) accept other scripts' digits.
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_LOCAL_DATETIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
# RFC 3339 `date-time`, which JSON Schema's format names: the offset is mandatory.
_DATETIME = re.compile(rf"^{_LOCAL_DATETIME}(?:[Zz]|[+-][0-9]{{2}}:[0-9]{{2}})$")
_NAIVE_DATETIME = re.compile(rf"^{_LOCAL_DATETIME}$")


def load_schema(name: str) -> dict[str, Any]:
    """The packaged JSON Schema `hub/schemas/<name>.json` (e.g. `ld.identification-alert.1`).
    Read once; each call returns its own copy, so callers may not corrupt the cache."""
    return copy.deepcopy(_read_schema(name))


@cache
def _read_schema(name: str) -> dict[str, Any]:
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"not a schema name: {name!r}")
    resource = resources.files("hub").joinpath("schemas", f"{name}.json")
    if not resource.is_file():
        raise ValueError(f"no packaged schema named {name!r}")
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


def _is_date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return bool(_DATE.fullmatch(instance)) and _parse_date(instance) is not None


def _is_datetime(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    return bool(_DATETIME.fullmatch(instance)) and _parse_datetime(instance) is not None


def _is_uuid(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_UUID.fullmatch(instance))


def _format_checker() -> FormatChecker:
    # Our own checks, not jsonschema's: its date-time needs an optional extra package (and is
    # silently skipped without it), and its date and uuid checks accept non-ASCII digits.
    checker = FormatChecker(formats=())
    checker.checks("date")(_is_date)
    checker.checks("date-time")(_is_datetime)
    checker.checks("uuid")(_is_uuid)
    return checker


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = _read_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_format_checker())


def _parse_date(value: object) -> date | None:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _parse_datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError:
        return None
    return parsed.astimezone(UTC)


# Draft 7 has every keyword the packaged schemas use, with the same meaning as in 2020-12
# (properties, required, additionalProperties, items as one schema, if/then/else, not, enum,
# const, pattern, lengths, formats); tests/unit/test_fast_validation.py holds the two to the
# same verdicts. Unknown keywords would be ignored by it, so the check below refuses any.
_DRAFT7_KEYWORDS = frozenset(
    {
        "$id", "$schema", "additionalProperties", "const", "description", "else", "enum",
        "format", "if", "items", "maxItems", "maxLength", "minItems", "minLength", "not",
        "pattern", "properties", "required", "then", "title", "type",
    }
)  # fmt: skip


def _keywords(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties":
                for child in value.values():
                    found |= _keywords(child)
            elif isinstance(value, dict | list):
                found |= _keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _keywords(item)
    return found


@cache
def _fast_validator(name: str) -> Any:
    """The schema compiled to Python by fastjsonschema: a yes/no in microseconds for the common
    case, a valid message. A no is explained by the jsonschema validator, whose errors the
    problem wording is built from (hub.contracts.problems)."""
    schema = copy.deepcopy(_read_schema(name))
    unknown = _keywords(schema) - _DRAFT7_KEYWORDS
    if unknown:
        raise ValueError(
            f"schema {name} uses keywords the fast validator is not held to: {unknown}"
        )
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(
        schema,
        formats={"date": _is_date, "date-time": _is_datetime, "uuid": _is_uuid},
        use_default=False,
    )


def is_valid(name: str, instance: object) -> bool:
    """Whether `instance` meets schema `name` (the fast validator)."""
    try:
        _fast_validator(name)(instance)
    except fastjsonschema.JsonSchemaException:
        return False
    return True
