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
from dataclasses import dataclass, field
from typing import Protocol

from hub.endpoints.delivered import _check_rendered_for, _judged
from hub.messages import Alert, FollowUp, HubIdentity, Recipient
from hub.ports import FhirClient
from hub.records import Delivered, DeliveryJob, Payload
from hub.transforms.alert_to_referral import build_referral, bundle_bytes
from hub.transforms.followup_to_bundle import build_followup


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
    """Bearer tokens for one endpoint (hub.endpoints.oauth2.OAuth2TokenSource)."""

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


FHIR_CONTENT_TYPE = "application/fhir+json"


def render_fhir_bundle(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    bundle = build_referral(alert, recipient=recipient, hub=hub)
    return Payload(bundle_bytes(bundle), FHIR_CONTENT_TYPE)


def render_fhir_followup(follow_up: FollowUp, recipient: Recipient, hub: HubIdentity) -> Payload:
    bundle = build_followup(follow_up, recipient=recipient, hub=hub)
    return Payload(bundle_bytes(bundle), FHIR_CONTENT_TYPE)
