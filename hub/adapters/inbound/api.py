"""The hub's inbound HTTP API (starlette, served by uvicorn in a thread).

`POST /fhir/$process-message` takes a service's BaRS servicerequest-response and answers 200
only once it is durably queued on hub.outcomes.inbound. The caller must authenticate as the
service the referral went to (hub.inbound_auth: bearer token and/or client certificate), before
its body is read. Errors are FHIR OperationOutcomes. The only module that imports starlette and
uvicorn (with hub.adapters.api_tls, its HTTPS helper).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from hub.adapters.inbound.tls import uvicorn_tls_options
from hub.errors import ConfigError, InvalidMessage, TransientError
from hub.log import bind_correlation, get_logger
from hub.messages import Problem, Recipient
from hub.ports import OutcomeLedger, Publisher
from hub.security.inbound_auth import ApiTls, Authentication, InboundCredentials, authenticate
from hub.security.masking import KNOWN_FIELDS, json_depth
from hub.transforms.response_to_outcome import parse_service_response
from hub.wire import (
    DLQ_EXCHANGE,
    H_ALERT_ID,
    H_ATTEMPTS,
    H_ENDPOINT,
    H_ERROR,
    H_ERROR_CLASS,
    H_FIRST_FAILURE,
    H_HTTP_STATUS,
    H_LAST_FAILURE,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_PROBLEMS,
    H_STAGE,
    OUTCOMES_INBOUND_QUEUE,
    WORK_EXCHANGE,
)

log = get_logger("hub.api")

FHIR_JSON = "application/fhir+json"
ACCEPTED_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json"})
HUB_HEADER_PREFIX = "x-hub-"
MAX_JSON_DEPTH = 32  # a BaRS response Bundle nests about 10 deep
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


def path_for_log(path: str) -> str:
    """A problem's path with every key that is not a known FHIR element replaced: pydantic's
    paths hold the keys the service sent, and a key can quote a person as well as a value."""
    parts = []
    for part in path.split(".")[:20]:
        name, _, index = part.partition("[")
        known = name in KNOWN_FIELDS or name in ("Bundle", "$")
        parts.append((name if known else "[key]") + (f"[{index}" if index else ""))
    return ".".join(parts)[:200]


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
    """The verified client certificate's subject (ASGI TLS extension; hub.adapters.api_tls)."""
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
    console: Starlette | None = None,  # the ops console (hub.adapters.console), at /ops
) -> Starlette:
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

    def _park(body: bytes, problems: Sequence[Problem], caller: frozenset[str]) -> None:
        """An authenticated service's response the hub cannot read or map: refused to the
        service (4xx) and parked on hub.dlq.outcome with every problem, so operators see it in
        `hub failed` and may replay it (to hub.outcomes.inbound) once the cause is fixed."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        headers: dict[str, Any] = {
            H_STAGE: "outcome",
            H_ERROR_CLASS: "InvalidMessage",
            H_ERROR: "the service's response could not be mapped: "
            + "; ".join(p.path for p in problems)[:1500],
            H_PROBLEMS: json.dumps([p.as_dict() for p in problems]),
            H_ATTEMPTS: 1,
            H_FIRST_FAILURE: now,
            H_LAST_FAILURE: now,
            H_ORIGINAL_EXCHANGE: WORK_EXCHANGE,
            H_ORIGINAL_ROUTING_KEY: OUTCOMES_INBOUND_QUEUE,
            H_ORIGINAL_QUEUE: OUTCOMES_INBOUND_QUEUE,
            H_HTTP_STATUS: 422,
        }
        if len(caller) == 1:
            headers[H_ENDPOINT] = next(iter(caller))
        try:
            publisher.publish(
                exchange=DLQ_EXCHANGE,
                routing_key="outcome",
                body=body,
                headers=headers,
                content_type=FHIR_JSON,
            )
        except TransientError as exc:  # the service is told anyway; it may send it again
            log.warning("service_response_not_parked", reason=exc.message)
            return
        log.warning(
            "service_response_refused",
            endpoint=headers.get(H_ENDPOINT),
            problem_count=len(problems),
            paths=[path_for_log(p.path) for p in problems[:20]],
        )

    def _accept(body: bytes, echo: dict[str, str], caller: frozenset[str]) -> Response:
        try:
            bundle = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            problem = Problem("$", "body is not a JSON document")
            _park(body, [problem], caller)
            return operation_outcome(
                400, "REC_BAD_REQUEST", "structure", problem.problem, echo=echo
            )
        except RecursionError:  # nested past Python's own limit
            bundle = None
        if bundle is None or json_depth(bundle, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            problem = Problem("$", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            _park(body, [problem], caller)
            return operation_outcome(
                400, "REC_BAD_REQUEST", "structure", problem.problem, echo=echo
            )
        try:
            response = parse_service_response(bundle)
        except InvalidMessage as exc:
            _park(body, exc.problems, caller)
            text = "; ".join(f"{p.path}: {p.problem}" for p in exc.problems)
            return operation_outcome(422, "REC_UNPROCESSABLE_ENTITY", "invalid", text, echo=echo)
        referral = ledger.get_referral(response.response_to)
        if referral is None:
            return not_found(echo)
        bind_correlation(referral.alert_id)
        if referral.endpoint not in caller:
            # The same answer as for a referral that does not exist: a 403 would tell one trust
            # that an alert also went somewhere else (DESIGN.md, "Trust boundary").
            log.warning(
                "outcome_from_other_service",
                alert_id=referral.alert_id,
                endpoint=referral.endpoint,
                authenticated_as=sorted(caller),
            )
            return not_found(echo)
        recipient = recipients.get(referral.endpoint)
        if recipient is None or recipient.ods_code != response.sender_ods:
            log.warning(
                "outcome_from_wrong_service", alert_id=referral.alert_id, endpoint=referral.endpoint
            )
            return operation_outcome(
                403,
                "REC_FORBIDDEN",
                "forbidden",
                "the sender did not receive this referral",
                echo=echo,
            )
        try:
            publisher.publish(
                exchange=WORK_EXCHANGE,
                routing_key=OUTCOMES_INBOUND_QUEUE,
                body=body,
                headers={
                    H_ALERT_ID: referral.alert_id,
                    "x-hub-received-request-id": echo["x-request-id"],
                },
                message_id=response.message_id,
                correlation_id=referral.alert_id,
                content_type=FHIR_JSON,
            )
        except TransientError:
            log.error("outcome_not_queued", alert_id=referral.alert_id)
            return operation_outcome(
                503, "REC_UNAVAILABLE", "transient", "could not queue the message; retry", echo=echo
            )
        log.info(
            "service_response_queued",
            alert_id=referral.alert_id,
            endpoint=referral.endpoint,
            status=str(response.status),
        )
        return operation_outcome(
            200, "OK", "informational", "queued", echo=echo, severity="information"
        )

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
    """uvicorn in a background thread, HTTPS when `tls` is given (hub.adapters.api_tls);
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
