"""Configuration: config/hub.yaml and config/routes.yaml, plus environment overrides, checked
once at start-up into frozen dataclasses. Every problem is reported together, each naming its
file and line, as one ConfigError. The only module that reads os.environ.

`hub.yaml` (see the shipped config/hub.yaml for a commented example)::

    hub: {ods_code, name, endpoint}        # required: who the hub is; endpoint = its FHIR base URL
    amqp: {url, prefetch, intake_consumers} # HUB_AMQP_URL overrides url; url may be a list
                                           # (a cluster's nodes; HUB_AMQP_URL: ';'-joined)
    amqp.quorum_initial_group_size         # members of each quorum queue it creates (3)
    amqp.management_url                    # optional RabbitMQ management API (queue ages)
    amqp.tls: {ca_file, cert_file, key_file, server_hostname}   # amqps:// only; HUB_AMQP_CA_FILE,
                                           # HUB_AMQP_CERT_FILE, … override (hub.broker_tls)
    ledger: {url}                          # HUB_DB_URL overrides url
    api: {host, port, max_body_bytes}      # HUB_API_PORT overrides port
    api.tls: {cert_file, key_file, key_password_env?, client_ca_file?, require_client_cert?}
                                           # HTTPS, and client certificates (hub.inbound_auth)
    logging: {level}                       # HUB_LOG_LEVEL overrides level
    sources: {<org code>: [<amqp user id>, ...]}   # who may publish for whom; may be empty
    operators: {<name>: {password_hash}}   # ops console logins (argon2 hashes only);
                                           # needs HUB_CONSOLE_SECRET (cookie-signing key)
    endpoints:                             # required, at least one
      <name>:                              # lower-case words joined by '-' (used in queue names)
        kind: fhir-rest | hl7v2-mllp | webhook | mesh  # selects its own fields (_KIND_FIELDS)
        ods_code, organisation_name, service_id?, timeout_seconds?, max_in_flight?, paused?
        circuit: {failure_threshold: 5, cooldown_seconds: 30}   # optional; these are defaults
        inbound: {token_env?, client_cert_subject?}   # what it presents to POST outcomes to the
                                           # hub; none: its outcomes are refused (inbound_auth)
        url: <FHIR base>                   # fhir-rest: the hub POSTs to url + '/$process-message'
        auth: {type: bearer, token_env: NAME}   # fhir-rest, optional; the token is read from env
        auth: {type: oauth2-client-credentials, token_url, client_id, client_secret_env, scope?}
        tls: {cert, key, ca}               # fhir-rest and mesh, optional: mutual TLS file paths
        url, mailbox, password_env, shared_key_env, recipient_mailbox, workflow_id   # mesh
        host, port                         # hl7v2-mllp: the receiver's MLLP listener
        url, secret_env: NAME              # webhook: POST target; HMAC key read from env NAME

Secrets never live in files: a `token`/`password`/`secret` key, or a URL carrying a password, is
a config error; credentials come from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from hub import broker_tls, inbound_auth
from hub import endpoint_credentials as credentials
from hub.broker_tls import AmqpTls
from hub.circuit import CircuitConfig
from hub.endpoint_credentials import MeshMailbox, OAuth2ClientCredentials, TlsFiles
from hub.errors import ConfigError
from hub.inbound_auth import ApiTls, InboundCredentials
from hub.messages import HubIdentity, Recipient
from hub.passwords import ARGON2_HASH
from hub.routes import ROUTES_SCHEMA, RouteTable, build_route_table, route_problems

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_DB_URL = "sqlite:///hub.db"

_SECRET_KEYS = frozenset({"token", "password", "secret", "api_key", "client_secret"})
_NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"
_CODE = r"^[A-Za-z0-9_-]+$"  # organisation codes travel in routing keys: no dots, no spaces
_HTTP_URL = {"type": "string", "pattern": r"^https?://[^/\s]+", "x-hint": "an http(s):// URL"}
_TEXT = {"type": "string", "minLength": 1}
_Path = tuple[str | int, ...]


class EndpointKind(StrEnum):
    FHIR_REST = "fhir-rest"  # BaRS-shaped FHIR Bundle to <url>/$process-message
    HL7V2_MLLP = "hl7v2-mllp"  # HL7 v2.5 REF^I12 over MLLP to host:port
    WEBHOOK = "webhook"  # signed plain JSON POSTed to url (social-care systems)
    MESH = "mesh"  # the FHIR Bundle sent to a MESH mailbox (hub.adapters.mesh)


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class BearerAuth:
    token_env: str  # the environment variable the token was read from
    token: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The webhook kind's HMAC-SHA256 key, read from the environment variable `key_env`."""

    key_env: str
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One endpoint; which of the kind-specific fields are set depends on `kind`."""

    name: str
    kind: EndpointKind
    ods_code: str
    organisation_name: str
    url: str | None = None  # fhir-rest: the FHIR base URL; webhook: the URL POSTed to
    host: str | None = None  # hl7v2-mllp
    port: int | None = None  # hl7v2-mllp
    service_id: str | None = None
    timeout_seconds: float = 10.0
    max_in_flight: int = 1
    paused: bool = False
    auth: BearerAuth | None = None  # fhir-rest, optional
    signing: SigningKey | None = None  # webhook
    circuit: CircuitConfig = field(default_factory=CircuitConfig)
    oauth2: OAuth2ClientCredentials | None = None  # fhir-rest, optional (instead of bearer)
    tls: TlsFiles | None = None  # fhir-rest and mesh, optional: mutual TLS, CA bundle
    mesh: MeshMailbox | None = None  # mesh
    inbound: InboundCredentials | None = None  # None: may not POST outcomes to the hub

    @property
    def process_message_url(self) -> str:
        if self.url is None:
            raise ValueError(f"endpoint {self.name!r} ({self.kind}) has no FHIR base URL")
        return self.url.rstrip("/") + "/$process-message"

    @property
    def recipient(self) -> Recipient:
        return Recipient(
            endpoint=self.name,
            ods_code=self.ods_code,
            organisation_name=self.organisation_name,
            service_id=self.service_id,
        )


@dataclass(frozen=True, slots=True)
class OperatorAccount:
    """An ops-console login: `operators: {name: {password_hash}}` in hub.yaml (argon2 hashes
    from `hub operator hash-password`; a plaintext password is a config error)."""

    name: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    hub: HubIdentity
    endpoints: dict[str, EndpointConfig]
    routes: RouteTable
    # One URL, or several nodes' joined by ';' (kombu's failover form); may carry credentials.
    amqp_url: str = field(default=DEFAULT_AMQP_URL, repr=False)
    amqp_tls: AmqpTls | None = None  # amqps:// CA, client certificate (hub.broker_tls)
    quorum_group_size: int = 3  # x-quorum-initial-group-size of the queues the hub creates
    db_url: str = field(default=DEFAULT_DB_URL, repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tls: ApiTls | None = None  # HTTPS for the API, client certificates (api.tls)
    prefetch: int = 10
    intake_consumers: int = 1  # competing consumers per alert queue; >1 gives no gain today
    max_body_bytes: int = 65536
    source_orgs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    log_level: str = LogLevel.INFO.value
    management_url: str | None = None  # RabbitMQ management API: oldest-message ages
    operators: dict[str, OperatorAccount] = field(default_factory=dict)  # the ops console's
    console_secret: str | None = field(default=None, repr=False)  # HUB_CONSOLE_SECRET


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


class _Document:
    """One YAML file as plain data, remembering the line of every key and item."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.data: Any = None
        self.lines: dict[_Path, int] = {}
        self.problems: list[str] = []

    def line(self, path: _Path) -> int | None:
        """The line of `path`, or of its nearest ancestor the file has (a missing key's parent)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def locate(self, path: _Path) -> str:
        line = self.line(path)
        return self.display if line is None else f"{self.display}:{line}"

    def load(self, file: Path) -> bool:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            self.problems.append(f"{self.display}: file not found")
            return False
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{self.display}: cannot read: {exc}")
            return False
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = {} if node is None else self._convert(node, (), yaml.SafeLoader(""), set())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{self.display}:{mark.line + 1}" if mark else self.display
            text = f"{where}: YAML syntax error: {exc.problem or exc.context}"
            if exc.problem and exc.context and exc.context_mark:
                text += f" ({exc.context} at line {exc.context_mark.line + 1})"
            self.problems.append(text)
            return False
        except yaml.YAMLError as exc:
            self.problems.append(f"{self.display}: YAML error: {exc}")
            return False
        return True

    def _convert(
        self, node: yaml.Node, path: _Path, loader: yaml.SafeLoader, open_: set[int]
    ) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in open_:
            raise yaml.MarkedYAMLError(problem="recursive alias", problem_mark=node.start_mark)
        if isinstance(node, yaml.MappingNode):
            open_.add(id(node))
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.problems.append(f"{self.display}:{line}: key {key!r} must be a string")
                    continue
                if key in out:
                    self.problems.append(f"{self.display}:{line}: duplicate key {key!r}")
                    continue
                self.lines[(*path, key)] = line
                out[key] = self._convert(value_node, (*path, key), loader, open_)
            open_.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            open_.add(id(node))
            items = [self._convert(n, (*path, i), loader, open_) for i, n in enumerate(node.value)]
            open_.discard(id(node))
            return items
        return loader.construct_object(node)


_YAML_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
}


def _dotted(path: _Path) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    return text or "(top level)"


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


def _api_tls(doc: _Document, env: Mapping[str, str], problems: list[str]) -> ApiTls | None:
    raw = doc.data.get("api") if isinstance(doc.data, Mapping) else None
    raw_tls = raw.get("tls") if isinstance(raw, Mapping) else None
    at: _Path = ("api", "tls")

    def problem(path: _Path, text: str) -> None:
        problems.append(f"{doc.locate((*at, *path))}: {text}")

    def from_env(var: Any, path: _Path) -> str | None:
        if not isinstance(var, str):
            return None
        value = env.get(var, "")
        if not value:
            problem(path, f"api.tls: environment variable {var} is not set")
        return value

    return inbound_auth.api_tls(raw_tls, from_env, problem)


def _inbound_problems(
    doc: _Document, endpoints: Mapping[str, EndpointConfig], api_tls: ApiTls | None
) -> list[str]:
    """A certificate subject the API could never see: mutual TLS needs api.tls.client_ca_file."""
    if api_tls is not None and api_tls.client_ca_file:
        return []
    return [
        f"{doc.locate(('endpoints', name, 'inbound', 'client_cert_subject'))}: endpoint "
        f"{name!r}: inbound.client_cert_subject needs api.tls with client_ca_file (the CA "
        "that signs the services' client certificates)"
        for name, endpoint in endpoints.items()
        if endpoint.inbound is not None and endpoint.inbound.client_cert_subject is not None
    ]


def _joined_urls(value: Any) -> Any:
    """amqp.url as one string: a list becomes kombu's failover form, its URLs joined by ';'."""
    if isinstance(value, list) and all(isinstance(u, str) for u in value):
        return ";".join(value)
    return value


def _mixed_schemes(url: Any, doc: _Document, *, from_env: bool) -> list[str]:
    """All of a cluster's URLs use TLS, or none do: one amqp.tls serves them all."""
    if not isinstance(url, str) or ";" not in url:
        return []
    schemes = {u.strip().split("://", 1)[0] for u in url.split(";")}
    if not {"amqp", "amqps"} <= schemes:
        return []  # one scheme, or a URL that is not AMQP at all (reported as such)
    where = "environment HUB_AMQP_URL" if from_env else f"{doc.locate(('amqp', 'url'))}: amqp.url"
    return [f"{where}: the URLs mix amqp:// and amqps://; use one scheme for every node"]


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Environment values checked like file values; messages never quote them (may be secret)."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    if url := env.get("HUB_AMQP_URL"):
        # kombu's failover form: several nodes' URLs joined by ';'.
        urls = [u.strip() for u in url.split(";")]
        if url.startswith("memory://") or all(u.startswith(("amqp://", "amqps://")) for u in urls):
            found["amqp_url"] = url
        else:
            problems.append(
                "environment HUB_AMQP_URL: must be an amqp(s):// URL, or several joined by ';'"
            )
    if url := env.get("HUB_DB_URL"):
        if url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            found["db_url"] = url
        else:
            problems.append("environment HUB_DB_URL: must be a sqlite:// or postgresql:// URL")
    if port := env.get("HUB_API_PORT"):
        if port.isdigit() and 1 <= int(port) <= 65535:
            found["api_port"] = int(port)
        else:
            problems.append("environment HUB_API_PORT: must be a port number from 1 to 65535")
    if secret := env.get("HUB_CONSOLE_SECRET"):
        if len(secret) >= 32:
            found["console_secret"] = secret
        else:
            problems.append("environment HUB_CONSOLE_SECRET: must be at least 32 characters")
    if host := env.get("HUB_API_HOST"):
        found["api_host"] = host
    if level := env.get("HUB_LOG_LEVEL"):
        if level.upper() in LogLevel.__members__:
            found["log_level"] = level.upper()
        else:
            problems.append(f"environment HUB_LOG_LEVEL: must be one of {', '.join(LogLevel)}")
    return found, problems


def _in_file_order(problems: list[str], files: list[str]) -> list[str]:
    """Sort by file, then line, so an operator can work down the file; keeps one of each."""

    def place(text: str) -> tuple[int, int]:
        for index, display in enumerate(files):
            if text.startswith(display):
                line = text[len(display) :].split(":", 2)
                return index, int(line[1]) if len(line) > 2 and line[1].isdigit() else 0
        return len(files), 0

    return sorted(dict.fromkeys(problems), key=place)


def load_settings(config_dir: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read and check `config_dir/hub.yaml` and `config_dir/routes.yaml`; env defaults to
    os.environ. Raises ConfigError listing every problem, each with file and line."""
    env = os.environ if env is None else env
    hub_doc, routes_doc = (
        _Document(str(config_dir / "hub.yaml")),
        _Document(str(config_dir / "routes.yaml")),
    )
    hub_ok, routes_ok = (
        hub_doc.load(config_dir / "hub.yaml"),
        routes_doc.load(config_dir / "routes.yaml"),
    )
    problems = hub_doc.problems + routes_doc.problems
    overrides, env_problems = _env_overrides(env)

    endpoints: dict[str, EndpointConfig] = {}
    raw_endpoints: dict[str, Any] = {}
    if hub_ok:
        problems += _schema_problems(hub_doc, hub_doc.data, _HUB_SCHEMA)
        problems += _secret_problems(hub_doc, hub_doc.data)
        if isinstance(hub_doc.data, Mapping) and isinstance(hub_doc.data.get("endpoints"), dict):
            raw_endpoints = hub_doc.data["endpoints"]
        for name, raw in raw_endpoints.items():
            if isinstance(raw, Mapping):
                endpoint, endpoint_problems = _endpoint(hub_doc, name, raw, env)
                problems += endpoint_problems
                if endpoint:
                    endpoints[name] = endpoint
    if routes_ok:
        problems += _schema_problems(routes_doc, routes_doc.data, ROUTES_SCHEMA)
        problems += _secret_problems(routes_doc, routes_doc.data)
        if hub_ok:  # without hub.yaml every endpoint would look unknown
            problems += route_problems(
                routes_doc.data, endpoints=raw_endpoints.keys(), locate=routes_doc.locate
            )
    problems += env_problems
    api_tls = _api_tls(hub_doc, env, problems) if hub_ok else None
    problems += _inbound_problems(hub_doc, endpoints, api_tls)
    raw_amqp = hub_doc.data.get("amqp") if hub_ok and isinstance(hub_doc.data, Mapping) else None
    raw_amqp = raw_amqp if isinstance(raw_amqp, Mapping) else {}
    amqp_url = overrides.get("amqp_url", _joined_urls(raw_amqp.get("url", DEFAULT_AMQP_URL)))
    problems += _mixed_schemes(amqp_url, hub_doc, from_env="amqp_url" in overrides)
    amqp_tls, tls_problems = broker_tls.amqp_tls(
        raw_amqp,
        env,
        url=amqp_url if isinstance(amqp_url, str) else "",
        url_from_env="amqp_url" in overrides,
        locate=hub_doc.locate,
    )
    problems += tls_problems
    has_operators = hub_ok and isinstance(hub_doc.data, Mapping) and hub_doc.data.get("operators")
    if has_operators and not env.get("HUB_CONSOLE_SECRET"):
        problems.append(
            f"{hub_doc.locate(('operators',))}: operators are configured, so the environment "
            "variable HUB_CONSOLE_SECRET (the ops console's cookie-signing key) must be set"
        )
    if problems:
        raise ConfigError(_in_file_order(problems, [hub_doc.display, routes_doc.display]))

    hub: dict[str, Any] = hub_doc.data
    section = {key: hub.get(key, {}) for key in ("amqp", "ledger", "api", "logging")}
    values: dict[str, Any] = {
        "amqp_url": _joined_urls(section["amqp"].get("url", DEFAULT_AMQP_URL)),
        "amqp_tls": amqp_tls,
        "quorum_group_size": section["amqp"].get("quorum_initial_group_size", 3),
        "db_url": section["ledger"].get("url", DEFAULT_DB_URL),
        "api_host": section["api"].get("host", "127.0.0.1"),
        "api_port": section["api"].get("port", 8080),
        "api_tls": api_tls,
        "prefetch": section["amqp"].get("prefetch", 10),
        "intake_consumers": section["amqp"].get("intake_consumers", 1),
        "management_url": section["amqp"].get("management_url"),
        "max_body_bytes": section["api"].get("max_body_bytes", 65536),
        "log_level": section["logging"].get("level", LogLevel.INFO.value),
    }
    values.update(overrides)
    return Settings(
        hub=HubIdentity(**hub["hub"]),
        endpoints=endpoints,
        routes=build_route_table(routes_doc.data),
        source_orgs={code: tuple(users) for code, users in hub.get("sources", {}).items()},
        operators={
            name: OperatorAccount(name=name, password_hash=raw["password_hash"])
            for name, raw in (hub.get("operators") or {}).items()
        },
        **values,
    )


def operator_name(env: Mapping[str, str] | None = None) -> str | None:
    """Who is running an operator command (`hub failed …`), from HUB_OPERATOR; None if unset.
    Recorded in the audit log with each replay, discard and reveal."""
    env = os.environ if env is None else env
    name = env.get("HUB_OPERATOR", "").strip()
    return name or None


def report_db_url(env: Mapping[str, str] | None = None) -> str | None:
    """Where `hub report` and the console's Pathway page read: HUB_REPORT_DB_URL (a replica,
    say) when set, else None (the ledger's own URL, on a read-only connection)."""
    env = os.environ if env is None else env
    url = env.get("HUB_REPORT_DB_URL", "").strip()
    return url or None
