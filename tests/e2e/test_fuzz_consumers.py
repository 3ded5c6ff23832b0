"""Fuzz: hostile messages at every queue the hub consumes and at its inbound API, on one running
hub with the real RabbitMQ and PostgreSQL (a schema of its own). Bodies are arbitrary bytes,
deep nesting, off-contract JSON and valid-looking alerts carrying hostile strings; headers
include x-hub-* and x-death lookalikes; message ids and content types are missing, long or not
UTF-8. Seeded (hypothesis, derandomized) and bounded: a few hundred messages.

Afterwards: the hub is ready with no thread down or restarted, every queue is drained, every
message was processed (a routed alert) or is in the failed-message store, every readable alert
got exactly one answer (one `rejected`, or `received` for a routed one) and every inbound API
request had a 2xx or 4xx answer.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.contracts.peek import peek_identity, peek_schema
from hub.messages import ALERT_SCHEMA
from hub.records import AlertState
from hub.testing.fake_trust import inbound_token_env
from hub.wire import DLQ_EXCHANGE, STAGES, WORK_EXCHANGE
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import now_iso
from tests.fixtures.alerts import court_alert, custody_alert, with_changes
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 F811 - a fixture

pytestmark = pytest.mark.e2e

MESSAGES = 400  # at the queues; each is one hypothesis example
REQUESTS = 80  # at the inbound API
NS = uuid.UUID("0b8a3c8e-5f43-4a8e-9d53-3b8f1f0c2a77")

# -- what is thrown ---------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),  # hypothesis favours the odd: controls, surrogates, astral planes
    st.sampled_from(["\u0000", "\x1b[31m", "\ud800", "\udfff", "\x7f", "\x85", "\u2028", "\t"]),
    st.integers(200, 70_000).map(lambda n: "x" * n),
)
HOSTILE_PATHS = [
    "person.name.family",
    "person.name.given[0]",
    "vulnerabilities[0].detail",
    "source.location",
    "source.reference",
    "source.organisation.name",
    "consent.recorded_by",
    "person.address.lines[0]",
    "person.date_of_birth",
    "urgency",
]


@st.composite
def alert_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(kind, alert) valid or with one field made hostile; alert_id set when published."""
    kind = draw(st.sampled_from(["custody", "court"]))
    alert = (custody_alert if kind == "custody" else court_alert)(sent_at=now_iso())
    alert["consent"]["recorded_at"] = alert["sent_at"]
    if draw(st.booleans()):
        alert = with_changes(alert, {draw(st.sampled_from(HOSTILE_PATHS)): draw(hostile_text)})
    return kind, alert


def nested(depth: int, opener: bytes) -> bytes:
    return opener * depth


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(nested, st.integers(1, 60_000), st.sampled_from([b"[", b'{"a":', b'[{"x":'])),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda doc: json.dumps(doc).encode()),
    st.just(json.dumps({"schema": ALERT_SCHEMA, "alert_id": "a" * 300}).encode()),
)
short_str = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)
header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | short_str
    | st.binary(max_size=40)
    | st.integers(1, 5000).map(lambda n: "9" * n),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_str, inner, max_size=3),
    max_leaves=8,
)
header_names = st.sampled_from(
    [
        "x-hub-attempts",
        "x-hub-first-failure",
        "x-hub-last-failure",
        "x-hub-stage",
        "x-hub-endpoint",
        "x-hub-alert-id",
        "x-hub-error",
        "x-hub-error-class",
        "x-hub-original-queue",
        "x-hub-original-routing-key",
        "x-hub-original-exchange",
        "x-hub-http-status",
        "x-hub-bundle-id",
        "x-hub-request-id",
        "x-death",
        "x-first-death-queue",
        "x-first-death-reason",
    ]
) | st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)
headers = st.dictionaries(header_names, header_values, max_size=6)
shortstr = st.one_of(
    st.none(),
    short_str,
    st.binary(max_size=255),  # not UTF-8, often: py-amqp cannot decode it
    st.integers(1, 255).map(lambda n: "m" * n),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain", ""]),
    shortstr,
)
targets = st.sampled_from(
    [
        *(("alert", "justice.alerts", None) for _ in range(6)),
        ("alert-replay", WORK_EXCHANGE, "hub.alerts.custody"),
        ("outcome", WORK_EXCHANGE, "hub.outcomes.inbound"),
        ("deliver", WORK_EXCHANGE, "hub.deliver.wy-ld"),
        ("deliver", WORK_EXCHANGE, "hub.deliver.leeds-dat"),
        *(("dlq", DLQ_EXCHANGE, stage) for stage in STAGES),
    ]
)
routing_keys = st.one_of(
    st.sampled_from(
        [
            "custody.WYP.identification",
            "court.LMC01.identification",
            "custody.WYP.update",
            "court.LMC01.cancellation",
            "custody.WYP.consent",
            "custody",
            "custody..identification",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzWYP.#*", min_size=1, max_size=200).map(
        lambda k: "custody." + k
    ),
)


@dataclass
class Sent:
    target: str
    body: bytes
    readable_alert_id: str | None = None  # a JSON alert with a safe id: must be answered once


@dataclass
class Thrower:
    rig: HubRig
    channel: Any
    sent: list[Sent] = field(default_factory=list)

    def throw(self, data: st.DataObject) -> None:
        kind, exchange, routing_key = data.draw(targets)
        message_id = data.draw(shortstr)
        if kind == "alert" and data.draw(st.sampled_from([True, True, False])):
            source, alert = data.draw(alert_bodies())
            alert["alert_id"] = str(uuid.uuid5(NS, str(len(self.sent))))  # unique per run
            body = json.dumps(alert).encode()
            routing_key = f"{source}.{alert['source']['organisation']['code']}.identification"
            message_id = data.draw(st.sampled_from([alert["alert_id"]] * 3 + [None]))
            content_type = data.draw(st.sampled_from(["application/json"] * 4 + [None]))
        else:
            body = data.draw(bodies)
            content_type = data.draw(content_types)
            if kind == "alert":
                routing_key = data.draw(routing_keys)
        assert routing_key is not None
        self.channel.basic_publish(
            exchange,
            routing_key,
            body,
            pika.BasicProperties(
                content_type=content_type,
                message_id=message_id,
                delivery_mode=2,
                headers=data.draw(headers) or None,
            ),
            mandatory=True,
        )
        readable = None
        if kind.startswith("alert") and peek_schema(body) == ALERT_SCHEMA:
            readable = peek_identity(body)[0]
        self.sent.append(Sent(kind, body, readable))


# -- the test ---------------------------------------------------------------------------------


def test_nothing_thrown_at_the_hub_stops_a_consumer_or_goes_unanswered(
    rig_factory: Callable[..., HubRig],
    new_pg_schema: Callable[[], str],  # noqa: F811 - the fixture imported above
) -> None:
    rig = rig_factory(park_dead_letters=True, replies=None, db_url=new_pg_schema())
    connection = pika.BlockingConnection(pika.URLParameters(rig.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    thrower = Thrower(rig, channel)

    @settings(
        derandomize=True,
        max_examples=MESSAGES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def throw(data: st.DataObject) -> None:
        thrower.throw(data)

    try:
        throw()
    finally:
        connection.close()
    statuses = post_to_the_inbound_api(rig)

    store, ledger = SqlFailedStore(rig.db_url), SqlLedger(rig.db_url)
    try:
        wait_until(
            lambda: unaccounted(thrower.sent, store, ledger) == [],
            timeout=90,
            what="every message processed or parked",
        )
        wait_until(lambda: hub_queues_empty(rig), timeout=30, what="every hub queue drained")
        answers = answered(rig, thrower.sent, ledger)
    finally:
        store.close()
        ledger.close()

    response = httpx.get(f"http://127.0.0.1:{rig.api_port}/readyz", timeout=15)
    assert response.status_code == 200 and response.json()["down"] == [], response.json()
    assert all(thread.is_alive() for _, thread in rig.hub._workers)
    assert b"hub_thread_restarts_total{" not in rig.hub._metrics.exposition()[0]
    assert {alert_id: n for alert_id, n in answers.items() if n != 1} == {}
    assert [s for s, _ in statuses if s >= 500] == []
    assert any(is_deep(body) and s == 400 for s, body in statuses)  # deep JSON was tried
    assert sum(1 for s in thrower.sent if s.readable_alert_id) >= 30  # the fuzz reached intake


def unaccounted(sent: list[Sent], store: SqlFailedStore, ledger: SqlLedger) -> list[Sent]:
    """Messages neither parked (their bytes in the store) nor processed (a routed alert)."""
    parked = {row.failure.body for row in store.list()}
    missing = []
    for message in sent:
        if message.body in parked:
            continue
        if message.readable_alert_id is not None:
            record = ledger.get_alert(message.readable_alert_id)
            digest = hashlib.sha256(message.body).hexdigest()
            if record and record.state is AlertState.ROUTED and record.facts.body_sha256 == digest:
                continue
        missing.append(message)
    return missing


def hub_queues_empty(rig: HubRig) -> bool:
    queues = ["hub.alerts.custody", "hub.alerts.court", "hub.outcomes.inbound"]
    queues += [f"hub.deliver.{name}" for name in rig.hub.settings.endpoints]
    queues += [f"hub.dlq.{stage}" for stage in STAGES]
    queues += [f"hub.retry.{delay}s" for delay in rig.hub.retry.delays]
    return all(rig.justice.queue_depth(queue) == 0 for queue in queues)


def answered(rig: HubRig, sent: list[Sent], ledger: SqlLedger) -> dict[str, int]:
    """For each readable alert: how many answers it got (a rejection, or its referrals'
    `received` outcomes counted as one answer when routed)."""
    rig.justice.drain()
    counts = {}
    for message in sent:
        alert_id = message.readable_alert_id
        if alert_id is None or alert_id in counts:
            continue
        outcomes = [o for o in rig.justice.outcomes if o["alert_id"] == alert_id]
        rejections = sum(1 for o in outcomes if o["status"] == "rejected")
        record = ledger.get_alert(alert_id)
        routed = record is not None and record.state is AlertState.ROUTED
        counts[alert_id] = rejections + (1 if routed else 0)
    return counts


def is_deep(body: bytes) -> bool:
    return body.count(b"[") + body.count(b"{") > 900


def post_to_the_inbound_api(rig: HubRig) -> list[tuple[int, bytes]]:
    """Arbitrary bodies to POST /fhir/$process-message, authenticated as a service (so they are
    read), and a few not; every answer's status."""
    token = rig.env[inbound_token_env("wy-ld")]
    statuses: list[tuple[int, bytes]] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.api_port}", timeout=15) as client:

        @settings(
            derandomize=True,
            max_examples=REQUESTS,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            body=bodies,
            authenticated=st.sampled_from([True, True, True, False]),
            content_type=st.sampled_from(["application/fhir+json", "application/json", "text/x"]),
        )
        def post(body: bytes, authenticated: bool, content_type: str) -> None:
            headers = {
                "connection": "close",  # each request its own: no reuse of a closed one
                "content-type": content_type,
                "x-request-id": str(uuid.uuid4()),
                "x-correlation-id": str(uuid.uuid4()),
            }
            if authenticated:
                headers["authorization"] = f"Bearer {token}"
            response = client.post("/fhir/$process-message", content=body, headers=headers)
            statuses.append((response.status_code, body))

        post()
    return statuses
