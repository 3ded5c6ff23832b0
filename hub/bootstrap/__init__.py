"""The composition root: builds the real adapters and wires them to stages (the running and
supervising of what it builds is hub/runtime.py). The only core package, with runtime and cli,
that names adapters.

`Hub(settings).start()` declares the topology, starts one consumer thread per queue (and
`max_in_flight` per endpoint), and serves the HTTP API; `stop()` drains cleanly. Its parts:
senders.py (each endpoint kind's transport), delivery.py (an endpoint's delivery stages),
dead_letters.py (the consumers parking dead letters), queue_watch.py (where queue depths and
ages come from), inbound.py (outcome credentials, the ops console), operations.py (the adapters
the operator commands use without a hub). `Hub` stays here, so `hub.bootstrap.Dispatcher` is the
name its consumers are built with.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from hub.adapters.http_client import Urllib3FhirClient
from hub.adapters.inbound.api import ApiServer, build_app
from hub.adapters.inbound.console import ConsoleApp
from hub.adapters.metrics import PrometheusMetrics
from hub.adapters.mllp import MllpClient, MllpSender
from hub.adapters.rabbitmq.connection import Broker, connected
from hub.adapters.rabbitmq.consumer import QueueWorker
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.rabbitmq.topology import Topology
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.switches import SqlEndpointSwitches
from hub.bootstrap.dead_letters import start_parking
from hub.bootstrap.delivery import delivery_stages, http_clients
from hub.bootstrap.inbound import build_console_app, inbound_credentials
from hub.bootstrap.operations import operations_adapters, start_report_refresh
from hub.bootstrap.queue_watch import age_observed, build_queue_watch
from hub.endpoints.kinds import FOLLOWUP_RENDERERS, RENDERERS
from hub.errors import ConfigError, TransientError
from hub.log import get_logger
from hub.operations.database_watch import DatabaseWatch
from hub.operations.queue_ages import ObservedAges
from hub.pipeline import Clock, Dispatcher, RetryPolicy, Stage, utc_now
from hub.ports import FhirClient, Metrics
from hub.ports_ledger import Ledger
from hub.runtime import Runtime, Supervisor, Watcher
from hub.security.ids import IdKey
from hub.security.provenance import Provenance, SealingPublisher
from hub.settings.types import Settings
from hub.stages.endpoint_gate import EndpointGate, PauseWatcher, gate_for
from hub.stages.intake import IntakeStage
from hub.stages.outcomes import OutcomeStage
from hub.stages.overdue import OverdueWatch
from hub.wire import ALERT_QUEUES, OUTCOMES_INBOUND_QUEUE, delivery_queue

__all__ = ["Dispatcher", "Hub", "operations_adapters"]

log = get_logger("hub.bootstrap")


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
    # Circuit breaker and pause switch per delivering endpoint; `gates[name].circuit.state`
    # is the circuit's state for metrics.
    gates: dict[str, EndpointGate] = field(default_factory=dict)
    watch_pauses: bool = True  # poll `hub endpoint pause|resume` switches in the database
    pause_poll_seconds: float = 2.0
    metrics: Metrics | None = None  # Prometheus (GET /metrics) unless a test passes a fake
    queue_watch_seconds: float = 15.0  # how often queue depths/ages are sampled
    overdue_check_seconds: float = 30.0  # how often the ledger is asked for overdue referrals
    # Told of every message a consumer takes: the queue-age bound for queues the ledger
    # cannot age (hub.operations.queue_ages).
    _observed_ages: ObservedAges = field(default_factory=lambda: ObservedAges(age_observed))
    supervise_seconds: float = 2.0  # how often the supervisor looks for dead threads
    _ids: IdKey | None = None
    # What runs once started, and supervises it (hub/runtime.py).
    _runtime: Runtime = field(init=False)
    # The database adapters the hub made itself (not a ledger it was given): their connection
    # pools are disposed on stop, so a process that starts and stops hubs does not keep them.
    _owned: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runtime = Runtime(self.broker)

    def start(self) -> None:
        s = self.settings
        self._ids = s.id_key()  # ConfigError before anything connects when HUB_ID_KEY is unset
        if self.ledger is None:
            # No pre-ping: a round trip per checkout, and not needed: a connection a restart
            # ended fails its first call (LedgerUnavailable, requeued) and the pool is renewed
            # (hub.adapters.sql.engine).
            self.ledger = self._own(SqlLedger(s.db_url, pre_ping=False))
        own_http = self.fhir_client is None  # else every consumer shares the one given
        if self.fhir_client is None:
            self.fhir_client = Urllib3FhirClient()
        if self.mllp_client is None:
            self.mllp_client = MllpClient()
        if self.metrics is None:
            self.metrics = PrometheusMetrics()
        topology = Topology(
            endpoints=list(s.endpoints),
            retry_delays=list(self.retry.delays),
            group_size=s.quorum_group_size,
        )
        try:
            with connected(self.broker, max_retries=3) as connection:
                topology.declare(connection)
        except TransientError as exc:
            log.error("broker_unreachable", reason=exc.message)  # e.g. a refused TLS handshake
            raise
        runtime = self._runtime
        runtime.topology_declared = True
        runtime.ping = self._ledger.ping
        # Consumers hold while the ledger's database is away (restart, failover to a standby).
        runtime.database_watch = DatabaseWatch(self._ledger.ping)
        runtime.database_watch.start()
        recipients = {name: ep.recipient for name, ep in s.endpoints.items()}
        renderers = {name: RENDERERS[ep.kind] for name, ep in s.endpoints.items()}
        followup_renderers = {name: FOLLOWUP_RENDERERS[ep.kind] for name, ep in s.endpoints.items()}

        def intake() -> Stage:
            return IntakeStage(
                ledger=self._ledger,
                publisher=self._publisher(),
                routes=s.routes,
                recipients=recipients,
                hub=dataclasses.replace(s.hub, ids=self._id_key),  # renderers make ids with it
                clock=self.clock,
                max_body_bytes=s.max_body_bytes,
                source_users=s.source_orgs,
                renderers=renderers,
                followup_renderers=followup_renderers,
                metrics=self.metrics,
                ids=self._id_key,
            )

        for kind, queue in ALERT_QUEUES.items():
            # Competing consumers: intake waits on the ledger and on confirms, so more than one
            # per queue keeps the broker busy; the ledger makes their races harmless.
            for n in range(s.intake_consumers):
                self._spawn(
                    queue,
                    intake(),
                    name=f"intake-{kind}-{n}",
                    # A batch can only be as large as what the broker lets it hold.
                    prefetch=max(s.prefetch, s.batch_size),
                    batch=(s.batch_size, s.batch_wait_ms / 1000),
                )
        self._spawn(
            OUTCOMES_INBOUND_QUEUE,
            OutcomeStage(
                ledger=self._ledger,
                publisher=self._publisher(),
                recipients=recipients,
                clock=self.clock,
                ids=self._id_key,
            ),
            name="outcomes",
            prefetch=s.prefetch,
        )
        for name, endpoint in s.endpoints.items():
            if endpoint.paused:
                log.warning("endpoint_paused", endpoint=name)
                continue
            # One gate per endpoint, shared by its consumers: the circuit breaker and the
            # operators' pause switch (hub.stages.endpoint_gate).
            gate = self.gates[name] = gate_for(name, endpoint.circuit)
            self._metrics.circuit_state(name, str(gate.circuit.state))
            gate.circuit.subscribe(partial(_report_circuit, self._metrics, name))
            stages = delivery_stages(  # one per in-flight slot (hub/bootstrap/delivery.py)
                name,
                endpoint,
                gate=gate,
                http=http_clients(None if own_http else self.fhir_client, runtime.close_senders),
                mllp=self.mllp_client,
                ledger=self._ledger,
                publisher=self._publisher,
                clock=self.clock,
                ids=self._id_key,
                metrics=self.metrics,
                close_senders=runtime.close_senders,
            )
            for n, stage in enumerate(stages):
                # Each takes its jobs in batches of delivery_batch_size (1: one at a time,
                # prefetch 1), so the ledger commits once per batch.
                self._spawn(
                    delivery_queue(name),
                    stage,
                    name=f"deliver-{name}-{n}",
                    prefetch=s.delivery_batch_size,
                    gate=gate.may_consume,
                    batch=(s.delivery_batch_size, s.batch_wait_ms / 1000),
                )
        # Overdue referrals are found in the ledger, so a restart (or another hub) carries on.
        runtime.overdue_watch = OverdueWatch(
            ledger=self._ledger,
            publisher=self._publisher(),
            recipients=recipients,
            clock=self.clock,
            ids=self._id_key,
            metrics=self.metrics,
            interval=self.overdue_check_seconds,
        )
        runtime.overdue_watch.start()
        start_report_refresh(runtime, s, self._ledger, self.clock, self.metrics)
        if self.watch_pauses and self.gates:
            runtime.pause_watcher = PauseWatcher(
                self._own(SqlEndpointSwitches(s.db_url)),
                self.gates,
                interval=self.pause_poll_seconds,
            )
            runtime.pause_watcher.start()
        if self.park_dead_letters:
            start_parking(  # hub/bootstrap/dead_letters.py
                runtime,
                broker=self.broker,
                store=self._own(SqlFailedStore(s.db_url)),
                provenance=self._provenance,
                endpoints=list(s.endpoints),
                clock=self.clock,
                prefetch=s.prefetch,
                gate=runtime.database_watch.may_consume,
                on_take=self._observed_ages.taken,
            )
        runtime.queue_watch = build_queue_watch(
            s,
            broker=self.broker,
            ledger=self._ledger,
            metrics=self._metrics,
            queues=topology.all_queue_names(),
            observed=self._observed_ages,
            failed_store=self._own(SqlFailedStore(s.db_url)),
            interval=self.queue_watch_seconds,
        )
        runtime.queue_watch.start()
        if self.serve_api:
            app = build_app(
                ledger=self._ledger,
                publisher=self._publisher(),
                recipients=recipients,
                inbound=inbound_credentials(s),
                max_body_bytes=s.max_body_bytes,
                readiness=self.readiness,
                metrics=self._metrics.exposition,
                console=self._console() if s.operators else None,
            )
            api = ApiServer(app, host=s.api_host, port=s.api_port, tls=s.api_tls)
            try:
                api.start()  # ConfigError for a TLS key it cannot open; TransientError
            except (ConfigError, TransientError):
                self.stop()  # the consumers already running
                raise
            runtime.api = api
        runtime.wait_until_consuming(timeout=15)
        runtime.supervise(metrics=self.metrics, interval=self.supervise_seconds)
        log.info(
            "hub_started",
            consumers=len(runtime.workers),
            endpoints=len(s.endpoints),
            api_port=self.api_port,
        )

    @property
    def _ledger(self) -> Ledger:
        assert self.ledger is not None
        return self.ledger

    @property
    def api_port(self) -> int | None:
        return self._runtime.api.port if self._runtime.api else None

    # What tests and operators look at on a started hub: its runtime's parts.
    @property
    def _workers(self) -> list[tuple[QueueWorker, threading.Thread]]:
        return self._runtime.workers

    @property
    def _supervisor(self) -> Supervisor | None:
        return self._runtime.supervisor

    @property
    def _overdue_watch(self) -> Watcher | None:
        return self._runtime.overdue_watch

    @property
    def broker(self) -> Broker:
        """RabbitMQ's URL and TLS options, for every connection the hub makes."""
        return Broker(self.settings.amqp_url, self.settings.amqp_tls)

    def _console(self) -> ConsoleApp:
        return build_console_app(
            self.settings,
            broker=self.broker,
            gates=self.gates,
            clock=self.clock,
            publisher=self._publisher,
            own=self._own,
        )

    @property
    def _id_key(self) -> IdKey:
        assert self._ids is not None
        return self._ids

    @property
    def _provenance(self) -> Provenance:
        return Provenance(self._id_key.seal_key)

    def _publisher(self) -> SealingPublisher:
        """Every publish the hub makes seals its `x-hub-*` headers (hub.security.provenance)."""
        publisher = KombuPublisher(self.broker)
        self._runtime.close_publishers.append(publisher.close)
        return SealingPublisher(publisher, self._provenance)

    def _spawn(
        self,
        queue: str,
        stage: Any,
        *,
        name: str,
        prefetch: int,
        gate: Callable[[object], bool] | None = None,
        batch: tuple[int, float] | None = None,
    ) -> None:
        dispatcher = Dispatcher(
            stage,
            publisher=stage.publisher,
            retry=self.retry,
            provenance=self._provenance,
            clock=self.clock,
            metrics=self.metrics,
        )
        self._runtime.start_consumer(
            name,
            partial(
                QueueWorker,
                self.broker,
                queue,
                dispatcher,
                prefetch=prefetch,
                gate=self._with_database(gate),
                on_take=self._observed_ages.taken,
                batch=None if batch is None else (dispatcher.dispatch_batch, *batch),
            ),
        )

    def _with_database(
        self, gate: Callable[[object], bool] | None
    ) -> Callable[[object], bool] | None:
        """`gate`, and hold while the ledger's database is away."""
        watch = self._runtime.database_watch
        if watch is None:
            return gate
        if gate is None:
            return watch.may_consume
        return lambda worker: watch.may_consume(worker) and gate(worker)

    @property
    def _metrics(self) -> Metrics:
        assert self.metrics is not None
        return self.metrics

    def down(self) -> list[str]:
        """Threads not doing their job right now, by name (hub/runtime.py)."""
        return self._runtime.down()

    def readiness(self) -> dict[str, Any]:
        """The checks /readyz reports and `down` (hub/runtime.py)."""
        return self._runtime.readiness()

    def stop(self) -> None:
        """Stop everything started, in order (hub/runtime.py), then close the database
        adapters the hub made."""
        self._runtime.stop()
        while self._owned:
            self._owned.pop().close()

    def _own(self, adapter: _Closable) -> Any:
        self._owned.append(adapter)
        return adapter


class _Closable(Protocol):
    def close(self) -> None: ...


def _report_circuit(metrics: Metrics, endpoint: str, old: object, new: object) -> None:
    metrics.circuit_state(endpoint, str(new))
