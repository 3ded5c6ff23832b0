"""Batches (Dispatcher.dispatch_batch, IntakeStage.process_batch, DeliveryStage.process_batch):
a batch of messages ends exactly as the same messages taken one at a time would, one bad
message is answered or parked alone, and the batch's publishes go out together."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from hub.adapters.memory.publisher import MemoryPublisher
from hub.errors import LedgerUnavailable, TransientError
from hub.pipeline import Dispatcher, RetryPolicy
from hub.testing.fake_sender import Answer
from hub.wire import DLQ_EXCHANGE, OUTCOMES_EXCHANGE, Disposition, Envelope, Outgoing
from tests.fixtures.alerts import cancellation_of, custody_alert, to_body, update_of
from tests.fixtures.dead_letters import PROVENANCE
from tests.unit.stages.harness import MemoryHub, job_envelope, justice_envelope

pytestmark = pytest.mark.unit

SENT = "2026-11-23T09:30:30Z"


class CountingPublisher(MemoryPublisher):
    """A MemoryPublisher that counts how its messages were handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.singles = 0
        self._in_batch = False

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        self.batches.append(len(messages))
        self._in_batch = True
        try:
            super().publish_many(messages)
        finally:
            self._in_batch = False

    def publish(self, **kwargs: Any) -> None:
        self.singles += 0 if self._in_batch else 1
        super().publish(**kwargs)


def mixed_messages() -> list[dict[str, Any]]:
    """Valid alerts, one invalid, one conflicting with an earlier one, one twice, and a
    follow-up of the first: what a busy alert queue holds."""
    first, second, third = custody_alert(), custody_alert(), custody_alert()
    invalid = {**custody_alert(), "alert_id": "not an id"}
    conflict = {**second, "urgency": "routine" if second["urgency"] != "routine" else "urgent"}
    update = update_of(first, sent_at=SENT)
    return [first, second, invalid, third, conflict, third, update]


def outcome_of(hub: MemoryHub) -> tuple[Any, ...]:
    """Everything a run leaves behind that a user can see, without the parts that differ by
    design (seals over timestamps)."""
    published = Counter(
        (p.exchange, p.routing_key, p.message_id, p.body) for p in hub.publisher.messages()
    )
    alerts = {}
    for body in hub.publisher.bodies(OUTCOMES_EXCHANGE):
        outcome = json.loads(body)
        alerts.setdefault(outcome["alert_id"], []).append(outcome["status"])
    states = {}
    for (_, _, message_id, _), _count in published.items():
        record = hub.ledger.get_alert(message_id or "")
        if record is not None:
            states[message_id] = record.state
    return published, alerts, states


def test_an_intake_batch_ends_as_the_same_alerts_taken_one_at_a_time() -> None:
    messages = mixed_messages()
    alone, together = MemoryHub(), MemoryHub()

    singly = [alone.send(m) for m in messages]
    batched = together.dispatcher(together.intake).dispatch_batch(
        [justice_envelope(m) for m in messages]
    )

    assert singly == batched == [Disposition.ACK] * len(messages)
    assert outcome_of(alone) == outcome_of(together)
    rejected = [o for o in together.outcomes() if o["status"] == "rejected"]
    assert len(rejected) == 2  # the invalid one and the conflict, each answered alone
    for m in messages[:2] + messages[3:4]:
        assert len(together.ledger.referrals_for(m["alert_id"])) >= 1


def test_an_intake_batch_publishes_its_delivery_jobs_together() -> None:
    hub = MemoryHub()
    hub.publisher = CountingPublisher()
    hub.__post_init__()
    alerts = [custody_alert() for _ in range(5)]

    hub.dispatcher(hub.intake).dispatch_batch([justice_envelope(a) for a in alerts])

    jobs = len(hub.jobs())
    assert jobs >= 5
    assert hub.publisher.batches == [jobs] and hub.publisher.singles == 0


def test_a_delivery_batch_ends_as_the_same_jobs_taken_one_at_a_time() -> None:
    alerts = [custody_alert() for _ in range(4)]

    def run(batch: bool) -> tuple[MemoryHub, list[Disposition]]:
        hub = MemoryHub()
        # The third alert's first job is refused for good, the fourth's meets a blip.
        for a in alerts:
            hub.send(a)
        wy = [j for j in hub.jobs() if j.routing_key == "hub.deliver.wy-ld"]
        answers = {wy[2].message_id: Answer.permanent(422), wy[3].message_id: Answer.transient()}
        for j in wy:
            if j.message_id in answers:
                hub.senders["wy-ld"].script(answers[j.message_id])
            else:
                hub.senders["wy-ld"].script(Answer.delivered())
        stage = hub.delivery["wy-ld"]
        if batch:
            dispositions = hub.dispatcher(stage).dispatch_batch([job_envelope(j) for j in wy])
        else:
            dispositions = [hub.deliver(j) for j in wy]
        return hub, dispositions

    (alone, singly), (together, batched) = run(batch=False), run(batch=True)

    assert singly == batched == [Disposition.ACK] * len(singly)
    assert outcome_of(alone) == outcome_of(together)
    for a in alerts:
        assert [r.state for r in alone.ledger.referrals_for(a["alert_id"])] == [
            r.state for r in together.ledger.referrals_for(a["alert_id"])
        ]
        assert together.events(a["alert_id"]) == alone.events(a["alert_id"])
    parked = together.publisher.messages(DLQ_EXCHANGE)
    assert len(parked) == 1  # the refused one, alone; the blip went to a retry queue
    received = [o for o in together.outcomes() if o["status"] == "received"]
    assert len(received) == len(singly) - 2


def test_follow_ups_in_a_delivery_batch_go_after_their_referral() -> None:
    hub = MemoryHub()
    alert = custody_alert()
    hub.send(alert)
    hub.send(update_of(alert, sent_at=SENT))
    hub.send(cancellation_of(alert, sent_at=SENT))
    wy = [j for j in hub.jobs() if j.routing_key == "hub.deliver.wy-ld"]
    for _ in wy:
        hub.senders["wy-ld"].script(Answer.delivered())

    dispositions = hub.dispatcher(hub.delivery["wy-ld"]).dispatch_batch(
        [job_envelope(j) for j in wy]
    )

    assert dispositions == [Disposition.ACK] * len(wy)
    sent = [s.job.referral.kind for s in hub.senders["wy-ld"].sent]
    assert sent[0] == "new" and len(sent) == len(wy)


class ScriptedBatchStage:
    """A stage whose batch says what the test tells it to."""

    name = "intake"

    def __init__(self, results: Any) -> None:
        self.results = results
        self.alone: list[str | None] = []

    def process_batch(
        self, envelopes: Sequence[Envelope], *, stopping: Callable[[], bool]
    ) -> list[Any]:
        if isinstance(self.results, Exception):
            raise self.results
        return list(self.results)

    def process(self, envelope: Envelope) -> None:
        self.alone.append(envelope.message_id)

    def on_rejected(self, envelope: Envelope, error: Any) -> None:
        pass

    def on_dead_letter(self, envelope: Envelope, error: Any) -> None:
        pass


def dispatcher_for(stage: ScriptedBatchStage, publisher: MemoryPublisher) -> Dispatcher:
    return Dispatcher(stage, publisher=publisher, retry=RetryPolicy(), provenance=PROVENANCE)


def envelopes(n: int) -> list[Envelope]:
    return [justice_envelope({**custody_alert(), "alert_id": f"m-{i}"}) for i in range(n)]


def test_what_a_batch_leaves_goes_through_the_stage_alone_and_what_it_did_is_acked() -> None:
    stage = ScriptedBatchStage([True, False, True])
    publisher = MemoryPublisher()

    dispositions = dispatcher_for(stage, publisher).dispatch_batch(envelopes(3))

    assert dispositions == [Disposition.ACK] * 3
    assert stage.alone == ["m-1"]


def test_an_error_a_batch_reports_for_one_message_is_disposed_of_for_that_message() -> None:
    stage = ScriptedBatchStage([True, TransientError("HTTP 503", endpoint="wy-ld"), True])
    publisher = MemoryPublisher()

    dispositions = dispatcher_for(stage, publisher).dispatch_batch(envelopes(3))

    assert dispositions == [Disposition.ACK] * 3
    retried = [p for p in publisher.messages() if p.exchange.startswith("hub.retry")]
    assert [p.message_id for p in retried] == ["m-1"] and stage.alone == []


def test_a_batch_that_fails_as_a_whole_is_taken_one_message_at_a_time() -> None:
    stage = ScriptedBatchStage(RuntimeError("boom"))
    publisher = MemoryPublisher()

    dispositions = dispatcher_for(stage, publisher).dispatch_batch(envelopes(4))

    assert dispositions == [Disposition.ACK] * 4
    assert stage.alone == ["m-0", "m-1", "m-2", "m-3"]


def test_a_batch_that_finds_the_ledger_away_goes_back_whole_without_trying_each() -> None:
    stage = ScriptedBatchStage(LedgerUnavailable("database away"))
    publisher = MemoryPublisher()

    dispositions = dispatcher_for(stage, publisher).dispatch_batch(envelopes(3))

    assert dispositions == [Disposition.REQUEUE] * 3
    assert stage.alone == [] and publisher.messages() == []


def test_a_batch_of_one_is_taken_alone() -> None:
    stage = ScriptedBatchStage(RuntimeError("a batch of one never reaches process_batch"))
    publisher = MemoryPublisher()

    assert dispatcher_for(stage, publisher).dispatch_batch(envelopes(1)) == [Disposition.ACK]
    assert stage.alone == ["m-0"]


def test_an_alert_twice_in_one_batch_gets_one_referral_per_service() -> None:
    alert = custody_alert()
    hub = MemoryHub()

    dispositions = hub.dispatcher(hub.intake).dispatch_batch(
        [justice_envelope(alert), justice_envelope(alert)]
    )

    assert dispositions == [Disposition.ACK] * 2
    stored = hub.ledger.get_alert(alert["alert_id"])
    assert stored is not None
    assert stored.facts.body_sha256 == hashlib.sha256(to_body(alert)).hexdigest()
    assert sorted(r.endpoint for r in hub.ledger.referrals_for(alert["alert_id"])) == [
        "dat",
        "wy-ld",
    ]


def test_a_delivery_batch_stopped_midway_sends_no_more_and_hands_the_rest_back() -> None:
    hub = MemoryHub()
    for _ in range(4):
        hub.send(custody_alert())
    wy = [j for j in hub.jobs() if j.routing_key == "hub.deliver.wy-ld"]
    sender = hub.senders["wy-ld"]

    def stop_after_two() -> bool:  # the worker's should_stop, turning true midway
        return len(sender.sent) >= 2

    dispositions = hub.dispatcher(hub.delivery["wy-ld"]).dispatch_batch(
        [job_envelope(j) for j in wy], stopping=stop_after_two
    )

    assert dispositions == [Disposition.ACK] * 2 + [Disposition.REQUEUE] * (len(wy) - 2)
    assert len(sender.sent) == 2
    received = [o for o in hub.outcomes() if o["status"] == "received"]
    assert len(received) == 2
