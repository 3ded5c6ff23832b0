"""The in-memory hub the stage tests run against: every stage wired to a MemoryLedger, a
MemoryPublisher, one FakeSender per endpoint and a clock the test moves by hand. Jobs the
intake queues are handed to the delivery stages by `deliver_all`, as the broker would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.adapters.memory.ledger import MemoryLedger
from hub.adapters.memory.metrics import MemoryMetrics
from hub.adapters.memory.publisher import MemoryPublisher, Published
from hub.endpoints.fhir_rest import render_fhir_bundle, render_fhir_followup
from hub.messages import HubIdentity, Pathway, Recipient, VulnerabilityType
from hub.pipeline import Dispatcher, RetryPolicy
from hub.routes.rules import Match, RouteTable, Rule
from hub.security.ids import IdKey
from hub.security.provenance import SealingPublisher
from hub.stages.delivery import DeliveryStage
from hub.stages.intake import IntakeStage
from hub.stages.outcomes import OutcomeStage
from hub.stages.overdue import OverdueWatch
from hub.testing.fake_sender import FakeSender
from hub.wire import H_ATTEMPTS, OUTCOMES_EXCHANGE, WORK_EXCHANGE, Disposition, Envelope
from tests.fixtures.alerts import routing_key_of, to_body
from tests.fixtures.dead_letters import PROVENANCE

ID_KEY = IdKey.of("unit-stage-tests-id-key-" + "k" * 32)
NOW = datetime(2026, 11, 23, 9, 31, tzinfo=UTC)
HUB = HubIdentity(ods_code="X26HUB", name="L&D hub", endpoint="http://127.0.0.1/fhir", ids=ID_KEY)
RECIPIENTS = {
    "wy-ld": Recipient("wy-ld", "RXX01", "WY L&D"),
    "yot": Recipient("yot", "RXX02", "Youth justice health"),
    "dat": Recipient("dat", "RXX03", "Drug and alcohol team"),
}
ROUTES = RouteTable(
    default=("wy-ld",),
    rules=(
        Rule("youth", Match(pathway=Pathway.YOUTH), ("yot",)),
        Rule(
            "substance",
            Match(
                vulnerability=frozenset(
                    {VulnerabilityType.SUBSTANCE_MISUSE, VulnerabilityType.ALCOHOL_MISUSE}
                )
            ),
            ("wy-ld", "dat"),
        ),
    ),
)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class MemoryHub:
    clock: Clock = field(default_factory=Clock)
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    publisher: MemoryPublisher = field(default_factory=MemoryPublisher)
    senders: dict[str, FakeSender] = field(
        default_factory=lambda: {e: FakeSender() for e in RECIPIENTS}
    )
    routes: RouteTable = ROUTES
    metrics: MemoryMetrics | None = None
    taken: int = 0  # how many hub.work publishes deliver_all has handed on

    def __post_init__(self) -> None:
        # What the stages publish goes through the hub's sealing publisher, as in production,
        # so the delivery jobs read back keep their x-hub-* headers past the Dispatcher.
        self.sealing = SealingPublisher(self.publisher, PROVENANCE)
        self.intake = IntakeStage(
            ids=ID_KEY,
            ledger=self.ledger,
            publisher=self.sealing,
            routes=self.routes,
            recipients=RECIPIENTS,
            hub=HUB,
            clock=self.clock,
            max_body_bytes=65536,
            renderers={e: render_fhir_bundle for e in RECIPIENTS},
            followup_renderers={e: render_fhir_followup for e in RECIPIENTS},
            metrics=self.metrics,
        )
        self.delivery = {
            e: DeliveryStage(
                endpoint=e,
                recipient=RECIPIENTS[e],
                sender=self.senders[e],
                ledger=self.ledger,
                publisher=self.sealing,
                clock=self.clock,
                ids=ID_KEY,
                quick_attempts=1,
                metrics=self.metrics,
            )
            for e in RECIPIENTS
        }
        self.outcome = OutcomeStage(
            ledger=self.ledger,
            publisher=self.publisher,
            recipients=RECIPIENTS,
            clock=self.clock,
            ids=ID_KEY,
        )
        self.overdue = OverdueWatch(
            ledger=self.ledger,
            publisher=self.publisher,
            recipients=RECIPIENTS,
            clock=self.clock,
            ids=ID_KEY,
            metrics=self.metrics,
        )

    def dispatcher(self, stage: Any, *, delays: tuple[int, ...] = (10,)) -> Dispatcher:
        retry = RetryPolicy(delays=delays, deadline=timedelta(hours=1))
        return Dispatcher(
            stage, publisher=self.sealing, retry=retry, provenance=PROVENANCE, clock=self.clock
        )

    def send(self, message: dict[str, Any], *, body: bytes | None = None) -> Disposition:
        """A justice message off its alert queue, as justice.alerts delivers it."""
        return self.dispatcher(self.intake)(justice_envelope(message, body=body))

    def jobs(self, endpoint: str | None = None) -> list[Published]:
        return [
            p
            for p in self.publisher.messages(WORK_EXCHANGE)
            if p.routing_key.startswith("hub.deliver.")
            and (endpoint is None or p.routing_key == f"hub.deliver.{endpoint}")
        ]

    def deliver(self, job: Published, *, attempts: int | None = None) -> Disposition:
        endpoint = job.routing_key.removeprefix("hub.deliver.")
        return self.dispatcher(self.delivery[endpoint])(job_envelope(job, attempts=attempts))

    def deliver_all(self) -> list[Disposition]:
        """Hand every delivery job not yet handed on to its endpoint's delivery stage."""
        jobs = self.jobs()
        new, self.taken = jobs[self.taken :], len(jobs)
        return [self.deliver(job) for job in new]

    def outcomes(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(b) for b in self.publisher.bodies(OUTCOMES_EXCHANGE)]
        return [o for o in found if alert_id is None or o["alert_id"] == alert_id]

    def events(self, alert_id: str) -> list[str]:
        return [e.event for e in self.ledger.journey(alert_id)]


def justice_envelope(message: dict[str, Any], *, body: bytes | None = None) -> Envelope:
    kind = message.get("source", {}).get("kind", "custody")
    message_id = next(
        message[k]
        for k in ("update_id", "cancellation_id", "consent_update_id", "alert_id")
        if k in message
    )
    return Envelope(
        body=to_body(message) if body is None else body,
        queue=f"hub.alerts.{kind}",
        exchange="justice.alerts",
        routing_key=routing_key_of(message),
        headers={},
        message_id=message_id,
        user_id=None,
        content_type="application/json",
    )


def job_envelope(job: Published, *, attempts: int | None = None) -> Envelope:
    headers = dict(job.headers)
    envelope = Envelope(
        body=job.body,
        queue=job.routing_key,
        exchange=WORK_EXCHANGE,
        routing_key=job.routing_key,
        headers=headers,
        message_id=job.message_id,
        user_id=None,
        content_type=job.content_type,
    )
    if attempts is not None:
        headers = PROVENANCE.seal(
            {**headers, H_ATTEMPTS: attempts}, body=job.body, message_id=job.message_id
        )
        envelope = replace(envelope, headers=headers)
    return envelope
