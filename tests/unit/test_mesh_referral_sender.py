"""The mesh kind's Sender with a fake outbox: what it uploads and what it records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.endpoints.mesh import MeshReferralSender
from hub.errors import PermanentError
from hub.records import DeliveryJob, ReferralRecord

pytestmark = pytest.mark.unit

REFERRAL = ReferralRecord(bundle_id="b-1", alert_id="a-1", endpoint="leeds-mesh", request_id="r-1")


@dataclass
class FakeOutbox:
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, body: bytes, *, local_id: str, subject: str, filename: str) -> str:
        self.sent.append({"body": body, "local_id": local_id, "filename": filename})
        return "MSG-0001"


def test_the_bundle_is_uploaded_unchanged_with_the_request_id_as_local_id() -> None:
    outbox = FakeOutbox()
    job = DeliveryJob(referral=REFERRAL, body=b'{"resourceType":"Bundle"}',
                      content_type="application/fhir+json")  # fmt: skip

    delivered = MeshReferralSender(outbox=outbox).send(job)

    assert outbox.sent == [
        {"body": b'{"resourceType":"Bundle"}', "local_id": "r-1", "filename": "b-1.json"}
    ]
    assert delivered.answer == "MESH message MSG-0001" and delivered.status is None


def test_a_job_rendered_for_another_kind_is_not_uploaded() -> None:
    outbox = FakeOutbox()
    job = DeliveryJob(referral=REFERRAL, body=b"MSH|", content_type="x-application/hl7-v2+er7")
    with pytest.raises(PermanentError):
        MeshReferralSender(outbox=outbox).send(job)
    assert outbox.sent == []
