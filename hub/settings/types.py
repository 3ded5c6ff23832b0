"""The typed settings the rest of the hub receives (no loading here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from hub.errors import ConfigError
from hub.messages import HubIdentity, Recipient
from hub.routes.rules import RouteTable
from hub.security.ids import MIN_KEY_CHARS, IdKey
from hub.security.inbound_auth import ApiTls, InboundCredentials
from hub.settings.broker_tls import AmqpTls
from hub.settings.endpoint_credentials import MeshMailbox, OAuth2ClientCredentials, TlsFiles
from hub.stages.circuit import CircuitConfig

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_DB_URL = "sqlite:///hub.db"

ID_KEY_MISSING = (
    "environment HUB_ID_KEY is not set: the hub's secret for the ids it sends out and the "
    f"seals on its own message headers, at least {MIN_KEY_CHARS} characters. Make one with "
    "`openssl rand -base64 32`, keep it with the other secrets, and never change it (every "
    "outcome id would change, and parked or retrying messages would lose their seals)"
)


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
    amqp_tls: AmqpTls | None = None  # amqps:// CA, client certificate (hub.settings.broker_tls)
    quorum_group_size: int = 3  # x-quorum-initial-group-size of the queues the hub creates
    db_url: str = field(default=DEFAULT_DB_URL, repr=False)
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tls: ApiTls | None = None  # HTTPS for the API, client certificates (api.tls)
    prefetch: int = 10
    intake_consumers: int = 1  # competing consumers per alert queue
    # Intake takes alerts in batches: up to batch_size, waiting batch_wait_ms for more after
    # the first (one transaction and one round of confirms per batch); 1 = one at a time.
    batch_size: int = 100
    batch_wait_ms: int = 5
    # Each delivery consumer takes up to this many jobs together (its prefetch); it still sends
    # one request at a time, so max_in_flight bounds the requests an endpoint has outstanding.
    delivery_batch_size: int = 20
    max_body_bytes: int = 65536
    source_orgs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    log_level: str = LogLevel.INFO.value
    management_url: str | None = None  # RabbitMQ management API: oldest-message ages
    # How often the hub refreshes the pathway report's summary tables (hub.operations.
    # report_refresh); 0: never, e.g. when `hub report refresh` runs from cron instead.
    report_refresh_seconds: float = 300.0
    operators: dict[str, OperatorAccount] = field(default_factory=dict)  # the ops console's
    console_secret: str | None = field(default=None, repr=False)  # HUB_CONSOLE_SECRET
    # HUB_ID_KEY: keys the ids that leave the hub and seals its own headers (hub.security.ids).
    # Optional here so tools that only read the configuration work without it; `id_key()` insists.
    id_key_text: str | None = field(default=None, repr=False)

    def id_key(self) -> IdKey:
        """The hub's id key; a ConfigError saying how to set it when HUB_ID_KEY is unset."""
        if not self.id_key_text:
            raise ConfigError([ID_KEY_MISSING])
        return IdKey.of(self.id_key_text)
