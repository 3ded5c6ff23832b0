"""The hub's inbound HTTP API (starlette, served by uvicorn in a thread).

`POST /fhir/$process-message` takes a service's BaRS servicerequest-response and answers 200
only once it is durably queued on hub.outcomes.inbound. Errors are FHIR OperationOutcomes.
The only module that imports starlette/uvicorn.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from hub.adapters.rabbitmq import OUTCOMES_INBOUND_QUEUE, WORK_EXCHANGE
from hub.errors import InvalidMessage, TransientError
from hub.log import bind_correlation, get_logger
from hub.messages import Recipient
from hub.pipeline import H_ALERT_ID
from hub.ports import Ledger, Publisher
from hub.transforms.response_to_outcome import parse_service_response

log = get_logger("hub.api")

FHIR_JSON = "application/fhir+json"
ERROR_SYSTEM = "https://fhir.nhs.uk/Codesystem/http-error-codes"


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


def build_app(
    *,
    ledger: Ledger,
    publisher: Publisher,
    recipients: Mapping[str, Recipient],
    max_body_bytes: int,
    readiness: Callable[[], dict[str, bool]] | None = None,
    metrics: Callable[[], tuple[bytes, str]] | None = None,  # Prometheus text: (body, type)
    console: Starlette | None = None,  # the ops console (hub.adapters.console), at /ops
) -> Starlette:
    async def process_message(request: Request) -> Response:
        echo = {
            k: request.headers[k]
            for k in ("x-request-id", "x-correlation-id")
            if k in request.headers
        }
        if len(echo) < 2:
            return operation_outcome(
                400,
                "REC_BAD_REQUEST",
                "invalid",
                "X-Request-Id and X-Correlation-Id headers are required",
                echo=echo,
            )
        declared = int(request.headers.get("content-length") or 0)
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
        return await run_in_threadpool(_accept, body, echo)

    def _accept(body: bytes, echo: dict[str, str]) -> Response:
        try:
            bundle = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return operation_outcome(
                400, "REC_BAD_REQUEST", "structure", "body is not a JSON document", echo=echo
            )
        try:
            response = parse_service_response(bundle)
        except InvalidMessage as exc:
            text = "; ".join(f"{p.path}: {p.problem}" for p in exc.problems)
            return operation_outcome(422, "REC_UNPROCESSABLE_ENTITY", "invalid", text, echo=echo)
        referral = ledger.get_referral(response.response_to)
        if referral is None:
            return operation_outcome(
                404,
                "REC_NOT_FOUND",
                "not-found",
                "MessageHeader.response.identifier names no referral this hub sent",
                echo=echo,
            )
        bind_correlation(referral.alert_id)
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
        checks = readiness() if readiness else {}
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

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
    """uvicorn in a background thread; `stop()` finishes in-flight requests first."""

    def __init__(self, app: Starlette, *, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
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
