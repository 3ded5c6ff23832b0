"""The JSON Schema of hub.yaml, one section at a time, and the problems it finds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jsonschema

from hub.security import inbound_auth
from hub.security.passwords import ARGON2_HASH
from hub.settings import broker_tls
from hub.settings import endpoint_credentials as credentials
from hub.settings.types import (
    EndpointKind,
    LogLevel,
)
from hub.settings.yaml_lines import _YAML_TYPES, _Document, _dotted, _Path

_SECRET_KEYS = frozenset({"token", "password", "secret", "api_key", "client_secret"})
_NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"
_CODE = r"^[A-Za-z0-9_-]+$"  # organisation codes travel in routing keys: no dots, no spaces
_HTTP_URL = {"type": "string", "pattern": r"^https?://[^/\s]+", "x-hint": "an http(s):// URL"}
_TEXT = {"type": "string", "minLength": 1}


def _section(properties: dict[str, Any], required: Iterable[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


_HUB_SCHEMA: dict[str, Any] = _section(
    {
        "hub": _section(
            {
                "ods_code": {"type": "string", "pattern": _CODE},
                "name": _TEXT,
                "endpoint": _HTTP_URL,
            },
            required=["ods_code", "name", "endpoint"],
        ),
        "amqp": _section(
            {
                # One URL, or a list: the nodes of one cluster, tried in turn.
                "url": {
                    "type": ["string", "array"],
                    "pattern": r"^(amqps?|memory)://",
                    "x-hint": "an amqp(s):// URL (memory:// for the embedded demo)",
                    "items": {
                        "type": "string",
                        "pattern": r"^amqps?://",
                        "x-hint": "an amqp(s):// URL",
                    },
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "quorum_initial_group_size": {"type": "integer", "minimum": 1, "maximum": 99},
                "prefetch": {"type": "integer", "minimum": 1, "maximum": 1000},
                "intake_consumers": {"type": "integer", "minimum": 1, "maximum": 32},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
                "batch_wait_ms": {"type": "integer", "minimum": 0, "maximum": 1000},
                "delivery_batch_size": {"type": "integer", "minimum": 1, "maximum": 1000},
                # Credentials and vhost come from the AMQP URL; a password here is an error.
                "management_url": _HTTP_URL,
                "tls": broker_tls.TLS_SCHEMA,
            }
        ),
        "ledger": _section(
            {
                "url": {
                    "type": "string",
                    "pattern": r"^(sqlite|postgresql(\+psycopg)?)://",
                    "x-hint": "a sqlite:// or postgresql+psycopg:// URL",
                }
            }
        ),
        "api": _section(
            {
                "host": _TEXT,
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "max_body_bytes": {"type": "integer", "minimum": 1024, "maximum": 16 * 2**20},
                "tls": inbound_auth.API_TLS_SCHEMA,
            }
        ),
        "logging": _section({"level": {"type": "string", "enum": [str(v) for v in LogLevel]}}),
        # How often the hub refreshes the report's summary tables itself; 0: never (cron).
        "reporting": _section({"refresh_seconds": {"type": "number", "minimum": 0}}),
        "operators": {
            "type": "object",
            "propertyNames": {
                "pattern": r"^[a-z][a-z0-9._-]{0,63}$",
                "x-hint": "a lower-case name",
            },
            "additionalProperties": _section(
                {
                    "password_hash": {
                        "type": "string",
                        "pattern": ARGON2_HASH,
                        "x-hint": "an argon2 hash from `hub operator hash-password`",
                    }
                },
                required=["password_hash"],
            ),
        },
        "sources": {
            "type": "object",
            "propertyNames": {"pattern": _CODE, "x-hint": "letters, digits, '-' or '_'"},
            "additionalProperties": {"type": "array", "uniqueItems": True, "items": _TEXT},
        },
        # Each endpoint is checked against its kind's own schema (_endpoint_schema).
        "endpoints": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _NAME, "x-hint": "lower-case words joined by '-'"},
            "additionalProperties": {"type": "object"},
        },
    },
    required=["hub", "endpoints"],
)

_COMMON_FIELDS: dict[str, Any] = {
    "kind": {"type": "string", "enum": [str(k) for k in EndpointKind]},
    "ods_code": {"type": "string", "pattern": _CODE},
    "organisation_name": _TEXT,
    "service_id": _TEXT,
    "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
    "max_in_flight": {"type": "integer", "minimum": 1, "maximum": 100},
    "paused": {"type": "boolean"},
    "circuit": _section(
        {
            "failure_threshold": {"type": "integer", "minimum": 1, "maximum": 1000},
            "cooldown_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        }
    ),
    "inbound": inbound_auth.INBOUND_SCHEMA,
}
_KIND_ONLY = {"kind": _COMMON_FIELDS["kind"]}
_ENV_NAME = {
    "type": "string",
    "pattern": r"^[A-Z_][A-Z0-9_]*$",
    "x-hint": "an environment variable name",
}
# A new kind adds an entry here (its own fields and required ones) and a branch in _endpoint.
_KIND_FIELDS: dict[EndpointKind, tuple[dict[str, Any], list[str]]] = {
    EndpointKind.FHIR_REST: (
        {
            "url": _HTTP_URL,
            "auth": credentials.AUTH_SCHEMA,
            "tls": credentials.TLS_SCHEMA,
        },
        ["url"],
    ),
    EndpointKind.HL7V2_MLLP: (
        {
            "host": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9.:\[\]-]+$",
                "x-hint": "a host name",
            },
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        },
        ["host", "port"],
    ),
    EndpointKind.WEBHOOK: ({"url": _HTTP_URL, "secret_env": _ENV_NAME}, ["url", "secret_env"]),
    EndpointKind.MESH: (credentials.MESH_FIELDS, credentials.MESH_REQUIRED),
}


def _endpoint_schema(kind: EndpointKind) -> dict[str, Any]:
    own, required = _KIND_FIELDS[kind]
    return _section(
        {**_COMMON_FIELDS, **own}, required=["kind", "ods_code", "organisation_name", *required]
    )


def _schema_problems(
    doc: _Document, instance: Any, schema: dict[str, Any], base: _Path = ()
) -> list[str]:
    """JSON Schema errors as 'file:line: where: what', never quoting a whole structure."""
    problems: list[tuple[int, str]] = []

    def add(path: _Path, text: str) -> None:
        problems.append((doc.line(path) or 0, f"{doc.locate(path)}: {text}"))

    for err in jsonschema.Draft202012Validator(schema).iter_errors(instance):
        path: _Path = (*base, *err.absolute_path)
        kind, value, hint = err.validator, err.validator_value, err.schema.get("x-hint")
        if "propertyNames" in err.absolute_schema_path:
            add((*path, err.instance), f"{_dotted(path)}: name {err.instance!r}: {hint}")
        elif kind == "additionalProperties":
            known = err.schema.get("properties", {})
            for key in err.instance:
                if key not in known and key not in _SECRET_KEYS:  # secrets: _secret_problems
                    add((*path, key), f"unknown key {key!r} in {_dotted(path)}")
        elif kind == "required":
            for key in value:
                if key not in err.instance:
                    add(path, f"{_dotted(path)}: missing required key {key!r}")
        elif kind == "type":
            names = [_YAML_TYPES.get(t, t) for t in ([value] if isinstance(value, str) else value)]
            add(path, f"{_dotted(path)}: must be {' or '.join(names)}")
        elif kind == "enum":
            shown = f"{err.instance!r} " if isinstance(err.instance, str | int) else ""
            add(path, f"{_dotted(path)}: {shown}is not one of: {', '.join(map(str, value))}")
        elif kind in ("minItems", "minProperties"):
            add(path, f"{_dotted(path)}: must not be empty")
        elif kind in ("minimum", "exclusiveMinimum", "maximum", "minLength"):
            add(path, f"{_dotted(path)}: {err.message}")
        elif kind == "pattern":
            add(path, f"{_dotted(path)}: must be {hint or 'match ' + value}")
        elif kind == "uniqueItems":
            add(path, f"{_dotted(path)}: lists the same value twice")
        else:
            add(path, f"{_dotted(path)}: {err.message}")
    # `required` reports each missing key once per error: keep one of each.
    return list(dict.fromkeys(text for _, text in sorted(problems)))
