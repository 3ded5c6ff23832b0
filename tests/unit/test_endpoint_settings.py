"""Endpoint options added for delivery: circuit breaker, OAuth2 client-credentials and mutual
TLS for fhir-rest, and the mesh kind; secrets from the environment, problems reported together."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.settings.load import load_settings
from hub.settings.types import EndpointKind
from hub.stages.circuit import CircuitConfig
from tests.unit.test_settings import problems, write

pytestmark = pytest.mark.unit

HEAD = """\
hub: {ods_code: XHB01, name: Test Hub, endpoint: 'http://127.0.0.1:8080/fhir'}
endpoints:
  leeds-ld:
    kind: fhir-rest
    url: https://ld.example/fhir
    ods_code: XLD01
    organisation_name: Leeds L&D
"""
ROUTES = "default: [leeds-ld]\n"


def hub_yaml(extra: str) -> str:
    return HEAD + "".join(f"    {line}\n" for line in extra.strip("\n").splitlines())


def test_the_circuit_defaults_to_five_failures_and_thirty_seconds(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, HEAD, ROUTES), env={})
    assert settings.endpoints["leeds-ld"].circuit == CircuitConfig(5, 30.0)


def test_the_circuit_can_be_tuned_per_endpoint(tmp_path: Path) -> None:
    config = write(
        tmp_path, hub_yaml("circuit: {failure_threshold: 2, cooldown_seconds: 5}"), ROUTES
    )
    assert load_settings(config, env={}).endpoints["leeds-ld"].circuit == CircuitConfig(2, 5.0)


def test_oauth2_client_credentials_read_the_secret_from_the_environment(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        hub_yaml(
            "auth: {type: oauth2-client-credentials, token_url: 'https://auth.example/token',\n"
            "       client_id: ld-hub, client_secret_env: LD_CLIENT_SECRET, scope: referrals}"
        ),
        ROUTES,
    )
    endpoint = load_settings(config, env={"LD_CLIENT_SECRET": "s3"}).endpoints["leeds-ld"]
    assert endpoint.oauth2 is not None and endpoint.auth is None
    assert endpoint.oauth2.client_secret == "s3" and endpoint.oauth2.scope == "referrals"
    assert "s3" not in repr(endpoint)


def test_oauth2_without_its_fields_or_secret_is_reported(tmp_path: Path) -> None:
    config = write(tmp_path, hub_yaml("auth: {type: oauth2-client-credentials, client_id: x}"))
    found = problems(config)
    assert any("needs 'token_url'" in p for p in found)
    assert any("needs 'client_secret_env'" in p for p in found)


def test_tls_files_must_exist_and_a_cert_needs_its_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = write(tmp_path, hub_yaml(f"tls: {{cert: {tmp_path}/nope.pem, ca: {ca}}}"), ROUTES)
    found = problems(config)
    assert any("needs both 'cert' and 'key'" in p for p in found)
    assert any("tls.cert: no such file" in p for p in found)
    assert not any("tls.ca" in p for p in found)


MESH = """\
  leeds-mesh:
    kind: mesh
    url: https://msg.intspineservices.nhs.uk
    mailbox: X26HUB1
    password_env: MESH_PASSWORD
    shared_key_env: MESH_SHARED_KEY
    recipient_mailbox: X26ABC2
    workflow_id: LD_REFERRAL
    ods_code: XLM01
    organisation_name: Leeds MH
"""


def test_a_mesh_endpoint_loads_with_its_secrets_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, HEAD + MESH, ROUTES)
    env = {"MESH_PASSWORD": "pw", "MESH_SHARED_KEY": "key"}
    endpoint = load_settings(config, env=env).endpoints["leeds-mesh"]
    assert endpoint.kind is EndpointKind.MESH
    assert endpoint.mesh is not None
    assert (endpoint.mesh.recipient_mailbox, endpoint.mesh.workflow_id) == (
        "X26ABC2",
        "LD_REFERRAL",
    )
    assert endpoint.mesh.password == "pw" and "pw" not in repr(endpoint)


def test_a_mesh_endpoint_names_each_missing_secret(tmp_path: Path) -> None:
    found = problems(write(tmp_path, HEAD + MESH, ROUTES))
    assert any("MESH_PASSWORD is not set" in p for p in found)
    assert any("MESH_SHARED_KEY is not set" in p for p in found)
