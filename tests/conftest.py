"""Shared fixtures: real RabbitMQ (a fresh vhost per test), real PostgreSQL, a pretend NHS
trust, and a justice-side publisher/consumer speaking pika as a custody system would.

A service that is down fails the test with the command that starts it; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest

from hub.bootstrap import Hub
from hub.contracts.follow_ups import message_id_field
from hub.pipeline import RetryPolicy
from hub.settings.load import load_settings
from hub.testing.fake_trust import FakeTrust, HubCredentials, Reply, inbound_token_env

AMQP_HOST = os.environ.get("HUB_TEST_AMQP_HOST", "127.0.0.1")
PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START_RABBIT = "start it with: rabbitmq-server -detached"
# The hub's id and header-seal key in tests (HUB_ID_KEY); `hub run` refuses to start without one.
ID_KEY = "test-id-key-" + "k" * 32
START_PG = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

SERVICES = {
    "wy-ld": ("RXX01", "West Yorkshire Liaison and Diversion Service"),
    "leeds-dat": ("RXX03", "Leeds Drug and Alcohol Team"),
    "leeds-yjh": ("RXX04", "Leeds Youth Justice Health Team"),
}
ROUTES = """\
default: [wy-ld]
rules:
  - name: youth
    match: {pathway: youth}
    send_to: [leeds-yjh]
  - name: substance
    match: {vulnerability: [substance_misuse, alcohol_misuse]}
    send_to: [leeds-dat, wy-ld]
"""


_HANDED_OUT: set[int] = set()


def _below_ephemeral_range() -> tuple[int, int]:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(1024, low - 12000), low - 1


def free_port() -> int:
    """A port nothing listens on, for a server a test starts a moment later. Taken below the
    kernel's ephemeral range: a port from that range (what binding port 0 gives), once released,
    can be taken by any outgoing connection (to RabbitMQ, say) before the server binds it, which
    failed a hub's start with "address already in use". Never the same port twice in a run."""
    low, high = _below_ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # the band is full: the kernel's choice, as before
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(
            f"rabbitmqctl {' '.join(args)} failed ({result.stderr.strip()}); "
            f"is RabbitMQ running? {START_RABBIT}"
        )


@pytest.fixture(scope="session")
def rabbitmq_available() -> None:
    try:
        socket.create_connection((AMQP_HOST, 5672), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on {AMQP_HOST}:5672 ({exc}); {START_RABBIT}")


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc}); {START_PG}")
    return PG_URL


@pytest.fixture
def amqp_url(rabbitmq_available: None) -> Iterator[str]:
    """A vhost of the test's own: queues, exchanges and messages never leak between tests."""
    vhost = f"hubtest-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}"
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def write_config(
    directory: Path,
    *,
    trust: FakeTrust,
    api_port: int,
    routes: str = ROUTES,
    extra_endpoint_yaml: str = "",
    sources_yaml: str = "",
    operators_yaml: str = "",
    endpoint_yaml: dict[str, str] | None = None,
    api_tls_yaml: str = "",
) -> Path:
    """`endpoint_yaml` adds lines (indented 4) to the named trust endpoints' configuration; an
    endpoint the trust holds a token for gets `inbound: {token_env: <inbound_token_env>}`;
    `api_tls_yaml` is the API's `tls:` mapping (flow style)."""
    directory.mkdir(parents=True, exist_ok=True)
    endpoints = "\n".join(
        f"  {name}:\n    kind: fhir-rest\n    url: {trust.url(name)}\n"
        f"    ods_code: {ods}\n    organisation_name: {org}\n    timeout_seconds: 3"
        + (
            f"\n    inbound: {{token_env: {inbound_token_env(name)}}}"
            if trust.credentials.get(name, HubCredentials()).token
            else ""
        )
        + "".join(f"\n    {line}" for line in (endpoint_yaml or {}).get(name, "").splitlines())
        for name, (ods, org) in trust.services.items()
    )
    api_tls = f", tls: {api_tls_yaml}" if api_tls_yaml else ""
    (directory / "hub.yaml").write_text(
        "hub: {ods_code: X26HUB, name: L&D Integration Hub, "
        f"endpoint: 'http://127.0.0.1:{api_port}/fhir'}}\n"
        f"api: {{host: 127.0.0.1, port: {api_port}{api_tls}}}\n"
        f"endpoints:\n{endpoints}\n{extra_endpoint_yaml}{sources_yaml}{operators_yaml}"
    )
    (directory / "routes.yaml").write_text(routes)
    return directory


@dataclass
class Justice:
    """A custody/court system: publishes alerts with pika and publisher confirms, and reads
    its own outcome queue."""

    url: str
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    _queue: str = ""

    def __post_init__(self) -> None:
        params = pika.URLParameters(self.url)
        self._pub = pika.BlockingConnection(params)
        self._pub_ch = self._pub.channel()
        self._pub_ch.confirm_delivery()
        self._sub = pika.BlockingConnection(params)
        self._sub_ch = self._sub.channel()
        self._queue = f"justice.test.{uuid.uuid4().hex[:8]}"
        self._sub_ch.queue_declare(self._queue, durable=True, arguments={"x-queue-type": "quorum"})
        self._sub_ch.queue_bind(self._queue, "justice.outcomes", routing_key="#")

    def publish(
        self,
        body: bytes | dict[str, Any],
        *,
        routing_key: str,
        message_id: str | None = None,
        content_type: str = "application/json",
        **props: Any,
    ) -> None:
        if isinstance(body, dict):
            message_id = message_id or body.get(message_id_field(str(body.get("schema", ""))))
            body = json.dumps(body).encode()
        self._pub_ch.basic_publish(
            "justice.alerts",
            routing_key,
            body,
            pika.BasicProperties(
                content_type=content_type, delivery_mode=2, message_id=message_id, **props
            ),
            mandatory=True,
        )

    def drain(self) -> None:
        while True:
            method, props, body = self._sub_ch.basic_get(self._queue, auto_ack=True)
            if method is None:
                return
            doc = json.loads(body)
            doc["_routing_key"] = method.routing_key
            self.outcomes.append(doc)

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            if predicate(self.outcomes):
                return self.outcomes
            time.sleep(0.05)
        raise AssertionError(f"timed out; outcomes so far: {self.outcomes}")

    def for_alert(self, alert_id: str) -> list[dict[str, Any]]:
        self.drain()
        return [o for o in self.outcomes if o["alert_id"] == alert_id]

    def queue_depth(self, queue: str) -> int:
        ch = self._sub.channel()
        try:
            return int(ch.queue_declare(queue, passive=True).method.message_count)
        finally:
            ch.close()

    def get_one(self, queue: str, timeout: float = 10.0) -> tuple[Any, Any, bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, props, body = self._sub_ch.basic_get(queue, auto_ack=True)
            if method is not None:
                return method, props, body
            time.sleep(0.05)
        raise AssertionError(f"nothing arrived on {queue}")

    def close(self) -> None:
        for conn in (self._pub, self._sub):
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - teardown
                pass


def standard_replies(endpoint: str, bundle: dict[str, Any]) -> list[Reply]:
    from hub.messages import OutcomeStatus

    return [
        Reply(OutcomeStatus.ACCEPTED),
        Reply(
            OutcomeStatus.ASSESSED,
            recommendation="Suitable for interview with an appropriate adult",
            note="Clinical note: psychosis history",
        ),
    ]


@dataclass
class HubRig:
    hub: Hub
    trust: FakeTrust
    justice: Justice
    config_dir: Path
    amqp_url: str
    db_url: str
    api_port: int
    # What else the configuration reads from the environment (the services' inbound tokens,
    # HUB_ID_KEY): commands run against `config_dir` (hub failed …, hub endpoint …) need it too.
    env: dict[str, str] = field(default_factory=dict)

    def publisher(self) -> Any:
        """A publisher as the hub's own (`hub failed replay` uses one): it seals what it sends
        with the rig's HUB_ID_KEY. The caller closes it."""
        from hub.adapters.rabbitmq.publisher import KombuPublisher
        from hub.security.ids import IdKey
        from hub.security.provenance import Provenance, SealingPublisher

        seal = Provenance(IdKey.of(ID_KEY).seal_key)
        return SealingPublisher(KombuPublisher(self.amqp_url), seal)


@pytest.fixture
def rig_factory(amqp_url: str, pg_url: str, tmp_path: Path) -> Iterator[Callable[..., HubRig]]:
    made: list[HubRig] = []

    def make(
        *,
        replies: Any = standard_replies,
        behaviour: Any = None,
        retry: RetryPolicy | None = None,
        db_url: str | None = None,
        routes: str = ROUTES,
        sources_yaml: str = "",
        park_dead_letters: bool = False,
        extra_endpoint_yaml: str = "",
        env: dict[str, str] | None = None,
        operators_yaml: str = "",  # the ops console's `operators:` (needs HUB_CONSOLE_SECRET)
        endpoint_yaml: dict[str, str] | None = None,  # extra lines per trust endpoint
        hub_amqp_url: str | None = None,  # the hub's own broker URL (e.g. amqps:// via a proxy)
        # What each service presents when it POSTs outcomes (default: a fresh token each, set
        # as its `inbound.token_env`); with `api_tls_yaml` the API is HTTPS, verified by hub_ca.
        credentials: dict[str, HubCredentials] | None = None,
        api_tls_yaml: str = "",
        hub_ca: str | None = None,
        **hub_options: Any,  # more Hub(...) fields, e.g. queue_watch_seconds
    ) -> HubRig:
        api_port = free_port()
        if credentials is None:
            credentials = {
                name: HubCredentials(token=secrets.token_urlsafe(32)) for name in SERVICES
            }
        trust = FakeTrust(
            services=SERVICES,
            hub_base_url=f"{'https' if api_tls_yaml else 'http'}://127.0.0.1:{api_port}/fhir",
            replies=replies,
            behaviour=behaviour,
            credentials=credentials,
            hub_ca=hub_ca,
        ).start()
        tokens = {inbound_token_env(n): c.token for n, c in credentials.items() if c.token}
        tokens["HUB_ID_KEY"] = ID_KEY
        config = write_config(
            tmp_path / f"config-{len(made)}",
            trust=trust,
            api_port=api_port,
            routes=routes,
            sources_yaml=sources_yaml,
            extra_endpoint_yaml=extra_endpoint_yaml,
            operators_yaml=operators_yaml,
            endpoint_yaml=endpoint_yaml,
            api_tls_yaml=api_tls_yaml,
        )
        url = db_url or pg_url
        settings = load_settings(
            config,
            env={
                **tokens,
                **(env or {}),
                "HUB_AMQP_URL": hub_amqp_url or amqp_url,
                "HUB_DB_URL": url,
            },
        )
        # Off unless asked for: most tests read the pipeline's dead letters off hub.dlq.*
        # themselves; tests of the failed-message store turn the ingester on.
        hub = Hub(
            settings,
            retry=retry or RetryPolicy(delays=(1, 2), deadline=_td(30)),
            park_dead_letters=park_dead_letters,
            **hub_options,
        )
        hub.start()
        justice = Justice(amqp_url)
        rig = HubRig(hub, trust, justice, config, amqp_url, url, api_port, env=tokens)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.justice.close()
        rig.hub.stop()
        rig.trust.stop()
    # Every Bundle any test made the hub send must be valid FHIR R4 after a JSON round trip.
    for rig in made:
        for received in rig.trust.received:
            assert_valid_r4_bundle(received.body)


def assert_valid_r4_bundle(body: bytes) -> None:
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    doc = json.loads(json.dumps(json.loads(body)))
    Bundle.model_validate(doc)
    for entry in doc["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _td(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


@pytest.fixture
def rig(rig_factory: Callable[..., HubRig]) -> HubRig:
    return rig_factory()


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or predicate}")


__all__ = ["HubRig", "Justice", "free_port", "wait_until", "write_config", "threading"]
