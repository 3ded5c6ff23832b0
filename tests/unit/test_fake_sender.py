"""What FakeSender adds for tests beyond the Sender contract
(tests/integration/test_sender_contract.py): the script runs in order, then `then` answers."""

from __future__ import annotations

import pytest

from hub.errors import PermanentError, TransientError
from hub.records import DeliveryJob, ReferralRecord
from hub.testing.fake_sender import Answer, FakeSender

pytestmark = pytest.mark.unit

JOB = DeliveryJob(
    referral=ReferralRecord(bundle_id="b-1", alert_id="a-1", endpoint="wy-ld", request_id="r-1"),
    body=b'{"resourceType": "Bundle"}',
    content_type="application/fhir+json",
)


def test_scripted_answers_are_used_in_order_and_then_the_default_for_ever() -> None:
    sender = FakeSender([Answer.transient(503, retry_after=1.5)], then=Answer.permanent(410))

    with pytest.raises(TransientError) as transient:
        sender.send(JOB)
    for _ in range(2):
        with pytest.raises(PermanentError) as permanent:
            sender.send(JOB)

    assert (transient.value.status, transient.value.retry_after) == (503, 1.5)
    assert permanent.value.status == 410
    assert [s.answer.outcome for s in sender.sent] == ["transient", "permanent", "permanent"]
    assert sender.request_ids() == ["r-1"] * 3 and sender.bodies() == [JOB.body] * 3


def test_more_answers_can_be_scripted_later_and_the_default_is_delivered() -> None:
    sender = FakeSender()

    first = sender.send(JOB)
    sender.script(Answer.unreachable())
    with pytest.raises(TransientError) as unreachable:
        sender.send(JOB)

    assert (first.status, first.answer) == (200, "HTTP 200")
    assert unreachable.value.status is None and sender.remaining == 0
