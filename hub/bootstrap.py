"""The composition root: the only place that builds real adapters and wires them to stages.

`Hub(settings).start()` declares the topology, starts one consumer thread per queue (and
`max_in_flight` per endpoint), and serves the HTTP API; `stop()` drains cleanly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from hub.adapters.api import ApiServer, build_app
from hub.adapters.fhir_endpoint import HttpxFhirClient
from hub.adapters.ledger import SqlLedger
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
from hub.delivery import DeliveryStage, FhirTarget
from hub.errors import TransientError
from hub.intake import IntakeStage
from hub.log import get_logger
from hub.outcomes import OutcomeStage
from hub.pipeline import Clock, Dispatcher, RetryPolicy, Stage, utc_now
from hub.ports import FhirClient, Ledger
from hub.settings import EndpointConfig, Settings

log = get_logger("hub.bootstrap")


def fhir_target(endpoint: EndpointConfig) -> FhirTarget:
    auth = f"Bearer {endpoint.auth.token}" if endpoint.auth else None
    return FhirTarget(
        recipient=endpoint.recipient,
        url=endpoint.url,
        timeout_seconds=endpoint.timeout_seconds,
        authorization=auth,
    )


@dataclass
class Hub:
    settings: Settings
    clock: Clock = utc_now
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fhir_client: FhirClient | None = None
    ledger: Ledger | None = None
    serve_api: bool = True
    _workers: list[tuple[QueueWorker, threading.Thread]] = field(default_factory=list)
    _publishers: list[KombuPublisher] = field(default_factory=list)
    _api: ApiServer | None = None

    def start(self) -> None:
        s = self.settings
        if self.ledger is None:
            self.ledger = SqlLedger(s.db_url)
        if self.fhir_client is None:
            self.fhir_client = HttpxFhirClient()
        topology = Topology(endpoints=list(s.endpoints), retry_delays=list(self.retry.delays))
        with connect(s.amqp_url) as connection:
            connection.ensure_connection(max_retries=3, interval_start=0.5)
            topology.declare(connection)
        recipients = {name: ep.recipient for name, ep in s.endpoints.items()}

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
            )

        for kind, queue in ALERT_QUEUES.items():
            self._spawn(queue, intake(), name=f"intake-{kind}", prefetch=s.prefetch)
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
                    target=fhir_target(endpoint),
                    client=self.fhir_client,
                    ledger=self._ledger,
                    publisher=self._publisher(),
                    clock=self.clock,
                )
                self._spawn(delivery_queue(name), stage, name=f"deliver-{name}-{n}", prefetch=1)
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
