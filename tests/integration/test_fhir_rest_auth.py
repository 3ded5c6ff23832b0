"""fhir-rest authentication against local servers: OAuth2 client-credentials through a real token
endpoint (http.server), the token cached, refreshed shortly before it expires and after a 401;
and mutual TLS, where a receiver that demands a client certificate takes the hub's and refuses
a client without one."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from hub.adapters.http_client import Urllib3FhirClient
from hub.endpoints.fhir_rest import FhirRestSender, FhirTarget
from hub.endpoints.oauth2 import OAuth2TokenSource
from hub.errors import TransientError
from hub.records import DeliveryJob, ReferralRecord
from hub.settings.endpoint_credentials import OAuth2ClientCredentials
from tests.pki import make_pki

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "ld-hub", "s3cret-client"
REFERRAL = ReferralRecord(bundle_id="b-1", alert_id="alert-1", endpoint="wy-ld", request_id="r-1")
JOB = DeliveryJob(referral=REFERRAL, body=b'{"resourceType":"Bundle"}', content_type=None)


@dataclass
class AuthServer:
    """A token endpoint (/token) and a FHIR receiver (/fhir/$process-message) that accepts only
    the token it issued last, unless `revoked`."""

    url: str = ""
    lifetime: int = 3600
    issued: list[str] = field(default_factory=list)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    posts: list[str | None] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    state = AuthServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/token":
                self._token(body)
            else:
                self._fhir()

        def _token(self, body: bytes) -> None:
            basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            form = parse_qs(body.decode())
            state.token_requests.append(form)
            if self.headers.get("Authorization") != f"Basic {basic}":
                self._json(401, {"error": "invalid_client"})
                return
            token = f"token-{len(state.issued) + 1}"
            state.issued.append(token)
            self._json(200, {"access_token": token, "token_type": "Bearer",
                             "expires_in": state.lifetime})  # fmt: skip

        def _fhir(self) -> None:
            auth = self.headers.get("Authorization")
            state.posts.append(auth)
            token = (auth or "").removeprefix("Bearer ")
            if not state.issued or token != state.issued[-1] or token in state.revoked:
                self._json(401, {"resourceType": "OperationOutcome", "issue": []})
                return
            echo = {k: self.headers[k] for k in ("X-Request-Id", "X-Correlation-Id")}
            self._json(200, {"resourceType": "Bundle"}, echo)

        def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(doc).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def oauth_sender(
    server: AuthServer, clock: Clock, secret: str = CLIENT_SECRET
) -> tuple[FhirRestSender, OAuth2TokenSource]:
    client = Urllib3FhirClient()
    credentials = OAuth2ClientCredentials(
        token_url=f"{server.url}/token",
        client_id=CLIENT_ID,
        client_secret_env="WY_LD_CLIENT_SECRET",
        client_secret=secret,
        scope="referrals/write",
    )
    tokens = OAuth2TokenSource(credentials, client, clock=clock, endpoint="wy-ld")
    target = FhirTarget(service_id=None, url=f"{server.url}/fhir", timeout_seconds=5)
    return FhirRestSender(target=target, client=client, tokens=tokens), tokens


def test_the_token_is_fetched_once_and_reused_while_it_is_fresh(auth_server: AuthServer) -> None:
    sender, tokens = oauth_sender(auth_server, Clock())
    for _ in range(3):
        assert sender.send(JOB).status == 200
    assert tokens.fetches == 1
    assert auth_server.posts == ["Bearer token-1"] * 3
    request = auth_server.token_requests[0]
    assert request["grant_type"] == ["client_credentials"]
    assert request["scope"] == ["referrals/write"]


def test_the_token_is_refreshed_shortly_before_it_expires(auth_server: AuthServer) -> None:
    auth_server.lifetime = 600  # refreshed 60 s before expiry
    clock = Clock()
    sender, tokens = oauth_sender(auth_server, clock)
    sender.send(JOB)
    clock.now = 539
    sender.send(JOB)
    assert tokens.fetches == 1
    clock.now = 541
    sender.send(JOB)
    assert tokens.fetches == 2
    assert auth_server.posts == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]


def test_a_401_fetches_a_new_token_once_and_retries(auth_server: AuthServer) -> None:
    sender, tokens = oauth_sender(auth_server, Clock())
    sender.send(JOB)
    auth_server.revoked.add("token-1")  # revoked by the trust before it expired

    assert sender.send(JOB).status == 200
    assert tokens.fetches == 2
    assert auth_server.posts[-2:] == ["Bearer token-1", "Bearer token-2"]


def test_bad_client_credentials_are_transient_and_name_the_oauth_error(
    auth_server: AuthServer,
) -> None:
    sender, _ = oauth_sender(auth_server, Clock(), secret="wrong")
    with pytest.raises(TransientError) as caught:
        sender.send(JOB)
    assert "invalid_client" in caught.value.message
    assert caught.value.status == 401
    assert auth_server.posts == []  # nothing reached the FHIR endpoint


# -- mutual TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls_receiver(pki: Path) -> Iterator[tuple[str, list[str]]]:
    subjects: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cert: Any = self.connection.getpeercert()  # type: ignore[attr-defined]
            subjects.append(dict(x[0] for x in cert["subject"])["commonName"])
            payload = b'{"resourceType":"Bundle"}'
            self.send_response(200)
            for k in ("X-Request-Id", "X-Correlation-Id"):
                self.send_header(k, self.headers[k])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/fhir", subjects
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_mutual_tls_presents_the_client_certificate_and_trusts_the_ca_bundle(
    pki: Path, mtls_receiver: tuple[str, list[str]]
) -> None:
    url, subjects = mtls_receiver
    client = Urllib3FhirClient(
        verify=str(pki / "ca.pem"), cert=(str(pki / "client.pem"), str(pki / "client.key"))
    )
    target = FhirTarget(service_id=None, url=url, timeout_seconds=5)
    assert FhirRestSender(target=target, client=client).send(JOB).status == 200
    assert subjects == ["client"]


def test_without_the_client_certificate_the_receiver_refuses_and_it_is_transient(
    pki: Path, mtls_receiver: tuple[str, list[str]]
) -> None:
    url, subjects = mtls_receiver
    client = Urllib3FhirClient(verify=str(pki / "ca.pem"))
    target = FhirTarget(service_id=None, url=url, timeout_seconds=5)
    with pytest.raises(TransientError):
        FhirRestSender(target=target, client=client).send(JOB)
    assert subjects == []
