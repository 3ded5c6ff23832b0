"""structlog set-up: JSON lines, a correlation id on every line, personal data kept out.

The redaction processor is the last line of defence: code logs ids and counts only, and
anything that looks like a name, date of birth, NHS/PNC number, postcode or free text is
replaced before the line is rendered.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# Keys whose values are personal data or free text, wherever they appear.
_SENSITIVE_KEYS = frozenset(
    {
        "name",
        "given",
        "family",
        "date_of_birth",
        "dob",
        "birth_date",
        "birthdate",
        "nhs_number",
        "pnc_id",
        "pnc",
        "address",
        "lines",
        "postcode",
        "detail",
        "text",
        "note",
        "notes",
        "body",
        "person",
        "recommendation",
        "payload",
    }
)
_REDACTED = "[redacted]"

# Value patterns: 10-digit numbers (NHS numbers), PNC ids, UK postcodes, calendar dates
# (a date of birth in an exception message looks like any other date, so all dates go).
_PATTERNS = (
    re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)"),
    re.compile(r"\b\d{2,4}/\d{1,7}[A-Z]\b"),
    re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b"),
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?![T\d])"),
    re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b"),
)


# One search for any of them: a value none of them matches is returned as it came.
_ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for p in _PATTERNS))
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def scrub_text(value: str) -> str:
    """Replace anything in free text that matches a personal-data pattern (a value that is
    exactly a UUID is an id, and kept)."""
    if _UUID.fullmatch(value) or not _ANY_PATTERN.search(value):
        return value  # most values (codes, statuses, ids) match nothing: one search, no subs
    for pattern in _PATTERNS:
        value = pattern.sub(_REDACTED, value)
    return value


# Bounds on what one log line carries, whatever a caller passes: a string value (a rendered
# traceback gets more), a key, the items of a list or object, and the depth of nesting.
MAX_VALUE_CHARS = 500
MAX_EXCEPTION_CHARS = 8000
MAX_ITEMS = 50
MAX_DEPTH = 6
# A key inside a logged value (e.g. a JSON object from a response) may come from outside: it
# is kept only if it looks like a field name, else it is replaced by its position.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,39}")


def bounded(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """At most `limit` characters, saying how many were cut."""
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text) - limit} more]"


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return bounded(scrub_text(bounded(value, 4 * MAX_VALUE_CHARS)))
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return _REDACTED
    if isinstance(value, dict):
        scrubbed: dict[str, Any] = {}
        for i, (k, v) in enumerate(list(value.items())[:MAX_ITEMS]):
            key = str(k)
            if key.lower() in _SENSITIVE_KEYS:
                scrubbed[key] = _REDACTED
            elif _KEY.fullmatch(key) and scrub_text(key) == key:
                scrubbed[key] = _scrub(v, depth + 1)
            else:
                scrubbed[f"[key {i}]"] = _scrub(v, depth + 1)
        return scrubbed
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    if value is None or isinstance(value, bool | int | float):
        return value
    return bounded(scrub_text(str(value)))  # anything else is rendered as its text


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop sensitive keys, scrub and bound every string value (the
    rendered exception text included) and every key inside a value."""
    for key in list(event_dict):
        if key.lower() in _SENSITIVE_KEYS:
            event_dict[key] = _REDACTED
        elif key == "exception" and isinstance(event_dict[key], str):
            event_dict[key] = bounded(scrub_text(event_dict[key]), MAX_EXCEPTION_CHARS)
        elif key != "timestamp":
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def configure_logging(*, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog (and stdlib logging from libraries) to JSON lines on `stream`."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    out = stream or sys.stderr
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_personal_data,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_personal_data,
                structlog.processors.JSONRenderer(sort_keys=True),
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


def bind_correlation(alert_id: str | None) -> None:
    """Every line logged in this thread from now on carries this correlation id."""
    structlog.contextvars.clear_contextvars()
    if alert_id:
        structlog.contextvars.bind_contextvars(correlation_id=alert_id)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
