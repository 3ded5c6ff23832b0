"""The API server over HTTPS (hub.adapters.api_tls): the app sees the verified client
certificate on every request of a connection through the ASGI TLS extension, sees none over
plain HTTP, and a key that cannot be opened stops start-up with a configuration error."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.adapters.inbound.api import ApiServer
from hub.errors import ConfigError
from hub.security.inbound_auth import ApiTls
from tests.pki import make_pki, openssl

pytestmark = pytest.mark.integration

KEY_PASSWORD = "server-key-pass-phrase"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = make_pki(tmp_path_factory.mktemp("pki"))
    openssl("pkey", "-in", d / "server.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
            "-out", d / "server-encrypted.key")  # fmt: skip
    return d


def echo_tls(request: Request) -> JSONResponse:
    return JSONResponse((request.scope.get("extensions") or {}).get("tls"))


APP = Starlette(routes=[Route("/tls", echo_tls)])


def serve(tls: ApiTls | None) -> Iterator[str]:
    server = ApiServer(APP, host="127.0.0.1", port=0, tls=tls)
    server.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture
def https_url(pki: Path) -> Iterator[str]:
    yield from serve(
        ApiTls(
            cert_file=str(pki / "server.pem"),
            key_file=str(pki / "server.key"),
            client_ca_file=str(pki / "ca.pem"),
        )
    )


def client(pki: Path, cert: str | None = None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        context.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    return httpx.Client(verify=context, timeout=5)


def test_the_app_sees_the_verified_client_certificate_on_every_request_of_a_connection(
    pki: Path, https_url: str
) -> None:
    with client(pki, "client") as http:
        first: dict[str, Any] = http.get(f"{https_url}/tls").json()
        second: dict[str, Any] = http.get(f"{https_url}/tls").json()  # same connection

    assert first == second
    assert first["client_cert_name"] == "CN=client"
    assert len(first["client_cert_chain"]) == 1
    assert first["client_cert_chain"][0].startswith("-----BEGIN CERTIFICATE-----")
    assert first["tls_version"] in (0x0303, 0x0304)


def test_without_a_client_certificate_the_app_sees_tls_but_no_name(
    pki: Path, https_url: str
) -> None:
    with client(pki) as http:
        tls = http.get(f"{https_url}/tls").json()
    assert tls["client_cert_name"] is None and tls["client_cert_chain"] == []


def test_over_plain_http_there_is_no_tls_extension() -> None:
    for url in serve(None):
        assert httpx.get(f"{url}/tls", timeout=5).json() is None


def test_an_encrypted_key_opens_with_its_password(pki: Path) -> None:
    tls = ApiTls(
        cert_file=str(pki / "server.pem"),
        key_file=str(pki / "server-encrypted.key"),
        key_password_env="HUB_API_KEY_PASSWORD",
        key_password=KEY_PASSWORD,
    )
    for url in serve(tls):
        with client(pki) as http:
            assert http.get(f"{url}/tls").status_code == 200


def test_a_key_that_cannot_be_opened_stops_start_up_with_a_config_error(pki: Path) -> None:
    tls = ApiTls(
        cert_file=str(pki / "server.pem"),
        key_file=str(pki / "server-encrypted.key"),
        key_password_env="HUB_API_KEY_PASSWORD",
        key_password="not-the-pass-phrase-7f3a",
    )
    server = ApiServer(APP, host="127.0.0.1", port=0, tls=tls)
    with pytest.raises(ConfigError) as caught:
        server.start()
    assert "api.tls: cannot load" in caught.value.problems[0]
    assert "not-the-pass-phrase-7f3a" not in caught.value.message
