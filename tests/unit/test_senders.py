"""The per-kind Senders with fake clients: what each sends, and how each answer is judged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.adapters.mllp import Hl7v2MllpSender
from hub.endpoints.fhir_rest import FhirRestSender, FhirTarget
from hub.endpoints.webhook import WebhookSender, WebhookTarget
from hub.errors import PermanentError, TransientError
from hub.records import DeliveryJob, HttpResult, ReferralRecord
from hub.transforms.http_answer import Verdict, classify
from hub.transforms.referral_to_ref_i12 import control_id_from_request_id
from hub.transforms.referral_to_webhook import signature

pytestmark = pytest.mark.unit

REFERRAL = ReferralRecord(
    bundle_id="b-1", alert_id="alert-1", endpoint="leeds-asc", request_id="req-1"
)
ECHO = {"x-request-id": "req-1", "x-correlation-id": "alert-1"}


@dataclass
class FakeHttp:
    """hub.ports.FhirClient answering every POST with one result."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    posted: list[dict[str, Any]] = field(default_factory=list)

    def post_message(
        self, *, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> HttpResult:
        self.posted.append({"url": url, "body": body, "headers": dict(headers), "timeout": timeout})
        return HttpResult(self.status, self.headers, self.body, elapsed_ms=3.0)


def webhook(http: FakeHttp) -> WebhookSender:
    target = WebhookTarget(url="https://asc.example/hook", timeout_seconds=4, key=b"s3cret")
    return WebhookSender(target=target, client=http)


def job(body: bytes = b'{"a":1}', content_type: str | None = "application/json") -> DeliveryJob:
    return DeliveryJob(referral=REFERRAL, body=body, content_type=content_type)


def test_a_webhook_post_is_signed_over_the_exact_body_and_carries_the_ids() -> None:
    http = FakeHttp(status=202)

    delivered = webhook(http).send(job())

    [post] = http.posted
    assert (post["url"], post["body"], post["timeout"]) == (
        "https://asc.example/hook",
        b'{"a":1}',
        4,
    )
    assert post["headers"]["X-Hub-Signature-256"] == signature(b'{"a":1}', b"s3cret")
    assert post["headers"]["X-Request-Id"] == "req-1"
    assert post["headers"]["X-Correlation-Id"] == "alert-1"
    assert post["headers"]["Content-Type"] == "application/json"
    assert (delivered.status, delivered.answer) == (202, "HTTP 202")


def test_a_webhook_2xx_needs_no_bars_echo_and_may_be_empty_but_not_html() -> None:
    assert webhook(FakeHttp(status=200, body=b'{"ok":true}')).send(job()).status == 200
    assert webhook(FakeHttp(status=204)).send(job()).status == 204
    with pytest.raises(TransientError, match="unparsable"):
        webhook(FakeHttp(status=200, body=b"<html>login</html>")).send(job())


def test_a_webhook_4xx_is_permanent_and_5xx_transient_with_the_status() -> None:
    with pytest.raises(PermanentError) as permanent:
        webhook(FakeHttp(status=401)).send(job())
    assert permanent.value.status == 401
    with pytest.raises(TransientError) as transient:
        webhook(FakeHttp(status=503, headers={"retry-after": "1"})).send(job())
    assert (transient.value.status, transient.value.retry_after) == (503, 1)


def test_the_fhir_sender_still_requires_the_bars_echo() -> None:
    target = FhirTarget(service_id=None, url="http://t/fhir/", timeout_seconds=3)
    fhir_job = job(content_type="application/fhir+json")
    with pytest.raises(TransientError, match="X-Request-Id"):
        FhirRestSender(target=target, client=FakeHttp(body=b"{}")).send(fhir_job)

    http = FakeHttp(headers=ECHO, body=b"{}")
    assert FhirRestSender(target=target, client=http).send(fhir_job).answer == "HTTP 200"
    assert http.posted[0]["url"] == "http://t/fhir/$process-message"


def test_a_job_rendered_for_another_kind_is_dead_lettered_not_sent() -> None:
    http = FakeHttp(status=200)
    with pytest.raises(PermanentError, match="kind changed"):
        webhook(http).send(job(content_type="application/fhir+json"))
    assert http.posted == []


def test_classify_without_echo_only_relaxes_2xx() -> None:
    def verdict(status: int, body: bytes = b"") -> Verdict:
        result = HttpResult(status, {}, body, 1.0)
        return classify(result, request_id="r", correlation_id="c", echo_required=False).verdict

    assert verdict(200) is Verdict.DELIVERED
    assert verdict(201, b"{}") is Verdict.DELIVERED
    assert verdict(200, b"not json") is Verdict.TRANSIENT
    assert verdict(400) is Verdict.PERMANENT
    assert verdict(502) is Verdict.TRANSIENT


@dataclass
class FakeMllp:
    """hub.adapters.mllp.MllpSender answering with one MSA code for the control id sent."""

    code: str
    sent: list[str] = field(default_factory=list)

    def send(self, host: str, port: int, message: str, *, timeout: float) -> str:
        self.sent.append(message)
        control_id = message.split("\r")[0].split("|")[9]
        msh = "MSH|^~\\&|PAS|XLP01|LD_HUB|X26HUB|20261123093000||ACK|A1|P|2.5"
        return f"{msh}\rMSA|{self.code}|{control_id}|text\r"


MLLP_REFERRAL = ReferralRecord(
    bundle_id="b-2",
    alert_id="alert-1",
    endpoint="leeds-pas",
    request_id="6f1c7a52-98d1-4e6b-a1f4-5d2e8c7b9a01",
)


def mllp_job(control_id: str) -> DeliveryJob:
    message = f"MSH|^~\\&|LD_HUB|X26HUB||XLP01|20261123093000||REF^I12^REF_I12|{control_id}|P|2.5\r"
    return DeliveryJob(
        referral=MLLP_REFERRAL,
        body=message.encode(),
        content_type="x-application/hl7-v2+er7; charset=utf-8",
    )


@pytest.mark.parametrize(
    ("code", "outcome"), [("AA", None), ("AE", TransientError), ("AR", PermanentError)]
)
def test_the_mllp_sender_judges_the_ack(code: str, outcome: type[Exception] | None) -> None:
    # MSH-10 comes from the job's own X-Request-Id, so follow-ups' ACKs match too.
    control_id = control_id_from_request_id(MLLP_REFERRAL.request_id)
    client = FakeMllp(code)
    sender = Hl7v2MllpSender(host="pas", port=2575, timeout_seconds=2, client=client)

    if outcome is None:
        delivered = sender.send(mllp_job(control_id))
        assert (delivered.answer, delivered.status) == ("ACK AA", None)
    else:
        with pytest.raises(outcome) as caught:
            sender.send(mllp_job(control_id))
        assert "text" in str(caught.value)
    assert len(client.sent) == 1


def test_a_token_services_error_text_is_not_repeated_into_the_error_unless_it_is_a_code() -> None:
    from hub.endpoints.oauth2 import OAuth2TokenSource
    from hub.settings.endpoint_credentials import OAuth2ClientCredentials

    class Poster:
        def __init__(self, error: object) -> None:
            self.body = json.dumps({"error": error}).encode()

        def post_form(self, **_: object) -> HttpResult:
            return HttpResult(status=401, headers={}, body=self.body, elapsed_ms=1.0)

    credentials = OAuth2ClientCredentials(
        token_url="https://auth.example/token",
        client_id="hub",
        client_secret_env="S",
        client_secret="s",
    )
    messages = []
    for error in ("invalid_client", "Patient Jordan Testperson \x1b[2J", {"nested": "Jordan"}):
        with pytest.raises(TransientError) as caught:
            OAuth2TokenSource(credentials, Poster(error)).token()  # type: ignore[arg-type]
        messages.append(caught.value.message)

    assert "(invalid_client)" in messages[0]
    assert not any("Jordan" in m or "\x1b" in m for m in messages)
