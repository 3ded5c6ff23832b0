"""Configuration: config/hub.yaml and config/routes.yaml, plus environment overrides, checked
once at start-up into frozen dataclasses. Every problem is reported together, each naming its
file and line, as one ConfigError. The only module that reads os.environ.

`hub.yaml` (see the shipped config/hub.yaml for a commented example)::

    hub: {ods_code, name, endpoint}        # required: who the hub is; endpoint = its FHIR base URL
    amqp: {url, prefetch, intake_consumers} # HUB_AMQP_URL overrides url; url may be a list
    amqp: {batch_size, batch_wait_ms}      # intake takes up to batch_size alerts together (100),
                                           # waiting batch_wait_ms (5) for more; 1: one by one
    amqp.delivery_batch_size               # each delivery consumer's batch (20); 1: one by one
                                           # (a cluster's nodes; HUB_AMQP_URL: ';'-joined)
    amqp.quorum_initial_group_size         # members of each quorum queue it creates (3)
    amqp.management_url                    # optional RabbitMQ management API (queue ages)
    amqp.tls: {ca_file, cert_file, key_file, server_hostname}   # amqps:// only; HUB_AMQP_CA_FILE,
                                           # HUB_AMQP_CERT_FILE, … override
                                           # (hub.settings.broker_tls)
    ledger: {url}                          # HUB_DB_URL overrides url
    api: {host, port, max_body_bytes}      # HUB_API_PORT overrides port
    api.tls: {cert_file, key_file, key_password_env?, client_ca_file?, require_client_cert?}
                                           # HTTPS, and client certificates
                                           # (hub.security.inbound_auth)
    logging: {level}                       # HUB_LOG_LEVEL overrides level
    reporting: {refresh_seconds}           # the hub refreshes the report summary this often
                                           # (300); 0: never (`hub report refresh` from cron)
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.messages import HubIdentity
from hub.routes.rules import ROUTES_SCHEMA, build_route_table, route_problems
from hub.security.ids import MIN_KEY_CHARS
from hub.settings import broker_tls
from hub.settings.endpoints import _endpoint, _secret_problems
from hub.settings.inbound import _api_tls, _inbound_problems
from hub.settings.schema import (
    _HUB_SCHEMA,
    _schema_problems,
)
from hub.settings.types import (
    DEFAULT_AMQP_URL,
    DEFAULT_DB_URL,
    EndpointConfig,
    LogLevel,
    OperatorAccount,
    Settings,
)
from hub.settings.yaml_lines import _Document


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
    if key := env.get("HUB_ID_KEY"):
        if len(key) >= MIN_KEY_CHARS:
            found["id_key_text"] = key
        else:
            problems.append(
                f"environment HUB_ID_KEY: must be at least {MIN_KEY_CHARS} characters "
                "(e.g. openssl rand -base64 32)"
            )
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
    section = {key: hub.get(key, {}) for key in ("amqp", "ledger", "api", "logging", "reporting")}
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
        "batch_size": section["amqp"].get("batch_size", 100),
        "batch_wait_ms": section["amqp"].get("batch_wait_ms", 5),
        "delivery_batch_size": section["amqp"].get("delivery_batch_size", 20),
        "management_url": section["amqp"].get("management_url"),
        "max_body_bytes": section["api"].get("max_body_bytes", 65536),
        "log_level": section["logging"].get("level", LogLevel.INFO.value),
        "report_refresh_seconds": float(section["reporting"].get("refresh_seconds", 300)),
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
