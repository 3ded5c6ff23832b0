"""The `webhook` endpoint kind: signed JSON events POSTed to a URL."""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.endpoints.delivered import _check_rendered_for, _judged
from hub.messages import Alert, FollowUp, HubIdentity, Recipient
from hub.ports import FhirClient
from hub.records import Delivered, DeliveryJob, Payload
from hub.transforms.referral_to_webhook import CONTENT_TYPE as WEBHOOK_CONTENT_TYPE
from hub.transforms.referral_to_webhook import (
    SIGNATURE_HEADER,
    build_webhook_followup,
    build_webhook_referral,
    signature,
    webhook_bytes,
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


def render_webhook_json(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    document = build_webhook_referral(alert, recipient=recipient, hub=hub)
    return Payload(webhook_bytes(document), WEBHOOK_CONTENT_TYPE)


def render_webhook_followup(follow_up: FollowUp, recipient: Recipient, hub: HubIdentity) -> Payload:
    document = build_webhook_followup(follow_up, recipient=recipient, hub=hub)
    return Payload(webhook_bytes(document), WEBHOOK_CONTENT_TYPE)
