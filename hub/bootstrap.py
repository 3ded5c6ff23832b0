"""The composition root: the only place that builds real adapters and wires them to stages.

`Hub(settings).start()` declares the topology, starts one consumer thread per queue (and
`max_in_flight` per endpoint), and serves the HTTP API; `stop()` drains cleanly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from hub.adapters.api import ApiServer, build_app
from hub.adapters.failed_store import SqlFailedStore
from hub.adapters.fhir_endpoint import HttpxFhirClient
from hub.adapters.ledger import SqlLedger
from hub.adapters.mllp import MllpClient, MllpSender
from hub.adapters.rabbitmq import (
    ALERT_QUEUES,
    OUTCOMES_INBOUND_QUEUE,
    KombuPublisher,
    QueueWorker,
    Topology,
    connect,
    delivery_queue,
    start_worker,
)
from hub.dead_letters import DLQ_QUEUES, DeadLetterIngester
from hub.delivery import DeliveryStage
from hub.errors import TransientError
from hub.intake import IntakeStage
from hub.log import get_logger
from hub.outcomes import OutcomeStage
from hub.payloads import render_fhir_bundle, render_hl7v2_ref_i12, render_webhook_json
from hub.pipeline import Clock, Dispatcher, RetryPolicy, Stage, utc_now
from hub.ports import FhirClient, Ledger, Render, Sender
from hub.senders import FhirRestSender, FhirTarget, Hl7v2MllpSender, WebhookSender, WebhookTarget
from hub.settings import EndpointConfig, EndpointKind, Settings

log = get_logger("hub.bootstrap")

# What intake renders for each endpoint kind; the matching Sender is built by `sender_for`.
RENDERERS: dict[EndpointKind, Render] = {
    EndpointKind.FHIR_REST: render_fhir_bundle,
    EndpointKind.HL7V2_MLLP: render_hl7v2_ref_i12,
    EndpointKind.WEBHOOK: render_webhook_json,
}


def sender_for(endpoint: EndpointConfig, *, http: FhirClient, mllp: MllpSender) -> Sender:
    """The Sender for one configured endpoint (settings guarantee its kind's fields are set)."""
    match endpoint.kind:
        case EndpointKind.FHIR_REST:
            assert endpoint.url is not None
            auth = f"Bearer {endpoint.auth.token}" if endpoint.auth else None
            target = FhirTarget(
                service_id=endpoint.service_id,
                url=endpoint.url,
                timeout_seconds=endpoint.timeout_seconds,
                authorization=auth,
            )
            return FhirRestSender(target=target, client=http)
        case EndpointKind.HL7V2_MLLP:
            assert endpoint.host is not None and endpoint.port is not None
            return Hl7v2MllpSender(
                host=endpoint.host,
                port=endpoint.port,
                timeout_seconds=endpoint.timeout_seconds,
                client=mllp,
            )
        case EndpointKind.WEBHOOK:
            assert endpoint.url is not None and endpoint.signing is not None
            webhook = WebhookTarget(
                url=endpoint.url,
                timeout_seconds=endpoint.timeout_seconds,
                key=endpoint.signing.key,
            )
            return WebhookSender(target=webhook, client=http)


@dataclass
class Hub:
    settings: Settings
    clock: Clock = utc_now
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fhir_client: FhirClient | None = None  # also carries the webhook kind's plain POSTs
    mllp_client: MllpSender | None = None
    ledger: Ledger | None = None
    serve_api: bool = True
    park_dead_letters: bool = True  # consume hub.dlq.* into the failed-message store
    _workers: list[tuple[QueueWorker, threading.Thread]] = field(default_factory=list)
    _publishers: list[KombuPublisher] = field(default_factory=list)
    _api: ApiServer | None = None

    def start(self) -> None:
        s = self.settings
        if self.ledger is None:
            self.ledger = SqlLedger(s.db_url)
        if self.fhir_client is None:
            self.fhir_client = HttpxFhirClient()
        if self.mllp_client is None:
            self.mllp_client = MllpClient()
        topology = Topology(endpoints=list(s.endpoints), retry_delays=list(self.retry.delays))
        with connect(s.amqp_url) as connection:
            connection.ensure_connection(max_retries=3, interval_start=0.5)
            topology.declare(connection)
        recipients = {name: ep.recipient for name, ep in s.endpoints.items()}
        renderers = {name: RENDERERS[ep.kind] for name, ep in s.endpoints.items()}

        def intake() -> Stage:
            return IntakeStage(
                ledger=self._ledger,
                publisher=self._publisher(),
                routes=s.routes,
                recipients=recipients,
                hub=s.hub,
                clock=self.clock,
                max_body_bytes=s.max_body_bytes,
                source_users=s.source_orgs,
                renderers=renderers,
            )

        for kind, queue in ALERT_QUEUES.items():
            # Competing consumers: intake waits on the ledger and on confirms, so more than one
            # per queue keeps the broker busy; the ledger makes their races harmless.
            for n in range(s.intake_consumers):
                self._spawn(queue, intake(), name=f"intake-{kind}-{n}", prefetch=s.prefetch)
        self._spawn(
            OUTCOMES_INBOUND_QUEUE,
            OutcomeStage(
                ledger=self._ledger,
                publisher=self._publisher(),
                recipients=recipients,
                clock=self.clock,
            ),
            name="outcomes",
            prefetch=s.prefetch,
        )
        for name, endpoint in s.endpoints.items():
            if endpoint.paused:
                log.warning("endpoint_paused", endpoint=name)
                continue
            for n in range(endpoint.max_in_flight):
                # One consumer per in-flight slot, prefetch 1 each: an endpoint never has more
                # than max_in_flight referrals outstanding, and a slow one blocks only itself.
                stage = DeliveryStage(
                    endpoint=name,
                    recipient=endpoint.recipient,
                    sender=sender_for(endpoint, http=self.fhir_client, mllp=self.mllp_client),
                    ledger=self._ledger,
                    publisher=self._publisher(),
                    clock=self.clock,
                )
                self._spawn(delivery_queue(name), stage, name=f"deliver-{name}-{n}", prefetch=1)
        if self.park_dead_letters:
            # Each dead letter is committed to the failed-message store before it is acked
            # (`hub failed …`); no Dispatcher: storing it either happens or is retried.
            failed_store = SqlFailedStore(s.db_url)
            for stage_name, dlq in DLQ_QUEUES.items():
                ingester = DeadLetterIngester(failed_store, stage=stage_name, clock=self.clock)
                worker = QueueWorker(s.amqp_url, dlq, ingester, prefetch=s.prefetch)
                self._workers.append((worker, start_worker(worker, f"dlq-{stage_name}")))
        if self.serve_api:
            app = build_app(
                ledger=self._ledger,
                publisher=self._publisher(),
                recipients=recipients,
                max_body_bytes=s.max_body_bytes,
                readiness=self.readiness,
            )
            self._api = ApiServer(app, host=s.api_host, port=s.api_port)
            self._api.start()
        for worker, _ in self._workers:
            if not worker.ready.wait(timeout=15):
                self.stop()
                raise TransientError(f"consumer for {worker.queue} did not start within 15 s")
        log.info(
            "hub_started",
            consumers=len(self._workers),
            endpoints=len(s.endpoints),
            api_port=self.api_port,
        )

    @property
    def _ledger(self) -> Ledger:
        assert self.ledger is not None
        return self.ledger

    @property
    def api_port(self) -> int | None:
        return self._api.port if self._api else None

    def _publisher(self) -> KombuPublisher:
        publisher = KombuPublisher(self.settings.amqp_url)
        self._publishers.append(publisher)
        return publisher

    def _spawn(self, queue: str, stage: Any, *, name: str, prefetch: int) -> None:
        dispatcher = Dispatcher(
            stage, publisher=stage.publisher, retry=self.retry, clock=self.clock
        )
        worker = QueueWorker(self.settings.amqp_url, queue, dispatcher, prefetch=prefetch)
        self._workers.append((worker, start_worker(worker, name)))

    def readiness(self) -> dict[str, bool]:
        checks = {"consumers": all(w.ready.is_set() and t.is_alive() for w, t in self._workers)}
        try:
            self._ledger.ping()
            checks["database"] = True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = False
        try:
            with connect(self.settings.amqp_url) as conn:
                conn.ensure_connection(max_retries=1)
            checks["broker"] = True
        except Exception:  # noqa: BLE001 - readiness reports, never raises
            checks["broker"] = False
        return checks

    def stop(self) -> None:
        """Stop consuming; each worker finishes the message in hand, unacked prefetched
        messages return to their queues when the connections close."""
        if self._api:
            self._api.stop()
        for worker, _ in self._workers:
            worker.stop()
        for _, thread in self._workers:
            thread.join(timeout=15)
        for publisher in self._publishers:
            publisher.close()
        log.info("hub_stopped")


def operations_adapters(settings: Settings) -> tuple[SqlLedger, SqlFailedStore, KombuPublisher]:
    """What `hub failed …` and `hub trace` work with; the caller closes them. The publisher
    connects only when a replay first publishes."""
    return (
        SqlLedger(settings.db_url),
        SqlFailedStore(settings.db_url),
        KombuPublisher(settings.amqp_url),
    )
