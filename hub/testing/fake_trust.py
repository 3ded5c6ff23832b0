"""A pretend NHS trust for the demo, the tests and the benchmark: a real HTTP server on
loopback with one BaRS `$process-message` per endpoint (`/fhir/<endpoint>/$process-message`).

It behaves as BaRS asks a receiver to: echoes X-Request-Id / X-Correlation-Id, answers a
repeated X-Request-Id with 409 + OperationOutcome `duplicate`, and can later POST
servicerequest-response messages back to the hub's own `$process-message`, presenting each
endpoint's credentials (bearer token, client certificate) as that service would.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hub.messages import OutcomeStatus
from hub.transforms.response_to_outcome import build_service_response


@dataclass(frozen=True, slots=True)
class Received:
    endpoint: str
    request_id: str
    correlation_id: str
    bundle_id: str
    body: bytes
    headers: Mapping[str, str]
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Reply:
    """One response the trust sends back after a referral arrives."""

    status: OutcomeStatus
    recommendation: str | None = None
    note: str | None = None
    referred_to: str | None = None
    delay: float = 0.05


@dataclass(frozen=True, slots=True)
class HubCredentials:
    """What the trust presents when it POSTs to the hub for one endpoint (its `inbound`)."""

    token: str | None = field(default=None, repr=False)
    cert: tuple[str, str] | None = None  # client certificate and key (PEM files): mutual TLS


def inbound_token_env(endpoint: str) -> str:
    """The variable holding the token `endpoint` presents to the hub (demo and tests)."""
    return endpoint.upper().replace("-", "_") + "_INBOUND_TOKEN"


# (endpoint, bundle) -> (HTTP status, extra headers, body) to override the normal answer.
Behaviour = Callable[[str, dict[str, Any]], tuple[int, dict[str, str], bytes] | None]


@dataclass
class FakeTrust:
    services: Mapping[str, tuple[str, str]]  # endpoint -> (ODS code, organisation name)
    hub_base_url: str | None = None  # where replies go: <base>/$process-message
    replies: Callable[[str, dict[str, Any]], list[Reply]] | None = None
    behaviour: Behaviour | None = None
    credentials: Mapping[str, HubCredentials] = field(default_factory=dict)  # per endpoint
    hub_ca: str | None = None  # the CA file that verifies an https:// hub
    received: list[Received] = field(default_factory=list)
    reply_results: list[int] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeTrust:
        trust = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the demo's output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                trust._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-trust", daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/fhir/{endpoint}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def delivered(self) -> list[Received]:
        """First receipts only (what the trust acted on)."""
        with self._lock:
            return [r for r in self.received if not r.duplicate]

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        parts = request.path.strip("/").split("/")
        endpoint = parts[1] if len(parts) >= 3 and parts[0] == "fhir" else "?"
        request_id = request.headers.get("X-Request-Id", "")
        correlation_id = request.headers.get("X-Correlation-Id", "")
        echo = {"X-Request-Id": request_id, "X-Correlation-Id": correlation_id}
        try:
            bundle = json.loads(body)
        except ValueError:
            self._answer(request, 400, echo, _oo("error", "structure", "REC_BAD_REQUEST"))
            return
        override = self.behaviour(endpoint, bundle) if self.behaviour else None
        if override is not None:
            status, headers, payload = override
            self._answer(request, status, {**echo, **headers}, payload)
            return
        with self._lock:
            duplicate = request_id in self._seen
            self._seen.add(request_id)
            self.received.append(
                Received(
                    endpoint,
                    request_id,
                    correlation_id,
                    str(bundle.get("id")),
                    body,
                    dict(request.headers.items()),
                    duplicate,
                )
            )
        if duplicate:
            self._answer(request, 409, echo, _oo("error", "duplicate", "REC_CONFLICT"))
            return
        self._answer(request, 200, echo, _oo("information", "informational", "OK"))
        if self.replies and self.hub_base_url:
            plan = self.replies(endpoint, bundle)
            threading.Thread(
                target=self._send_replies,
                args=(endpoint, bundle, plan, correlation_id),
                daemon=True,
            ).start()

    def _answer(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        headers: Mapping[str, str],
        payload: bytes,
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "application/fhir+json")
        request.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            request.send_header(k, v)
        request.end_headers()
        request.wfile.write(payload)

    def _send_replies(
        self, endpoint: str, bundle: dict[str, Any], plan: list[Reply], correlation_id: str
    ) -> None:
        ods, name = self.services[endpoint]
        for reply in plan:
            time.sleep(reply.delay)
            message = build_service_response(
                referral_bundle_id=str(bundle["id"]),
                service_ods=ods,
                service_name=name,
                status=reply.status,
                at=datetime.now(UTC),
                message_id=str(uuid.uuid4()),
                recommendation=reply.recommendation,
                note=reply.note,
                referred_to=reply.referred_to,
            )
            self.reply_results.append(
                self.post_to_hub(message, correlation_id=correlation_id, endpoint=endpoint)
            )

    def post_to_hub(
        self,
        message: dict[str, Any],
        *,
        correlation_id: str,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> int:
        """POST to the hub as `endpoint` (its `credentials`; none: no credentials at all);
        `token` replaces the endpoint's token. Returns the HTTP status (0: never answered)."""
        assert self.hub_base_url
        presented = self.credentials.get(endpoint, HubCredentials()) if endpoint else None
        token = token or (presented.token if presented else None)
        headers = {
            "Content-Type": "application/fhir+json",
            "X-Request-Id": str(uuid.uuid4()),
            "X-Correlation-Id": correlation_id,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        context = None
        if self.hub_base_url.startswith("https:"):
            context = ssl.create_default_context(cafile=self.hub_ca)
            if presented and presented.cert:
                context.load_cert_chain(*presented.cert)
        req = urllib.request.Request(
            self.hub_base_url.rstrip("/") + "/$process-message",
            data=json.dumps(message).encode(),
            headers=headers,
            method="POST",
        )
        for _ in range(20):  # BaRS: the sender retries when the receiver is unavailable
            try:
                with urllib.request.urlopen(req, timeout=10, context=context) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503):
                    return int(exc.code)
            except OSError:
                pass
            time.sleep(0.2)
        return 0


def _oo(severity: str, code: str, error_code: str) -> bytes:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": severity,
                    "code": code,
                    "details": {
                        "coding": [
                            {
                                "system": "https://fhir.nhs.uk/Codesystem/http-error-codes",
                                "code": error_code,
                            }
                        ]
                    },
                }
            ],
        }
    ).encode()
