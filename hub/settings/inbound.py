"""The `api:` section: the inbound API's TLS and caller credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.security import inbound_auth
from hub.security.inbound_auth import ApiTls
from hub.settings.types import (
    EndpointConfig,
)
from hub.settings.yaml_lines import _Document, _Path


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
