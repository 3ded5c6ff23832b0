"""The composition root: builds the real adapters and wires them to stages (the running and
supervising of what it builds is hub/runtime.py).

`Hub(settings).start()` declares the topology, starts one consumer thread per queue (and
`max_in_flight` per endpoint), and serves the HTTP API; `stop()` drains cleanly.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from hub.adapters.http_client import HttpxFhirClient
from hub.adapters.inbound.api import ApiServer, build_app
from hub.adapters.inbound.console import ConsoleApp, build_console
from hub.adapters.inbound.console_config import ConsoleDeps
from hub.adapters.mesh import MeshSender
from hub.adapters.metrics import PrometheusMetrics
from hub.adapters.mllp import Hl7v2MllpSender, MllpClient, MllpSender
from hub.adapters.rabbitmq.connection import Broker, connected, queue_depth, queue_depths
from hub.adapters.rabbitmq.consumer import QueueWorker
from hub.adapters.rabbitmq.management import head_message_ages
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.rabbitmq.topology import Topology
from hub.adapters.sql.console_sessions import SqlLiveSessions
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.reports import SqlReportReader
from hub.adapters.sql.switches import SqlEndpointSwitches
from hub.endpoints.fhir_rest import (
    FhirRestSender,
    FhirTarget,
)
from hub.endpoints.kinds import FOLLOWUP_RENDERERS, RENDERERS
from hub.endpoints.mesh import MeshReferralSender
from hub.endpoints.oauth2 import OAuth2TokenSource
from hub.endpoints.webhook import (
    WebhookSender,
    WebhookTarget,
)
from hub.errors import ConfigError, TransientError
from hub.log import get_logger
from hub.operations.database_watch import DatabaseWatch
from hub.operations.queue_ages import ObservedAges
from hub.operations.queue_watch import QueueWatch
from hub.pipeline import Clock, Dispatcher, RetryPolicy, Stage, utc_now
from hub.ports import FhirClient, Ledger, Metrics, Sender
from hub.records import FailedState
from hub.runtime import Runtime, Supervisor, Watcher
from hub.security import console_session
from hub.security.ids import IdKey
from hub.security.inbound_auth import InboundCredentials
from hub.security.provenance import Provenance, SealingPublisher
from hub.settings.load import report_db_url
from hub.settings.types import EndpointConfig, EndpointKind, Settings
from hub.stages.dead_letters import DLQ_QUEUES, DeadLetterIngester
from hub.stages.delivery import DeliveryStage
from hub.stages.endpoint_gate import CircuitSender, EndpointGate, PauseWatcher, gate_for
from hub.stages.intake import IntakeStage
from hub.stages.outcomes import OutcomeStage
from hub.stages.overdue import OverdueWatch
from hub.wire import ALERT_QUEUES, OUTCOMES_INBOUND_QUEUE, delivery_queue

log = get_logger("hub.bootstrap")


def sender_for(
    endpoint: EndpointConfig,
    *,
    http: FhirClient,
    mllp: MllpSender,
    tokens: OAuth2TokenSource | None = None,
) -> Sender:
    """The Sender for one configured endpoint (settings guarantee its kind's fields are set).
    `tokens`: the endpoint's shared OAuth2 token cache (`token_source_for`)."""
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
            if endpoint.tls is not None:
                # Mutual TLS and/or its own CA bundle: a client of the endpoint's own.
                http = HttpxFhirClient(
                    verify=endpoint.tls.ca or True, cert=endpoint.tls.client_cert
                )
            return FhirRestSender(target=target, client=http, tokens=tokens)
        case EndpointKind.MESH:
            assert endpoint.mesh is not None
            box, tls = endpoint.mesh, endpoint.tls
            outbox = MeshSender(
                box.url,
                box.mailbox,
                box.password,
                box.shared_key,
                recipient_mailbox=box.recipient_mailbox,
                workflow_id=box.workflow_id,
                cert=tls.client_cert if tls else None,
                verify=tls.ca if tls and tls.ca else None,
                timeout=endpoint.timeout_seconds,
                endpoint=endpoint.name,
            )
            return MeshReferralSender(outbox=outbox)
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


def token_source_for(endpoint: EndpointConfig) -> OAuth2TokenSource | None:
    """One OAuth2 token cache per endpoint, shared by its consumers; None without OAuth2."""
    if endpoint.oauth2 is None:
        return None
    tls = endpoint.tls
    client = HttpxFhirClient(
        verify=tls.ca if tls and tls.ca else True, cert=tls.client_cert if tls else None
    )
    return OAuth2TokenSource(
        endpoint.oauth2, client, timeout=endpoint.timeout_seconds, endpoint=endpoint.name
    )


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
    _observed_ages: ObservedAges = field(default_factory=lambda: ObservedAges(_age_observed))
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
        if self.fhir_client is None:
            self.fhir_client = HttpxFhirClient()
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
            tokens = token_source_for(endpoint)
            self._metrics.circuit_state(name, str(gate.circuit.state))
            gate.circuit.subscribe(partial(_report_circuit, self._metrics, name))
            for n in range(endpoint.max_in_flight):
                # One consumer per in-flight slot, prefetch 1 each: an endpoint never has more
                # than max_in_flight referrals outstanding, and a slow one blocks only itself.
                sender = sender_for(
                    endpoint, http=self.fhir_client, mllp=self.mllp_client, tokens=tokens
                )
                if (close := getattr(sender, "close", None)) is not None:
                    runtime.close_senders.append(close)
                stage = DeliveryStage(
                    endpoint=name,
                    recipient=endpoint.recipient,
                    sender=CircuitSender(sender, gate.circuit, endpoint=name),
                    ledger=self._ledger,
                    publisher=self._publisher(),
                    clock=self.clock,
                    ids=self._id_key,
                    metrics=self.metrics,
                )
                self._spawn(
                    delivery_queue(name),
                    stage,
                    name=f"deliver-{name}-{n}",
                    prefetch=1,
                    gate=gate.may_consume,
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
        if self.watch_pauses and self.gates:
            runtime.pause_watcher = PauseWatcher(
                self._own(SqlEndpointSwitches(s.db_url)),
                self.gates,
                interval=self.pause_poll_seconds,
            )
            runtime.pause_watcher.start()
        if self.park_dead_letters:
            # Each dead letter is committed to the failed-message store before it is acked
            # (`hub failed …`); no Dispatcher: storing it either happens or is retried.
            failed_store = self._own(SqlFailedStore(s.db_url))
            for stage_name, dlq in DLQ_QUEUES.items():
                ingester = DeadLetterIngester(
                    failed_store,
                    stage=stage_name,
                    provenance=self._provenance,
                    endpoints=list(s.endpoints),
                    clock=self.clock,
                )
                runtime.start_consumer(
                    f"dlq-{stage_name}",
                    partial(
                        QueueWorker,
                        self.broker,
                        dlq,
                        ingester,
                        prefetch=s.prefetch,
                        gate=runtime.database_watch.may_consume,
                        on_take=self._observed_ages.taken,
                    ),
                )
        self._watch_queues(topology)
        if self.serve_api:
            app = build_app(
                ledger=self._ledger,
                publisher=self._publisher(),
                recipients=recipients,
                inbound=self._inbound_credentials(),
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

    def _inbound_credentials(self) -> dict[str, InboundCredentials]:
        """Who may POST outcomes. Fail closed: an endpoint without `inbound` credentials cannot,
        and start-up says so, as it does when tokens would cross the network in clear text."""
        s = self.settings
        inbound = {name: ep.inbound for name, ep in s.endpoints.items() if ep.inbound}
        if closed := sorted(set(s.endpoints) - set(inbound)):
            log.warning("outcomes_refused_from_endpoints", endpoints=closed, reason="no inbound")
        loopback = s.api_host in ("127.0.0.1", "::1", "localhost")
        if s.api_tls is None and not loopback and any(c.token_sha256 for c in inbound.values()):
            log.warning("api_tokens_without_tls", host=s.api_host)  # fine behind a TLS proxy
        return inbound

    def _console(self) -> ConsoleApp:
        """The ops console at /ops/ (only when operators are configured)."""
        s = self.settings
        if not s.console_secret:
            raise ConfigError(["operators are configured: set HUB_CONSOLE_SECRET"])
        broker = self.broker
        return build_console(
            ConsoleDeps(
                operators=s.operators,
                secret=s.console_secret,
                store=self._own(SqlFailedStore(s.db_url)),
                ledger=self._own(SqlLedger(s.db_url)),  # the reader `trace` needs
                publisher=self._publisher(),
                endpoints=s.endpoints,
                clock=self.clock,
                endpoint_depth=lambda name: queue_depth(broker, delivery_queue(name)),
                circuit_state=lambda name: (
                    str(self.gates[name].circuit.state) if name in self.gates else None
                ),
                paused_by_operator=lambda name: name in self.gates and self.gates[name].paused,
                # In the database: every hub honours the same sessions, and a sign-out on one
                # ends the session on all.
                sessions=self._own(
                    SqlLiveSessions(s.db_url, max_age=console_session.MAX_AGE_SECONDS)
                ),
                pathway=self._own(SqlReportReader(report_db_url() or s.db_url)).report,
            )
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

    def _watch_queues(self, topology: Topology) -> None:
        """Sample queue depths (passive declares), oldest-message ages (docs/operations.md,
        "Queue depth and age") and the failed-message store's size."""
        s = self.settings
        management_url = s.management_url
        ages = (
            # Vhost and credentials: the same on every node, so the first URL's.
            partial(head_message_ages, management_url, self.broker.urls[0], tls=s.amqp_tls)
            if management_url
            else None
        )
        store = self._own(SqlFailedStore(s.db_url))
        self._runtime.queue_watch = QueueWatch(
            metrics=self._metrics,
            queues=topology.all_queue_names(),
            depths=partial(queue_depths, self.broker),
            ages=partial(self._queue_ages, ages),
            observed=self._observed_ages,
            failed_count=partial(store.count, FailedState.FAILED),
            interval=self.queue_watch_seconds,
            wall_clock=time.time,
        )
        self._runtime.queue_watch.start()

    def _queue_ages(
        self,
        management: Callable[..., Mapping[str, float]] | None,
        queues: Sequence[str],
        now: float,
    ) -> dict[str, float]:
        """Delivery queues from the ledger; others from the management API where the broker
        reports a head-message timestamp (RabbitMQ reports none for quorum queues, so for
        none of the hub's own today); the rest are left to the observed bound."""
        ages = self._ledger_ages(queues, now)
        if management is not None:
            try:
                for queue, age in management(queues, now=now).items():
                    ages.setdefault(queue, age)
            except TransientError as exc:
                log.warning("management_api_unavailable", reason=exc.message)
        return ages

    def _ledger_ages(self, queues: Sequence[str], now: float) -> dict[str, float]:
        """Each delivery queue's age is that of its endpoint's oldest referral the ledger still
        has as queued, since its alert reached the hub (retry waits included); 0 when there is
        none."""
        oldest = self._ledger.oldest_undelivered()
        return {
            queue: max(0.0, now - oldest[endpoint].timestamp()) if endpoint in oldest else 0.0
            for endpoint in self.settings.endpoints
            if (queue := delivery_queue(endpoint)) in queues
        }

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


def _age_observed(queue: str) -> bool:
    """Queues whose age is bounded from what the consumers take: not the delivery queues (the
    ledger ages their referrals) nor the retry queues (waiting is what they are for)."""
    return not queue.startswith((delivery_queue(""), "hub.retry."))


def _report_circuit(metrics: Metrics, endpoint: str, old: object, new: object) -> None:
    metrics.circuit_state(endpoint, str(new))


def operations_adapters(
    settings: Settings,
) -> tuple[SqlLedger, SqlFailedStore, SealingPublisher]:
    """What `hub failed …` and `hub trace` work with; the caller closes them. The publisher
    connects only when a replay first publishes, and seals what it replays (so HUB_ID_KEY is
    needed: a ConfigError without it)."""
    provenance = Provenance(settings.id_key().seal_key)
    return (
        SqlLedger(settings.db_url),
        SqlFailedStore(settings.db_url),
        SealingPublisher(KombuPublisher(Broker(settings.amqp_url, settings.amqp_tls)), provenance),
    )
