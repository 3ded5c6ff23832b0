"""Reading a message's id, schema and identity without trusting the rest of it."""

from __future__ import annotations

import json
import re

from hub.contracts.body import _get
from hub.contracts.identifiers import (
    _SAFE_ALERT_ID,
)

_SAFE_SCHEMA = re.compile(r"^ld\.[a-z-]{1,40}/[0-9]{1,3}$")
_SAFE_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.-]{0,63}$")
_PEEK_MAX_BYTES = 1024 * 1024


def peek_message_id(body: bytes, id_field: str) -> str | None:
    """Best effort: the body's own id under `id_field` (alert_id, update_id…), if safe to echo."""
    try:
        if len(body) > _PEEK_MAX_BYTES:
            return None
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, TypeError, AttributeError):
        return None
    value = document.get(id_field) if isinstance(document, dict) else None
    return value if isinstance(value, str) and _SAFE_ALERT_ID.fullmatch(value) else None


def peek_schema(body: bytes) -> str | None:
    """Best effort: the body's `schema` value, if it is one of the safe names."""
    try:
        if len(body) > _PEEK_MAX_BYTES:
            return None
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, TypeError, AttributeError):
        return None
    value = document.get("schema") if isinstance(document, dict) else None
    return value if isinstance(value, str) and _SAFE_SCHEMA.fullmatch(value) else None


def peek_identity(body: bytes) -> tuple[str | None, str | None]:
    """Best effort `(alert_id, source.reference)` from a body that failed validation, so its
    `rejected` outcome can carry them. Never raises; a value of odd shape comes back as None."""
    try:
        if len(body) > _PEEK_MAX_BYTES:
            return None, None
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError, TypeError, AttributeError):
        return None, None
    if not isinstance(document, dict):
        return None, None
    alert_id = document.get("alert_id")
    reference = _get(document, "source", "reference")
    return (
        alert_id if isinstance(alert_id, str) and _SAFE_ALERT_ID.fullmatch(alert_id) else None,
        reference if isinstance(reference, str) and _SAFE_REFERENCE.fullmatch(reference) else None,
    )
