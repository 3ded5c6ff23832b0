"""Who may POST outcomes to the hub's `$process-message`: each endpoint's `inbound` credentials
(a bearer token from the environment, a client-certificate subject for mutual TLS, or both), the
hub-level `api.tls` block, and the pure decision naming the services a request authenticates as.

No I/O here: tokens arrive through settings' `from_env` and are kept only as SHA-256 digests;
files are only checked for existence; the peer certificate's subject arrives as an RFC 4514
string (the ASGI TLS extension's `client_cert_name`, filled by hub.adapters.inbound.tls).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.security.distinguished_names import DistinguishedName, parse_distinguished_name

_ENV_NAME = {
    "type": "string",
    "pattern": r"^[A-Z_][A-Z0-9_]*$",
    "x-hint": "an environment variable name",
}
_TEXT = {"type": "string", "minLength": 1}

# An endpoint's `inbound:` (at least one key: an empty block would look configured but admit
# nobody, which is what leaving it out already means).
INBOUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {"token_env": _ENV_NAME, "client_cert_subject": _TEXT},
}
# The hub-level `api: {tls: ...}`: serve HTTPS, and ask for client certificates when a CA is set.
API_TLS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["cert_file", "key_file"],
    "properties": {
        "cert_file": _TEXT,
        "key_file": _TEXT,
        "key_password_env": _ENV_NAME,
        "client_ca_file": _TEXT,
        "require_client_cert": {"type": "boolean"},
    },
}

MIN_TOKEN_LENGTH = 32  # e.g. `openssl rand -base64 32` gives 44 characters
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 §2.1 b64token


@dataclass(frozen=True, slots=True)
class InboundCredentials:
    """What one service must present to POST outcomes: every credential configured here (a
    bearer token, a client certificate with this subject) must be presented together."""

    token_env: str | None = None  # the environment variable the token was read from
    token_sha256: bytes | None = field(default=None, repr=False)  # the token itself is not kept
    client_cert_subject: DistinguishedName | None = None


@dataclass(frozen=True, slots=True)
class ApiTls:
    """`api.tls`: the API's certificate and key (PEM paths) and, for mutual TLS, the CA that
    signs the services' client certificates."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    require_client_cert: bool = False  # refuse the TLS handshake without a client certificate
    key_password_env: str | None = None
    key_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Authentication:
    """The services a request's credentials satisfy; `error` (RFC 6750 §3.1) says why none:
    None (no credentials at all), 'invalid_request' (a malformed Authorization header),
    'invalid_token' (credentials the hub does not know, or not all of one service's)."""

    endpoints: frozenset[str] = frozenset()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.endpoints)


def authenticate(
    services: Mapping[str, InboundCredentials],
    *,
    authorization: str | None,
    client_cert_name: str | None,
) -> Authentication:
    """Which of `services` (endpoint name -> its inbound credentials) the request authenticates
    as. Every configured token is compared (constant time, over fixed-length digests, no early
    exit), so timing tells nothing about which service a token belongs to. Every credential
    presented must be known, and all of a service's credentials must be presented."""
    token, malformed = _bearer(authorization)
    subject = _subject(client_cert_name)
    presented = token_digest(token) if token is not None else None
    token_known = subject_known = False
    satisfied: set[str] = set()
    for name, credentials in services.items():
        checks: list[bool] = []
        if credentials.token_sha256 is not None:
            same = presented is not None and hmac.compare_digest(
                presented, credentials.token_sha256
            )
            token_known |= same
            checks.append(same)
        if credentials.client_cert_subject is not None:
            same = subject is not None and subject == credentials.client_cert_subject
            subject_known |= same
            checks.append(same)
        if checks and all(checks):
            satisfied.add(name)
    if malformed:
        return Authentication(error="invalid_request")
    if token is None and client_cert_name is None:
        return Authentication()
    unknown = (token is not None and not token_known) or (
        client_cert_name is not None and not subject_known
    )
    if unknown or not satisfied:
        return Authentication(error="invalid_token")
    return Authentication(endpoints=frozenset(satisfied))


def _bearer(header: str | None) -> tuple[str | None, bool]:
    """(token, malformed) from an Authorization header (RFC 6750 §2.1)."""
    if header is None:
        return None, False
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN68.fullmatch(token):
        return None, True
    return token, False


def _subject(name: str | None) -> DistinguishedName | None:
    if not name:
        return None
    try:
        return parse_distinguished_name(name)
    except ValueError:
        return None


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


# -- configuration ------------------------------------------------------------------------

FromEnv = Callable[[Any, tuple[str | int, ...]], str | None]
Problem = Callable[[tuple[str | int, ...], str], None]  # (path under the block's owner, text)


def inbound(raw: Any, from_env: FromEnv, problem: Problem) -> InboundCredentials | None:
    """An endpoint's `inbound:` block, or None when it has none (it then cannot send
    outcomes). Problems: an unset, short or malformed token; an unreadable subject."""
    if not isinstance(raw, Mapping) or not raw:
        return None
    digest = subject = None
    if "token_env" in raw:
        token = from_env(raw["token_env"], ("inbound", "token_env"))
        if token:
            if len(token) < MIN_TOKEN_LENGTH or not _TOKEN68.fullmatch(token):
                problem(
                    ("inbound", "token_env"),
                    f"the token in {raw['token_env']} must be at least {MIN_TOKEN_LENGTH} "
                    "characters of A-Z a-z 0-9 - . _ ~ + / (e.g. `openssl rand -base64 32`)",
                )
            digest = token_digest(token)
    if isinstance(raw.get("client_cert_subject"), str):
        try:
            subject = parse_distinguished_name(raw["client_cert_subject"])
        except ValueError as exc:
            problem(
                ("inbound", "client_cert_subject"),
                f"inbound.client_cert_subject is not an RFC 4514 name ({exc}); write it as "
                "`openssl x509 -noout -subject -nameopt RFC2253` prints it",
            )
    return InboundCredentials(
        token_env=raw.get("token_env"), token_sha256=digest, client_cert_subject=subject
    )


def api_tls(raw: Any, from_env: FromEnv, problem: Problem) -> ApiTls | None:
    """The hub-level `api.tls` block; problems name missing files and a client-certificate
    requirement without a CA to check the certificates against."""
    if not isinstance(raw, Mapping):
        return None
    for key in ("cert_file", "key_file", "client_ca_file"):
        value = raw.get(key)
        if isinstance(value, str) and not Path(value).is_file():
            problem((key,), f"api.tls.{key}: no such file: {value}")
    if raw.get("require_client_cert") and not raw.get("client_ca_file"):
        problem(
            ("require_client_cert",),
            "api.tls.require_client_cert needs client_ca_file (the CA that signs the "
            "services' client certificates)",
        )
    password = None
    if "key_password_env" in raw:
        password = from_env(raw["key_password_env"], ("key_password_env",))
    if not isinstance(raw.get("cert_file"), str) or not isinstance(raw.get("key_file"), str):
        return None
    return ApiTls(
        cert_file=raw["cert_file"],
        key_file=raw["key_file"],
        client_ca_file=raw.get("client_ca_file"),
        require_client_cert=bool(raw.get("require_client_cert", False)),
        key_password_env=raw.get("key_password_env"),
        key_password=password or None,
    )
