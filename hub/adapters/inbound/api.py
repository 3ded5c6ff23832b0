"""The hub's inbound HTTP API (starlette, served by uvicorn in a thread).

`POST /fhir/$process-message` takes a service's BaRS servicerequest-response and answers 200
only once it is durably queued on hub.outcomes.inbound. The caller must authenticate as the
service the referral went to (hub/security/inbound_auth.py: bearer token and/or client
certificate), before its body is read; what happens to the body is decided by
hub/stages/inbound_outcomes.py, and answered here. Errors are FHIR OperationOutcomes. Only
hub/adapters/inbound/ imports starlette and uvicorn (tls.py is the HTTPS helper).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from hub.adapters.inbound.tls import uvicorn_tls_options
from hub.errors import ConfigError, TransientError
from hub.log import get_logger
from hub.messages import Recipient
from hub.ports import Publisher
from hub.ports_ledger import OutcomeLedger
from hub.security.inbound_auth import ApiTls, Authentication, InboundCredentials, authenticate
from hub.stages.inbound_outcomes import FHIR_JSON, InboundOutcomes, InboundResult, Verdict

log = get_logger("hub.api")

ACCEPTED_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json"})
HUB_HEADER_PREFIX = "x-hub-"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ERROR_SYSTEM = "https://fhir.nhs.uk/Codesystem/http-error-codes"
REALM = "ld-hub"
# Why a request was refused (RFC 6750 §3.1 error codes): never says which service, if any,
# a token belongs to.
_UNAUTHORISED_TEXT = {
    None: "authentication required: a bearer token and/or a client certificate",
    "invalid_request": "the Authorization header is not 'Bearer <token>'",
    "invalid_token": "the credentials presented are not those of a service this hub knows",
}


def operation_outcome(
    status: int,
    code: str,
    issue_code: str,
    text: str,
    *,
    echo: Mapping[str, str],
    severity: str = "error",
) -> Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": issue_code,
                "details": {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": text},
            }
        ],
    }
    return JSONResponse(body, status_code=status, headers=dict(echo), media_type=FHIR_JSON)


def not_found(echo: Mapping[str, str]) -> Response:
    """The one answer for a referral this hub did not send to the caller, whether it exists."""
    return operation_outcome(
        404,
        "REC_NOT_FOUND",
        "not-found",
        "MessageHeader.response.identifier names no referral this hub sent you",
        echo=echo,
    )


# What each verdict of the use case is answered with: (status, code, issue code).
_ANSWERS = {
    Verdict.QUEUED: (200, "OK", "informational"),
    Verdict.UNREADABLE: (400, "REC_BAD_REQUEST", "structure"),
    Verdict.UNMAPPABLE: (422, "REC_UNPROCESSABLE_ENTITY", "invalid"),
    Verdict.WRONG_SENDER: (403, "REC_FORBIDDEN", "forbidden"),
    Verdict.NOT_QUEUED: (503, "REC_UNAVAILABLE", "transient"),
}


def http_answer(result: InboundResult, *, echo: Mapping[str, str]) -> Response:
    """The HTTP answer for what stages/inbound_outcomes.py decided."""
    if result.verdict is Verdict.NOT_FOUND:
        return not_found(echo)
    status, code, issue_code = _ANSWERS[result.verdict]
    severity = "information" if result.verdict is Verdict.QUEUED else "error"
    return operation_outcome(status, code, issue_code, result.text, echo=echo, severity=severity)


def unauthorised(auth: Authentication, *, echo: Mapping[str, str]) -> Response:
    """401 with the RFC 6750 challenge; an OperationOutcome like every other error."""
    challenge = f'Bearer realm="{REALM}"'
    if auth.error:
        challenge += f', error="{auth.error}"'
    return operation_outcome(
        401,
        "REC_UNAUTHORIZED",
        "login",
        _UNAUTHORISED_TEXT.get(auth.error, "not authenticated"),
        echo={**echo, "WWW-Authenticate": challenge},
    )


def client_cert_name(request: Request) -> str | None:
    """The verified client certificate's subject (ASGI TLS extension; see tls.py)."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    return name if isinstance(name, str) else None


def build_app(
    *,
    ledger: OutcomeLedger,
    publisher: Publisher,
    recipients: Mapping[str, Recipient],
    inbound: Mapping[str, InboundCredentials],  # endpoint -> what it must present; absent: refused
    max_body_bytes: int,
    readiness: Callable[[], Mapping[str, Any]] | None = None,  # checks, and a "down" list
    metrics: Callable[[], tuple[bytes, str]] | None = None,  # Prometheus text: (body, type)
    console: Starlette | None = None,  # the ops console (hub/adapters/inbound/console.py), at /ops
) -> Starlette:
    outcomes = InboundOutcomes(ledger=ledger, publisher=publisher, recipients=recipients)

    async def process_message(request: Request) -> Response:
        # Headers in the hub's own namespace are refused before anything reads them: only the
        # hub writes x-hub-* (DESIGN.md, "Trust boundary").
        if any(name.lower().startswith(HUB_HEADER_PREFIX) for name in request.headers):
            return operation_outcome(
                400,
                "REC_BAD_REQUEST",
                "invalid",
                f"headers starting {HUB_HEADER_PREFIX} are the hub's own and may not be sent",
                echo={},
            )
        # BaRS: X-Request-Id and X-Correlation-Id are UUIDs. Anything else is refused unread:
        # never echoed, never logged (a caller's 60 KB header would otherwise reach both).
        malformed = [
            name
            for name in ("x-request-id", "x-correlation-id")
            if name in request.headers and not _UUID.fullmatch(request.headers[name])
        ]
        if malformed:
            return operation_outcome(
                400,
                "REC_BAD_REQUEST",
                "invalid",
                "X-Request-Id and X-Correlation-Id must be UUIDs",
                echo={},
            )
        echo = {
            k: request.headers[k]
            for k in ("x-request-id", "x-correlation-id")
            if k in request.headers
        }
        # Authenticate first: nothing about the body or the referral is read for a stranger.
        auth = authenticate(
            inbound,
            authorization=request.headers.get("authorization"),
            client_cert_name=client_cert_name(request),
        )
        if not auth.ok:
            log.warning(
                "outcome_unauthenticated",
                error=auth.error or "no_credentials",
                client=request.client.host if request.client else None,
                request_id=echo.get("x-request-id"),
            )
            return unauthorised(auth, echo=echo)
        if len(echo) < 2:
            return operation_outcome(
                400,
                "REC_BAD_REQUEST",
                "invalid",
                "X-Request-Id and X-Correlation-Id headers are required",
                echo=echo,
            )
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type not in ACCEPTED_MEDIA_TYPES:
            return operation_outcome(
                415,
                "REC_UNSUPPORTED_MEDIA_TYPE",
                "not-supported",
                "Content-Type must be application/fhir+json or application/json",
                echo=echo,
            )
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            declared = 0  # uvicorn refuses a malformed Content-Length before it gets here
        if declared > max_body_bytes:
            return operation_outcome(
                413, "REC_BAD_REQUEST", "too-costly", f"body over {max_body_bytes} bytes", echo=echo
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return operation_outcome(
                    413,
                    "REC_BAD_REQUEST",
                    "too-costly",
                    f"body over {max_body_bytes} bytes",
                    echo=echo,
                )
        # The confirmed publish blocks: run it in the thread pool, not on the event loop.
        return await run_in_threadpool(_accept, body, echo, auth.endpoints)

    def _accept(body: bytes, echo: dict[str, str], caller: frozenset[str]) -> Response:
        return http_answer(outcomes.receive(body, echo, caller), echo=echo)

    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    def readyz(request: Request) -> Response:
        # `down`: the hub's threads not doing their job, by name (none when all is well).
        checks = dict(readiness() if readiness else {})
        down = list(checks.pop("down", []))
        ok = all(checks.values()) and not down
        body = {"ready": ok, "checks": checks, "down": down}
        return JSONResponse(body, status_code=200 if ok else 503)

    def metrics_page(request: Request) -> Response:
        if metrics is None:
            return Response(status_code=404)
        body, content_type = metrics()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[
            Route("/fhir/$process-message", process_message, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
            *([Mount("/ops", app=console)] if console is not None else []),
        ]
    )


class ApiServer:
    """uvicorn in a background thread, HTTPS when `tls` is given (hub/adapters/inbound/tls.py);
    `stop()` finishes in-flight requests first."""

    def __init__(self, app: Starlette, *, host: str, port: int, tls: ApiTls | None = None) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            **uvicorn_tls_options(tls),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        try:
            # Here, not in the thread: a wrong key password or a file that is not PEM stops
            # start-up with a message, not a silent thread and a timeout.
            self._server.config.load()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            if not self._server.config.is_ssl:
                raise
            raise ConfigError([f"api.tls: cannot load the certificate, key or CA: {exc}"]) from exc
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TransientError("the HTTP API did not start (port in use?)")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        servers = self._server.servers
        if servers and servers[0].sockets:
            return int(servers[0].sockets[0].getsockname()[1])
        return int(self._server.config.port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
