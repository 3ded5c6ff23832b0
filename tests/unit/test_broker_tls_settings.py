"""TLS to the broker by configuration: `amqp.tls` in hub.yaml and HUB_AMQP_* overrides load into
AmqpTls; missing, unreadable, mismatched or encrypted files, a plain amqp:// URL and a
certificate without its key are reported at load with file and line; the options handed to
the AMQP client always verify the broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from hub.adapters.rabbitmq.tls import ssl_options
from hub.errors import ConfigError
from hub.settings.broker_tls import AmqpTls
from hub.settings.load import load_settings
from tests.pki import make_pki
from tests.unit.test_settings import line_of, problems, write

pytestmark = pytest.mark.unit

HEAD = """\
hub: {ods_code: XHB01, name: Test Hub, endpoint: 'http://127.0.0.1:8080/fhir'}
endpoints:
  leeds-ld: {kind: fhir-rest, url: 'https://ld.example/fhir', ods_code: XLD01,
             organisation_name: Leeds L&D}
"""
ROUTES = "default: [leeds-ld]\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


def amqp_yaml(url: str, tls: str | None = None) -> str:
    text = HEAD + f"amqp:\n  url: '{url}'\n"
    if tls is not None:
        text += "  tls:\n" + "".join(f"    {line}\n" for line in tls.strip().splitlines())
    return text


def files(pki: Path, *, cert: str = "client", key: str | None = None) -> str:
    return (
        f"ca_file: {pki / 'ca.pem'}\n"
        f"cert_file: {pki / f'{cert}.pem'}\n"
        f"key_file: {pki / (key or f'{cert}.key')}\n"
    )


def test_amqps_with_a_ca_and_a_client_certificate_loads_from_hub_yaml(
    tmp_path: Path, pki: Path
) -> None:
    tls = files(pki) + "server_hostname: broker.internal\n"
    config = write(tmp_path, amqp_yaml("amqps://broker.example:5671/ld", tls), ROUTES)

    settings = load_settings(config, env={})

    assert settings.amqp_tls == AmqpTls(
        ca_file=str(pki / "ca.pem"),
        cert_file=str(pki / "client.pem"),
        key_file=str(pki / "client.key"),
        server_hostname="broker.internal",
    )


def test_the_environment_gives_the_tls_files_and_overrides_the_file_key_by_key(
    tmp_path: Path, pki: Path
) -> None:
    tls = f"ca_file: {pki / 'rogue-ca.pem'}\nserver_hostname: broker.internal\n"
    config = write(tmp_path, amqp_yaml("amqp://127.0.0.1:5672/", tls), ROUTES)
    env = {
        "HUB_AMQP_URL": "amqps://hub:secret@broker.example/ld",
        "HUB_AMQP_CA_FILE": str(pki / "ca.pem"),
        "HUB_AMQP_CERT_FILE": str(pki / "client.pem"),
        "HUB_AMQP_KEY_FILE": str(pki / "client.key"),
    }

    tls_settings = load_settings(config, env=env).amqp_tls

    assert tls_settings == AmqpTls(
        ca_file=str(pki / "ca.pem"),
        cert_file=str(pki / "client.pem"),
        key_file=str(pki / "client.key"),
        server_hostname="broker.internal",
    )


def test_the_environment_alone_configures_tls_with_no_tls_block(tmp_path: Path, pki: Path) -> None:
    config = write(tmp_path, HEAD, ROUTES)
    env = {"HUB_AMQP_URL": "amqps://broker.example/ld", "HUB_AMQP_CA_FILE": str(pki / "ca.pem")}

    assert load_settings(config, env=env).amqp_tls == AmqpTls(ca_file=str(pki / "ca.pem"))


def test_amqps_without_tls_options_verifies_against_the_system_ca_store(tmp_path: Path) -> None:
    config = write(tmp_path, amqp_yaml("amqps://broker.example/ld"), ROUTES)
    settings = load_settings(config, env={})
    assert settings.amqp_tls is None

    options = ssl_options(settings.amqp_url, settings.amqp_tls)

    assert options == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "broker.example",
        "tls_minimum_version": ssl.TLSVersion.TLSv1_2,
    }  # no ca_certs: py-amqp loads the system's default CAs


def test_the_client_options_verify_the_broker_and_present_the_certificate(pki: Path) -> None:
    tls = AmqpTls(
        ca_file=str(pki / "ca.pem"),
        cert_file=str(pki / "client.pem"),
        key_file=str(pki / "client.key"),
    )

    options = ssl_options("amqps://localhost:5671/ld", tls)

    assert options == {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": "localhost",  # check_hostname is on when this is given
        "tls_minimum_version": ssl.TLSVersion.TLSv1_2,
        "ca_certs": str(pki / "ca.pem"),
        "certfile": str(pki / "client.pem"),
        "keyfile": str(pki / "client.key"),
    }
    assert ssl_options("amqp://localhost/", None) is False
    with pytest.raises(ConfigError):
        ssl_options("amqp://localhost/", tls)


def test_tls_options_with_a_plain_amqp_url_are_an_error_at_the_tls_line(
    tmp_path: Path, pki: Path
) -> None:
    text = amqp_yaml("amqp://127.0.0.1:5672/", f"ca_file: {pki / 'ca.pem'}")
    config = write(tmp_path, text, ROUTES)

    found = problems(config)

    assert found == [
        f"{config / 'hub.yaml'}:{line_of(text, 'tls:')}: amqp.tls: TLS options need an amqps:// "
        "URL, but amqp.url is not one (the broker's TLS listener is usually on port 5671)"
    ]


def test_tls_from_the_environment_with_a_plain_url_names_both_and_never_quotes_the_url(
    tmp_path: Path, pki: Path
) -> None:
    config = write(tmp_path, HEAD, ROUTES)
    env = {
        "HUB_AMQP_URL": "amqp://hub:hunter2@broker.example/ld",
        "HUB_AMQP_CA_FILE": str(pki / "ca.pem"),
    }

    found = problems(config, env)

    assert len(found) == 1
    assert found[0].startswith("environment HUB_AMQP_CA_FILE: TLS options need an amqps:// URL")
    assert "HUB_AMQP_URL is not one" in found[0]
    assert "hunter2" not in found[0]


def test_a_client_certificate_without_its_key_is_an_error(tmp_path: Path, pki: Path) -> None:
    text = amqp_yaml("amqps://broker.example/ld", f"cert_file: {pki / 'client.pem'}")
    config = write(tmp_path, text, ROUTES)

    found = problems(config)

    assert found == [
        f"{config / 'hub.yaml'}:{line_of(text, 'cert_file')}: amqp.tls.cert_file: a client "
        "certificate needs both cert_file and key_file (set key_file or HUB_AMQP_KEY_FILE)"
    ]


def test_missing_files_are_errors_each_at_its_own_line(tmp_path: Path) -> None:
    tls = f"ca_file: {tmp_path}/no-ca.pem\ncert_file: {tmp_path}/no.pem\nkey_file: /nope.key\n"
    text = amqp_yaml("amqps://broker.example/ld", tls)
    config = write(tmp_path, text, ROUTES)

    found = problems(config)

    hub_yaml = config / "hub.yaml"
    assert found == [
        f"{hub_yaml}:{line_of(text, 'ca_file')}: amqp.tls.ca_file: no such file: "
        f"{tmp_path}/no-ca.pem",
        f"{hub_yaml}:{line_of(text, 'cert_file')}: amqp.tls.cert_file: no such file: "
        f"{tmp_path}/no.pem",
        f"{hub_yaml}:{line_of(text, 'key_file')}: amqp.tls.key_file: no such file: /nope.key",
    ]


def test_a_file_that_is_not_a_pem_ca_bundle_is_an_error(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("this is not a certificate\n")
    config = write(tmp_path, amqp_yaml("amqps://b.example/", f"ca_file: {not_pem}"), ROUTES)

    [found] = problems(config)

    assert f"amqp.tls.ca_file: {not_pem} is not a PEM CA certificate bundle" in found


def test_a_key_that_does_not_match_its_certificate_is_an_error(tmp_path: Path, pki: Path) -> None:
    tls = files(pki, key="rogue-client.key")
    config = write(tmp_path, amqp_yaml("amqps://broker.example/ld", tls), ROUTES)

    [found] = problems(config)

    assert "amqp.tls.cert_file:" in found
    assert "are not a PEM certificate and its matching key" in found


def test_an_encrypted_key_is_an_error_that_says_what_to_do_and_never_prompts(
    tmp_path: Path, pki: Path
) -> None:
    tls = files(pki, key="client-encrypted.key")
    config = write(tmp_path, amqp_yaml("amqps://broker.example/ld", tls), ROUTES)

    [found] = problems(config)

    assert f"the key {pki / 'client-encrypted.key'} is encrypted" in found
    assert "unencrypted key" in found


def test_there_is_no_setting_that_turns_verification_off(tmp_path: Path, pki: Path) -> None:
    text = amqp_yaml("amqps://broker.example/ld", "verify: false")
    config = write(tmp_path, text, ROUTES)

    assert problems(config) == [
        f"{config / 'hub.yaml'}:{line_of(text, 'verify')}: unknown key 'verify' in amqp.tls"
    ]
