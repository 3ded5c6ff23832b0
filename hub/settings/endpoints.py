"""The `endpoints:` section: one EndpointConfig per endpoint, secrets from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from hub.security import inbound_auth
from hub.settings import endpoint_credentials as credentials
from hub.settings.schema import (
    _KIND_ONLY,
    _SECRET_KEYS,
    _endpoint_schema,
    _schema_problems,
)
from hub.settings.types import (
    BearerAuth,
    EndpointConfig,
    EndpointKind,
    SigningKey,
)
from hub.settings.yaml_lines import _Document, _dotted, _Path
from hub.stages.circuit import CircuitConfig


def _secret_problems(doc: _Document, value: Any, path: _Path = ()) -> list[str]:
    problems: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in _SECRET_KEYS:
                problems.append(
                    f"{doc.locate((*path, key))}: {_dotted((*path, key))}: secrets never live in "
                    "files; name an environment variable instead (e.g. token_env: MY_TOKEN)"
                )
            else:
                problems.extend(_secret_problems(doc, item, (*path, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems.extend(_secret_problems(doc, item, (*path, i)))
    elif isinstance(value, str) and "://" in value and _has_password(value):
        problems.append(
            f"{doc.locate(path)}: {_dotted(path)}: URL carries a password; secrets never live in "
            "files (set it in the environment, e.g. HUB_AMQP_URL / HUB_DB_URL)"
        )
    return problems


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _endpoint(
    doc: _Document, name: str, raw: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[EndpointConfig | None, list[str]]:
    path: _Path = ("endpoints", name)
    try:
        kind = EndpointKind(raw["kind"])
    except (KeyError, TypeError, ValueError):
        kind_only = {"type": "object", "required": ["kind"], "properties": _KIND_ONLY}
        return None, _schema_problems(doc, raw, kind_only, path)
    problems = _schema_problems(doc, raw, _endpoint_schema(kind), path)

    def from_env(var: Any, at: _Path) -> str | None:
        """The value of environment variable `var`; a problem naming it when unset or empty."""
        if not isinstance(var, str):
            return None  # a wrong type is already a schema problem
        value = env.get(var, "")
        if not value:
            problems.append(
                f"{doc.locate((*path, *at))}: endpoint {name!r}: environment variable {var} "
                "is not set"
            )
        return value

    def problem(at: _Path, text: str) -> None:
        problems.append(f"{doc.locate((*path, *at))}: endpoint {name!r}: {text}")

    auth = signing = oauth2 = tls = mesh = None
    raw_auth = raw.get("auth")
    if kind is EndpointKind.FHIR_REST and isinstance(raw_auth, Mapping):
        credentials.oauth2_or_bearer_problems(raw_auth, problem)
        if raw_auth.get("type") == credentials.OAUTH2:
            oauth2 = credentials.oauth2(raw_auth, from_env)
        elif "token_env" in raw_auth:
            token = from_env(raw_auth.get("token_env"), ("auth", "token_env"))
            if token is not None:
                auth = BearerAuth(token_env=raw_auth["token_env"], token=token)
    if kind in (EndpointKind.FHIR_REST, EndpointKind.MESH):
        tls = credentials.tls(raw.get("tls"), problem)
    if kind is EndpointKind.MESH:
        mesh = credentials.mesh(raw, from_env)
    inbound = inbound_auth.inbound(raw.get("inbound"), from_env, problem)
    if kind is EndpointKind.WEBHOOK:
        key = from_env(raw.get("secret_env"), ("secret_env",))
        if key is not None:
            signing = SigningKey(key_env=raw["secret_env"], key=key.encode("utf-8"))
    if problems:
        return None, problems
    endpoint = EndpointConfig(
        name=name,
        kind=kind,
        ods_code=raw["ods_code"],
        organisation_name=raw["organisation_name"],
        url=raw.get("url"),
        host=raw.get("host"),
        port=raw.get("port"),
        service_id=raw.get("service_id"),
        timeout_seconds=float(raw.get("timeout_seconds", 10.0)),
        max_in_flight=raw.get("max_in_flight", 1),
        paused=raw.get("paused", False),
        circuit=CircuitConfig(
            failure_threshold=raw.get("circuit", {}).get("failure_threshold", 5),
            cooldown_seconds=float(raw.get("circuit", {}).get("cooldown_seconds", 30.0)),
        ),
        auth=auth,
        signing=signing,
        oauth2=oauth2,
        tls=tls,
        mesh=mesh,
        inbound=inbound,
    )
    return endpoint, []
