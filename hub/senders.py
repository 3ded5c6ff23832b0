"""One Sender per endpoint kind (hub.ports.Sender): each makes one attempt to hand a rendered
referral to its endpoint and returns Delivered or raises the verdict's error. Recording the
attempt, quick retries, the `received` outcome and dead-lettering stay in DeliveryStage.

No I/O of their own: the HTTP and MLLP clients are adapters passed in by bootstrap.

| kind        | sends                          | judged by                                       |
|-------------|--------------------------------|-------------------------------------------------|
| fhir-rest   | FHIR Bundle POSTed to          | delivery.classify (BaRS echo headers required)  |
|             | <url>/$process-message         |                                                 |
| webhook     | JSON POSTed to <url>, signed   | delivery.classify with echo_required=False      |
|             | X-Hub-Signature-256            |                                                 |
| hl7v2-mllp  | REF^I12 over MLLP to host:port | adapters.mllp.deliver_ref_i12 (AA / AE / AR)    |
| mesh        | FHIR Bundle to a MESH mailbox  | adapters.mesh (accepted by MESH = delivered)    |

fhir-rest with OAuth2: a 401 makes the Sender drop the cached token and try once more with a
fresh one in the same attempt (the token expired early or was revoked).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Protocol

from hub.adapters.mllp import MllpSender, deliver_ref_i12
from hub.delivery import Verdict, classify
from hub.errors import PermanentError, TransientError
from hub.payloads import FHIR_CONTENT_TYPE, HL7V2_CONTENT_TYPE, HL7V2_ENCODING
from hub.ports import Delivered, DeliveryJob, FhirClient, HttpResult
from hub.transforms.referral_to_ref_i12 import control_id_from_request_id
from hub.transforms.referral_to_webhook import CONTENT_TYPE as WEBHOOK_CONTENT_TYPE
from hub.transforms.referral_to_webhook import SIGNATURE_HEADER, signature


def _check_rendered_for(job: DeliveryJob, content_type: str, kind: str) -> None:
    """A job rendered for another kind (the endpoint's kind changed while jobs were queued)
    cannot be sent as it is: dead-letter it with a reason an operator can act on."""
    if job.content_type and job.content_type.split(";")[0] != content_type.split(";")[0]:
        raise PermanentError(
            f"delivery job holds {job.content_type.split(';')[0]}, not what a {kind} endpoint "
            f"sends ({content_type.split(';')[0]}); the endpoint's kind changed since it was "
            "routed: re-send the alert"
        )


def _judged(result: HttpResult, *, request_id: str, correlation_id: str, echo: bool) -> Delivered:
    judgement = classify(
        result, request_id=request_id, correlation_id=correlation_id, echo_required=echo
    )
    if judgement.verdict is Verdict.TRANSIENT:
        raise TransientError(
            judgement.reason, retry_after=judgement.retry_after, status=result.status
        )
    if judgement.verdict is Verdict.PERMANENT:
        raise PermanentError(
            judgement.reason, operation_outcome=judgement.operation_outcome, status=result.status
        )
    return Delivered(answer=judgement.reason, status=result.status, elapsed_ms=result.elapsed_ms)


@dataclass(frozen=True, slots=True)
class FhirTarget:
    """Where and how one fhir-rest endpoint is reached (built from configuration)."""

    service_id: str | None
    url: str  # FHIR base; the hub POSTs to <url>/$process-message
    timeout_seconds: float
    authorization: str | None = field(default=None, repr=False)  # full header value, from env

    @property
    def process_message_url(self) -> str:
        return self.url.rstrip("/") + "/$process-message"

    def headers(self, *, request_id: str, correlation_id: str) -> dict[str, str]:
        headers = {
            "Content-Type": FHIR_CONTENT_TYPE,
            "Accept": FHIR_CONTENT_TYPE,
            "X-Request-Id": request_id,
            "X-Correlation-Id": correlation_id,
        }
        if self.service_id:
            target = {"system": "https://fhir.nhs.uk/Id/dos-service-id", "value": self.service_id}
            headers["NHSD-Target-Identifier"] = base64.b64encode(
                json.dumps(target, separators=(",", ":")).encode()
            ).decode()
        if self.authorization:
            headers["Authorization"] = self.authorization
        return headers


class TokenSource(Protocol):
    """Bearer tokens for one endpoint (hub.oauth2.OAuth2TokenSource)."""

    def token(self) -> str: ...

    def invalidate(self, token: str) -> None: ...


class FhirRestSender:
    """fhir-rest: the BaRS POST of the referral Bundle; X-Request-Id and the bytes stay the same
    on every retry (BaRS idempotency)."""

    def __init__(
        self, *, target: FhirTarget, client: FhirClient, tokens: TokenSource | None = None
    ) -> None:
        self.target = target
        self.client = client
        self.tokens = tokens

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, FHIR_CONTENT_TYPE, "fhir-rest")
        referral = job.referral
        headers = self.target.headers(
            request_id=referral.request_id, correlation_id=referral.alert_id
        )
        for fresh_token in (False, True):
            token = self.tokens.token() if self.tokens else None
            if token:
                headers["Authorization"] = f"Bearer {token}"
            result = self.client.post_message(
                url=self.target.process_message_url,
                body=job.body,
                headers=headers,
                timeout=self.target.timeout_seconds,
            )
            if result.status != 401 or self.tokens is None or token is None or fresh_token:
                break
            self.tokens.invalidate(token)
        return _judged(
            result, request_id=referral.request_id, correlation_id=referral.alert_id, echo=True
        )


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """Where one webhook endpoint is reached and the key its payloads are signed with."""

    url: str
    timeout_seconds: float
    key: bytes = field(repr=False)  # HMAC-SHA256 key, from the environment


class WebhookSender:
    """webhook: the plain-JSON referral POSTed to the endpoint's URL, signed so the receiver
    can check it came from the hub and was not altered (X-Hub-Signature-256)."""

    def __init__(self, *, target: WebhookTarget, client: FhirClient) -> None:
        self.target = target
        self.client = client  # a plain POST: the FHIR client adds no FHIR of its own

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, WEBHOOK_CONTENT_TYPE, "webhook")
        referral = job.referral
        headers = {
            "Content-Type": WEBHOOK_CONTENT_TYPE,
            "Accept": WEBHOOK_CONTENT_TYPE,
            "X-Request-Id": referral.request_id,
            "X-Correlation-Id": referral.alert_id,
            SIGNATURE_HEADER: signature(job.body, self.target.key),
        }
        result = self.client.post_message(
            url=self.target.url,
            body=job.body,
            headers=headers,
            timeout=self.target.timeout_seconds,
        )
        return _judged(
            result, request_id=referral.request_id, correlation_id=referral.alert_id, echo=False
        )


class Hl7v2MllpSender:
    """hl7v2-mllp: the REF^I12 intake rendered, sent over MLLP; the ACK judged by
    deliver_ref_i12 (AA delivered, AE or no ACK transient, AR permanent)."""

    def __init__(self, *, host: str, port: int, timeout_seconds: float, client: MllpSender) -> None:
        self.host = host
        self.port = port
        self.timeout_seconds = timeout_seconds
        self.client = client

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, HL7V2_CONTENT_TYPE, "hl7v2-mllp")
        referral = job.referral
        started = time.perf_counter()
        ack = deliver_ref_i12(
            self.client,
            host=self.host,
            port=self.port,
            message=job.body.decode(HL7V2_ENCODING),
            control_id=control_id_from_request_id(referral.request_id),
            timeout=self.timeout_seconds,
            alert_id=referral.alert_id,
            endpoint=referral.endpoint,
        )
        return Delivered(
            answer=f"ACK {ack.code}",
            status=None,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )


class MeshOutbox(Protocol):
    """What the mesh kind needs of hub.adapters.mesh.MeshSender."""

    def send(self, body: bytes, *, local_id: str, subject: str, filename: str) -> str: ...


class MeshReferralSender:
    """mesh: the referral's FHIR Bundle uploaded, byte for byte, to the trust's mailbox under
    the endpoint's workflow; `local_id` is the X-Request-Id, the same on every resend (MESH
    does not de-duplicate: the ledger's DELIVERED check before sending does). MESH accepting it
    is delivery; the trust acknowledges it from its inbox."""

    def __init__(self, *, outbox: MeshOutbox) -> None:
        self.outbox = outbox

    def close(self) -> None:
        close = getattr(self.outbox, "close", None)
        if close is not None:
            close()

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, FHIR_CONTENT_TYPE, "mesh")
        referral = job.referral
        started = time.perf_counter()
        message_id = self.outbox.send(
            job.body,
            local_id=referral.request_id,
            subject="L&D referral",
            filename=f"{referral.bundle_id}.json",
        )
        return Delivered(
            answer=f"MESH message {message_id}",
            status=None,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
