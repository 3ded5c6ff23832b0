"""Configuration of who may POST outcomes to the hub: each endpoint's `inbound` block (token
from the environment, certificate subject) and the API's `tls` block, checked at start-up with
every problem reported together and no secret ever quoted."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.security.distinguished_names import parse_distinguished_name
from hub.security.inbound_auth import ApiTls, token_digest
from hub.settings.load import load_settings
from tests.unit.test_settings import problems, write

pytestmark = pytest.mark.unit

TOKEN = "wy-ld-inbound-token-0123456789abcdefghij"
SUBJECT = "CN=ld.example.nhs.uk,O=Leeds L&D,C=GB"
HEAD = """\
hub: {ods_code: XHB01, name: Test Hub, endpoint: 'https://hub.example/fhir'}
{api}endpoints:
  leeds-ld:
    kind: fhir-rest
    url: https://ld.example/fhir
    ods_code: XLD01
    organisation_name: Leeds L&D
{inbound}  leeds-mllp:
    kind: hl7v2-mllp
    host: pas.example
    port: 2575
    ods_code: XLP01
    organisation_name: Leeds PAS
"""
ROUTES = "default: [leeds-ld]\n"


def hub_yaml(inbound: str = "", api: str = "") -> str:
    return HEAD.replace(
        "{inbound}", "".join(f"    {line}\n" for line in inbound.splitlines())
    ).replace("{api}", f"api: {api}\n" if api else "")


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for path in files.values():
        path.write_text("not checked here: the API server loads them at start-up")
    return files


def test_an_endpoint_without_inbound_credentials_loads_and_has_none(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, hub_yaml(), ROUTES), env={})
    assert settings.endpoints["leeds-ld"].inbound is None
    assert settings.api_tls is None


def test_the_inbound_token_comes_from_the_environment_and_is_kept_as_a_digest(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, hub_yaml("inbound: {token_env: LEEDS_LD_INBOUND_TOKEN}"), ROUTES)
    settings = load_settings(config, env={"LEEDS_LD_INBOUND_TOKEN": TOKEN})
    inbound = settings.endpoints["leeds-ld"].inbound
    assert inbound is not None and inbound.token_env == "LEEDS_LD_INBOUND_TOKEN"
    assert inbound.token_sha256 == token_digest(TOKEN)
    assert TOKEN not in repr(settings)


def test_an_unset_inbound_token_is_a_config_error_naming_the_variable(tmp_path: Path) -> None:
    config = write(tmp_path, hub_yaml("inbound: {token_env: LEEDS_LD_INBOUND_TOKEN}"), ROUTES)
    found = problems(config)
    assert any("LEEDS_LD_INBOUND_TOKEN is not set" in p for p in found)
    assert all("hub.yaml:" in p for p in found)


@pytest.mark.parametrize("weak", ["short-token", "has spaces in it but is long enough to pass"])
def test_a_weak_or_malformed_inbound_token_is_refused_without_quoting_it(
    tmp_path: Path, weak: str
) -> None:
    config = write(tmp_path, hub_yaml("inbound: {token_env: LEEDS_LD_INBOUND_TOKEN}"), ROUTES)
    found = problems(config, env={"LEEDS_LD_INBOUND_TOKEN": weak})
    assert any("must be at least 32 characters" in p for p in found)
    assert not any(weak in p for p in found)


def test_a_token_written_in_the_file_is_a_config_error(tmp_path: Path) -> None:
    found = problems(write(tmp_path, hub_yaml(f"inbound: {{token: {TOKEN}}}"), ROUTES))
    assert any("inbound.token: secrets never live in files" in p for p in found)


def test_an_empty_inbound_block_is_a_config_error(tmp_path: Path) -> None:
    found = problems(write(tmp_path, hub_yaml("inbound: {}"), ROUTES))
    assert any("inbound: must not be empty" in p for p in found)


def test_a_certificate_subject_is_read_as_an_rfc_4514_name(
    tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    api = f"{{tls: {{cert_file: {pem_files['cert']}, key_file: {pem_files['key']}, "
    api += f"client_ca_file: {pem_files['ca']}}}}}"
    config = write(
        tmp_path, hub_yaml(f"inbound: {{client_cert_subject: '{SUBJECT}'}}", api), ROUTES
    )
    settings = load_settings(config, env={})
    inbound = settings.endpoints["leeds-ld"].inbound
    assert inbound is not None and inbound.token_sha256 is None
    assert inbound.client_cert_subject == parse_distinguished_name(SUBJECT)
    assert settings.api_tls == ApiTls(
        cert_file=str(pem_files["cert"]),
        key_file=str(pem_files["key"]),
        client_ca_file=str(pem_files["ca"]),
    )


def test_a_certificate_subject_needs_a_client_ca_to_check_certificates_against(
    tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    config = write(tmp_path, hub_yaml(f"inbound: {{client_cert_subject: '{SUBJECT}'}}"), ROUTES)
    found = problems(config)
    assert any(
        "endpoint 'leeds-ld': inbound.client_cert_subject needs api.tls with client_ca_file" in p
        for p in found
    )


def test_an_unreadable_certificate_subject_is_a_config_error(tmp_path: Path) -> None:
    config = write(tmp_path, hub_yaml("inbound: {client_cert_subject: 'just a name'}"), ROUTES)
    found = problems(config)
    assert any("inbound.client_cert_subject is not an RFC 4514 name" in p for p in found)


def test_api_tls_files_must_exist_and_required_client_certificates_need_a_ca(
    tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    api = f"{{tls: {{cert_file: {tmp_path}/missing.pem, key_file: {pem_files['key']}, "
    api += "require_client_cert: true}}"
    found = problems(write(tmp_path, hub_yaml(api=api), ROUTES))
    assert any("api.tls.cert_file: no such file" in p for p in found)
    assert any("api.tls.require_client_cert needs client_ca_file" in p for p in found)
    assert not any("api.tls.key_file" in p for p in found)


def test_api_tls_needs_both_certificate_and_key(tmp_path: Path, pem_files: dict[str, Path]) -> None:
    found = problems(write(tmp_path, hub_yaml(api=f"{{tls: {{cert_file: {pem_files['cert']}}}}}")))
    assert any("missing required key 'key_file'" in p for p in found)


def test_the_api_key_password_comes_from_the_environment(
    tmp_path: Path, pem_files: dict[str, Path]
) -> None:
    api = f"{{tls: {{cert_file: {pem_files['cert']}, key_file: {pem_files['key']}, "
    api += "key_password_env: HUB_API_KEY_PASSWORD}}"
    config = write(tmp_path, hub_yaml(api=api), ROUTES)
    assert any("HUB_API_KEY_PASSWORD is not set" in p for p in problems(config))
    settings = load_settings(config, env={"HUB_API_KEY_PASSWORD": "pass phrase"})
    assert settings.api_tls is not None and settings.api_tls.key_password == "pass phrase"
    assert "pass phrase" not in repr(settings)


def test_any_endpoint_kind_may_have_inbound_credentials(tmp_path: Path) -> None:
    yaml = hub_yaml().replace(
        "    organisation_name: Leeds PAS\n",
        "    organisation_name: Leeds PAS\n    inbound: {token_env: LEEDS_PAS_INBOUND_TOKEN}\n",
    )
    settings = load_settings(write(tmp_path, yaml, ROUTES), env={"LEEDS_PAS_INBOUND_TOKEN": TOKEN})
    assert settings.endpoints["leeds-mllp"].inbound is not None
