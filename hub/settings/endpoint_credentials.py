"""The newer endpoint options, checked by hub.settings: OAuth2 client-credentials and mutual TLS
for fhir-rest, and the mesh kind's mailbox. Schema fragments, the frozen dataclasses they load
into, and the checks JSON Schema cannot make (secrets present in the environment, files present).

Reads nothing itself: environment values arrive through settings' `from_env`, files are only
checked for existence. Secrets never live in files; only environment variable names do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ENV_NAME = {
    "type": "string",
    "pattern": r"^[A-Z_][A-Z0-9_]*$",
    "x-hint": "an environment variable name",
}
_HTTP_URL = {"type": "string", "pattern": r"^https?://[^/\s]+", "x-hint": "an http(s):// URL"}
_TEXT = {"type": "string", "minLength": 1}
_MAILBOX = {"type": "string", "pattern": r"^[A-Za-z0-9]+$", "x-hint": "a MESH mailbox id"}

BEARER = "bearer"
OAUTH2 = "oauth2-client-credentials"


def _section(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": required or [],
    }


# fhir-rest `auth:` (either kind's keys; settings checks which are needed for the type)
AUTH_SCHEMA = _section(
    {
        "type": {"type": "string", "enum": [BEARER, OAUTH2]},
        "token_env": _ENV_NAME,  # bearer
        "token_url": _HTTP_URL,  # oauth2-client-credentials
        "client_id": _TEXT,
        "client_secret_env": _ENV_NAME,
        "scope": _TEXT,
    },
    ["type"],
)
_NEEDED = {BEARER: ["token_env"], OAUTH2: ["token_url", "client_id", "client_secret_env"]}

# `tls:` for fhir-rest and mesh: client certificate and key, CA bundle (PEM file paths)
TLS_SCHEMA = _section({"cert": _TEXT, "key": _TEXT, "ca": _TEXT})

MESH_FIELDS: dict[str, Any] = {
    "url": _HTTP_URL,
    "mailbox": _MAILBOX,
    "password_env": _ENV_NAME,
    "shared_key_env": _ENV_NAME,
    "recipient_mailbox": _MAILBOX,
    "workflow_id": _TEXT,
    "tls": TLS_SCHEMA,
}
MESH_REQUIRED = [
    "url",
    "mailbox",
    "password_env",
    "shared_key_env",
    "recipient_mailbox",
    "workflow_id",
]


@dataclass(frozen=True, slots=True)
class OAuth2ClientCredentials:
    """fhir-rest `auth: {type: oauth2-client-credentials, ...}`; the token is fetched, cached
    and refreshed by hub.endpoints.oauth2.OAuth2TokenSource."""

    token_url: str
    client_id: str
    client_secret_env: str
    client_secret: str = field(repr=False)
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Mutual TLS: the client certificate and its key, and the CA bundle that verifies the
    server (None: the system's)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None

    @property
    def client_cert(self) -> tuple[str, str] | None:
        return (self.cert, self.key) if self.cert and self.key else None


@dataclass(frozen=True, slots=True)
class MeshMailbox:
    """The mesh kind: the hub's mailbox on `url`, sending to `recipient_mailbox` under
    `workflow_id`."""

    url: str
    mailbox: str
    recipient_mailbox: str
    workflow_id: str
    password_env: str
    shared_key_env: str
    password: str = field(repr=False)
    shared_key: str = field(repr=False)


FromEnv = Callable[[Any, tuple[str | int, ...]], str | None]
Problem = Callable[[tuple[str | int, ...], str], None]  # (path under the endpoint, text)


def oauth2_or_bearer_problems(raw_auth: Mapping[str, Any], problem: Problem) -> None:
    needed = _NEEDED.get(str(raw_auth.get("type")), [])
    for key in needed:
        if key not in raw_auth:
            problem(("auth",), f"auth type {raw_auth.get('type')} needs {key!r}")


def oauth2(raw_auth: Mapping[str, Any], from_env: FromEnv) -> OAuth2ClientCredentials | None:
    secret = from_env(raw_auth.get("client_secret_env"), ("auth", "client_secret_env"))
    if not secret or not raw_auth.get("token_url") or not raw_auth.get("client_id"):
        return None
    return OAuth2ClientCredentials(
        token_url=raw_auth["token_url"],
        client_id=str(raw_auth["client_id"]),
        client_secret_env=raw_auth["client_secret_env"],
        client_secret=secret,
        scope=raw_auth.get("scope"),
    )


def tls(raw_tls: Any, problem: Problem) -> TlsFiles | None:
    if not isinstance(raw_tls, Mapping):
        return None
    files = TlsFiles(cert=raw_tls.get("cert"), key=raw_tls.get("key"), ca=raw_tls.get("ca"))
    if bool(files.cert) != bool(files.key):
        problem(("tls",), "a client certificate needs both 'cert' and 'key'")
    for key in ("cert", "key", "ca"):
        value = raw_tls.get(key)
        if isinstance(value, str) and not Path(value).is_file():
            problem(("tls", key), f"tls.{key}: no such file: {value}")
    return files


def mesh(raw: Mapping[str, Any], from_env: FromEnv) -> MeshMailbox | None:
    password = from_env(raw.get("password_env"), ("password_env",))
    shared_key = from_env(raw.get("shared_key_env"), ("shared_key_env",))
    if not password or not shared_key or any(k not in raw for k in MESH_REQUIRED):
        return None
    return MeshMailbox(
        url=raw["url"],
        mailbox=raw["mailbox"],
        recipient_mailbox=raw["recipient_mailbox"],
        workflow_id=str(raw["workflow_id"]),
        password_env=raw["password_env"],
        shared_key_env=raw["shared_key_env"],
        password=password,
        shared_key=shared_key,
    )
