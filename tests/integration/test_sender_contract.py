"""The Sender contract for FakeSender: each scripted answer is written twice, once as the
FakeSender's `Answer` and once as what an NHS service's HTTP server says (the FakeTrust, a real
HTTP server on loopback, answering FhirRestSender over urllib3). The same job must get the same
verdict from both: Delivered, TransientError (status, Retry-After) or PermanentError (status,
OperationOutcome); and each records the job's exact bytes and X-Request-Id.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hub.adapters.http_client import Urllib3FhirClient
from hub.endpoints.fhir_rest import FHIR_CONTENT_TYPE, FhirRestSender, FhirTarget
from hub.endpoints.hl7v2_mllp import HL7V2_CONTENT_TYPE
from hub.errors import PermanentError, TransientError
from hub.ports import Sender
from hub.records import DeliveryJob, ReferralRecord
from hub.testing.fake_sender import Answer, FakeSender
from hub.testing.fake_trust import FakeTrust
from tests.conftest import free_port

pytestmark = pytest.mark.integration

ENDPOINT = "wy-ld"
UNREACHABLE = "unreachable"  # the HTTP side of Answer.unreachable(): nothing listens


def oo(code: str, error_code: str, diagnostics: str | None = None) -> bytes:
    issue: dict[str, Any] = {
        "severity": "error",
        "code": code,
        "details": {
            "coding": [
                {"system": "https://fhir.nhs.uk/Codesystem/http-error-codes", "code": error_code}
            ]
        },
    }
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


# (id, the FakeSender's answer, what the trust's HTTP server answers: None = its normal 200
# with the BaRS echo, or (status, headers, body))
ANSWERS: list[tuple[str, Answer, Any]] = [
    ("delivered", Answer.delivered(200), None),
    (
        "duplicate-409-is-delivered",
        Answer.delivered(409),
        (409, {}, oo("duplicate", "REC_CONFLICT")),
    ),
    ("transient-503", Answer.transient(503), (503, {}, b"")),
    (
        "transient-429-retry-after",
        Answer.transient(429, retry_after=7),
        (429, {"Retry-After": "7"}, b""),
    ),
    (
        "transient-500-retry-after",
        Answer.transient(500, retry_after=0),
        (500, {"Retry-After": "0"}, oo("exception", "REC_SERVER_ERROR")),
    ),
    (
        "transient-200-without-the-echo",
        Answer.transient(200),
        (200, {"X-Request-Id": "someone-else"}, oo("informational", "OK")),
    ),
    ("transient-unreachable", Answer.unreachable(), UNREACHABLE),
    (
        "permanent-422-operation-outcome",
        Answer.permanent(422, operation_outcome="REC_UNPROCESSABLE Bundle.entry[2] missing"),
        (422, {}, oo("invalid", "REC_UNPROCESSABLE", "Bundle.entry[2] missing")),
    ),
    ("permanent-400-no-operation-outcome", Answer.permanent(400), (400, {}, b"bad request")),
]


def a_job(content_type: str = FHIR_CONTENT_TYPE) -> DeliveryJob:
    bundle_id = f"bundle-{uuid.uuid4()}"
    body = json.dumps(
        {"resourceType": "Bundle", "id": bundle_id, "type": "message", "note": "Zoë \u202e 🚓"},
        ensure_ascii=False,
    ).encode()
    referral = ReferralRecord(
        bundle_id=bundle_id,
        alert_id=f"alert-{uuid.uuid4()}",
        endpoint=ENDPOINT,
        request_id=str(uuid.uuid4()),
    )
    return DeliveryJob(referral=referral, body=body, content_type=content_type)


def verdict(sender: Sender, job: DeliveryJob) -> tuple[Any, ...]:
    """What the delivery stage acts on: the kind of result, status, Retry-After and what the
    peer said."""
    try:
        delivered = sender.send(job)
    except TransientError as exc:
        return ("transient", exc.status, exc.retry_after)
    except PermanentError as exc:
        return ("permanent", exc.status, exc.operation_outcome)
    return ("delivered", delivered.status)


@dataclass
class Trust:
    """The FakeTrust answering each referral with the reply scripted for its Bundle id."""

    server: FakeTrust
    replies: dict[str, Any]
    overridden: list[str]  # Bundle ids answered with a scripted reply
    client: Urllib3FhirClient

    def sender(self, reply: Any = None) -> FhirRestSender:
        url = f"http://127.0.0.1:{free_port()}/fhir" if reply == UNREACHABLE else None
        target = FhirTarget(
            service_id="2000072489", url=url or self.server.url(ENDPOINT), timeout_seconds=3
        )
        return FhirRestSender(target=target, client=self.client)


@pytest.fixture
def trust() -> Iterator[Trust]:
    replies: dict[str, Any] = {}
    overridden: list[str] = []
    lock = threading.Lock()

    def behaviour(endpoint: str, bundle: dict[str, Any]) -> Any:
        with lock:
            reply = replies.get(str(bundle.get("id")))
            if reply is not None:
                overridden.append(str(bundle["id"]))
            return reply

    server = FakeTrust(services={ENDPOINT: ("RXX01", "Liaison")}, behaviour=behaviour).start()
    client = Urllib3FhirClient()
    yield Trust(server, replies, overridden, client)
    client.close()
    server.stop()


@pytest.mark.parametrize(("answer", "reply"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_the_same_job_and_answer_get_the_same_verdict_from_the_fake_and_the_real_sender(
    trust: Trust, answer: Answer, reply: Any
) -> None:
    job = a_job()
    if reply not in (None, UNREACHABLE):
        trust.replies[job.referral.bundle_id] = reply
    fake = FakeSender([answer])

    real_verdict = verdict(trust.sender(reply), job)
    fake_verdict = verdict(fake, job)

    assert fake_verdict == real_verdict
    (sent,) = fake.sent
    assert (sent.body, sent.request_id, sent.answer) == (
        job.body,
        job.referral.request_id,
        answer,
    )
    if reply is None:  # the trust kept what it received: the same bytes and X-Request-Id
        (received,) = trust.server.received
        assert (received.body, received.request_id) == (job.body, job.referral.request_id)
    elif reply != UNREACHABLE:
        assert trust.overridden == [job.referral.bundle_id]


def test_a_retry_sends_the_same_bytes_and_request_id_and_a_duplicate_counts_as_delivered(
    trust: Trust,
) -> None:
    job = a_job()
    real = trust.sender()
    fake = FakeSender([Answer.delivered(200), Answer.delivered(409)])

    real_verdicts = [verdict(real, job), verdict(real, job)]
    fake_verdicts = [verdict(fake, job), verdict(fake, job)]

    assert fake_verdicts == real_verdicts == [("delivered", 200), ("delivered", 409)]
    received = trust.server.received
    assert [(r.body, r.request_id, r.duplicate) for r in received] == [
        (job.body, job.referral.request_id, False),
        (job.body, job.referral.request_id, True),
    ]
    assert [(s.body, s.request_id) for s in fake.sent] == [(r.body, r.request_id) for r in received]


def test_a_job_rendered_for_another_kind_is_refused_by_both_without_reaching_the_trust(
    trust: Trust,
) -> None:
    job = a_job(content_type=HL7V2_CONTENT_TYPE)
    fake = FakeSender([Answer.delivered()], content_type=FHIR_CONTENT_TYPE)

    assert verdict(fake, job) == verdict(trust.sender(), job) == ("permanent", None, None)

    # Proof the trust was listening all along: a right job, sent next, is the first it sees.
    right = a_job()
    assert verdict(trust.sender(), right) == ("delivered", 200)
    assert [r.bundle_id for r in trust.server.received] == [right.referral.bundle_id]
    assert fake.remaining == 1  # the refusal used no scripted answer
