"""Where queue metrics come from, on the real RabbitMQ: passive declares (depths); the bound on
each queue's oldest-message age from what a consumer takes and when the queue was seen empty
(hub.queue_ages), never by peeking; and the real management plugin's head_message_timestamp,
which RabbitMQ reports for classic queues but not for quorum ones (every hub queue is one).
Requests and errors of the management client are checked against a stand-in server.

The management plugin must be on (.ci/run turns it on): `rabbitmq-plugins enable
rabbitmq_management`. A test that cannot reach it fails saying so; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import pytest

from hub.adapters.memory.metrics import MemoryMetrics
from hub.adapters.rabbitmq.connection import queue_depths
from hub.adapters.rabbitmq.consumer import QueueWorker, start_worker
from hub.adapters.rabbitmq.management import head_message_ages
from hub.errors import TransientError
from hub.operations.queue_ages import ObservedAges
from hub.operations.queue_watch import QueueWatch
from hub.wire import Disposition, Envelope
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

MANAGEMENT_URL = os.environ.get("HUB_TEST_MANAGEMENT_URL", "http://127.0.0.1:15672")
ENABLE_MANAGEMENT = "rabbitmq-plugins enable rabbitmq_management"
QUORUM = {"x-queue-type": "quorum"}


def test_queue_depths_count_ready_messages_and_leave_out_missing_queues(amqp_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare("hub.dlq.deliver", durable=True, arguments={"x-queue-type": "quorum"})
    for _ in range(3):
        channel.basic_publish("", "hub.dlq.deliver", b"{}")
    connection.close()

    depths = queue_depths(amqp_url, ["hub.dlq.deliver", "hub.no-such-queue", "hub.dlq.deliver"])

    assert depths == {"hub.dlq.deliver": 3}


def test_queue_depths_raise_transient_when_the_broker_is_unreachable() -> None:
    with pytest.raises(TransientError):
        queue_depths("amqp://guest:guest@127.0.0.1:1//", ["hub.dlq.intake"], timeout=1)


class _Management(BaseHTTPRequestHandler):
    rows: list[dict[str, Any]] = []
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps(self.rows).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def management() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Management)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_head_message_ages_come_from_the_management_api_timestamps(management: str) -> None:
    _Management.rows = [
        {"name": "hub.dlq.deliver", "head_message_timestamp": 1_000},
        {"name": "hub.alerts.custody"},  # empty, or its head message has no timestamp
        {"name": "someone.elses.queue", "head_message_timestamp": 1},
    ]
    _Management.seen = []

    ages = head_message_ages(
        management,
        "amqp://hub:s%40cret@rabbit:5672/ld-hub",
        ["hub.dlq.deliver", "hub.alerts.custody"],
        now=1_060.0,
    )

    assert ages == {"hub.dlq.deliver": 60.0}
    path, authorization = _Management.seen[0]
    assert path.startswith("/api/queues/ld-hub?")
    assert authorization == "Basic aHViOnNAY3JldA=="  # hub:s@cret


def test_the_default_vhost_is_quoted_in_the_management_path(management: str) -> None:
    _Management.rows, _Management.seen = [], []

    head_message_ages(management, "amqp://guest:guest@127.0.0.1:5672//", ["q"], now=0)

    assert _Management.seen[0][0].startswith("/api/queues/%2F?")


def test_an_unreachable_management_api_is_transient() -> None:
    with pytest.raises(TransientError):
        head_message_ages("http://127.0.0.1:1", "amqp://127.0.0.1//", ["q"], now=0, timeout=1)


# --- the real management plugin ------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_management(rabbitmq_available: None) -> str:
    """The broker's own management API; fails (never skips) with the command that enables it."""
    request = urllib.request.Request(
        f"{MANAGEMENT_URL}/api/overview",
        headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},  # guest:guest
    )
    deadline, reason = time.monotonic() + 15, ""
    while time.monotonic() < deadline:  # a plugin enabled a moment ago may still be starting
        try:
            with urllib.request.urlopen(request, timeout=3):  # noqa: S310 - loopback, test only
                return MANAGEMENT_URL
        except (urllib.error.URLError, OSError) as exc:
            reason = str(exc)
            time.sleep(0.5)
    pytest.fail(
        f"RabbitMQ's management API is not reachable at {MANAGEMENT_URL} ({reason}). "
        f"Enable the plugin with:\n    {ENABLE_MANAGEMENT}\n"
        "or point HUB_TEST_MANAGEMENT_URL at it.",
        pytrace=False,
    )


def test_the_management_api_gives_a_head_age_for_a_classic_queue_and_none_for_a_quorum_one(
    amqp_url: str, real_management: str
) -> None:
    published = int(time.time()) - 120
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare("age.classic", durable=True)
    channel.queue_declare("age.quorum", durable=True, arguments=QUORUM)
    for queue in ("age.classic", "age.quorum"):
        props = pika.BasicProperties(timestamp=published, delivery_mode=2)
        channel.basic_publish("", queue, b"{}", props)
    connection.close()
    queues = ["age.classic", "age.quorum"]

    def ages() -> dict[str, float]:
        return head_message_ages(real_management, amqp_url, queues, now=time.time())

    # The plugin refreshes queue statistics every 5 s.
    wait_until(lambda: "age.classic" in ages(), timeout=20, what="age.classic in /api/queues")
    # ... and until the quorum queue's own statistics are in (its one message counted), so the
    # absence of its head age below is the plugin's answer, not a round not yet run.
    wait_until(
        lambda: queue_messages(real_management, amqp_url).get("age.quorum") == 1,
        timeout=20,
        what="age.quorum's message count in /api/queues",
    )
    seen = ages()

    assert 120 <= seen["age.classic"] < 150
    assert "age.quorum" in listed_queues(real_management, amqp_url)
    assert "age.quorum" not in seen, (
        "RabbitMQ now reports head_message_timestamp for quorum queues: the hub's queues could "
        "take exact ages from it (update hub.queue_ages, docs/operations.md)"
    )


def queue_messages(management_url: str, amqp_url: str) -> dict[str, int]:
    """Messages per queue as the management API last counted them (queues not yet counted
    are left out)."""
    vhost = amqp_url.rsplit("/", 1)[1]
    request = urllib.request.Request(
        f"{management_url}/api/queues/{vhost}?columns=name,messages",
        headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},  # guest:guest
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        rows = json.loads(response.read())
    return {row["name"]: row["messages"] for row in rows if isinstance(row.get("messages"), int)}


def listed_queues(management_url: str, amqp_url: str) -> set[str]:
    vhost = amqp_url.rsplit("/", 1)[1]
    request = urllib.request.Request(
        f"{management_url}/api/queues/{vhost}?columns=name",
        headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},  # guest:guest
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return {row["name"] for row in json.loads(response.read())}


# --- the observed bound on the real broker --------------------------------------------------------


def publish(
    amqp_url: str, queue: str, *, count: int = 1, timestamps: list[int] | None = None
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for n in range(count):
        stamp = timestamps[n] if timestamps else None
        props = pika.BasicProperties(delivery_mode=2, timestamp=stamp)
        channel.basic_publish("", queue, json.dumps({"n": n}).encode(), props, mandatory=True)
    connection.close()


def declare(amqp_url: str, *queues: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    for queue in queues:
        channel.queue_declare(queue, durable=True, arguments=QUORUM)
    connection.close()


def every_queue(queue: str) -> bool:
    return True


def watching(amqp_url: str, queues: list[str], observed: ObservedAges) -> QueueWatch:
    return QueueWatch(
        metrics=MemoryMetrics(),
        queues=queues,
        depths=partial(queue_depths, amqp_url),
        observed=observed,
    )


def age(watch: QueueWatch, queue: str) -> float | None:
    assert isinstance(watch.metrics, MemoryMetrics)
    return watch.metrics.gauges.get(("queue_oldest_age", queue))


@contextmanager
def consuming(
    amqp_url: str,
    queue: str,
    handler: Callable[[Envelope], Disposition],
    *,
    on_take: Callable[[str, float | None], None],
) -> Iterator[QueueWorker]:
    """A hub consumer on `queue`, prefetch 1, telling `on_take` of each message it takes."""
    worker = QueueWorker(amqp_url, queue, handler, prefetch=1, on_take=on_take)
    thread = start_worker(worker, f"test-{queue}")
    try:
        assert worker.ready.wait(timeout=10)
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=10)


def test_a_message_nobody_takes_shows_a_growing_age_and_an_empty_queue_zero(
    amqp_url: str,
) -> None:
    waiting, empty = "hub.dlq.deliver", "hub.alerts.custody"
    declare(amqp_url, waiting, empty)
    observed = ObservedAges(every_queue)
    watch = watching(amqp_url, [waiting, empty], observed)
    watch.sample()  # both seen empty
    publish(amqp_url, waiting)

    time.sleep(1.1)
    watch.sample()
    first = age(watch, waiting)
    time.sleep(1.1)
    watch.sample()
    second = age(watch, waiting)

    assert first is not None and second is not None
    assert 1.0 <= first < second < 10
    assert age(watch, empty) == 0.0

    with consuming(amqp_url, waiting, lambda e: Disposition.ACK, on_take=observed.taken):
        wait_until(lambda: queue_depths(amqp_url, [waiting]) == {waiting: 0}, what="taken")
        watch.sample()
        assert age(watch, waiting) == 0.0


def test_what_a_consumer_takes_bounds_the_age_of_the_messages_it_leaves(amqp_url: str) -> None:
    queue = "hub.outcomes.inbound"
    declare(amqp_url, queue)
    now = int(time.time())
    publish(amqp_url, queue, count=3, timestamps=[now - 300, now - 200, now - 100])
    observed = ObservedAges(every_queue)
    watch = watching(amqp_url, [queue], observed)
    watch.sample()
    assert age(watch, queue) is None  # full since we started watching, nothing taken: unknown

    release = threading.Event()

    def hold(envelope: Envelope) -> Disposition:
        release.wait(timeout=10)
        return Disposition.ACK

    with consuming(amqp_url, queue, hold, on_take=observed.taken):
        wait_until(lambda: queue_depths(amqp_url, [queue]) == {queue: 2}, what="one taken")
        watch.sample()
        bound = age(watch, queue)
        # The one taken was published 300 s ago; those left are younger (200 s, 100 s).
        assert bound is not None and 300 <= bound < 310
        release.set()
        wait_until(lambda: queue_depths(amqp_url, [queue]) == {queue: 0}, what="all taken")
        watch.sample()
        assert age(watch, queue) == 0.0


def test_a_message_back_from_a_ttl_queue_counts_from_when_the_broker_dead_lettered_it(
    amqp_url: str,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare("test.back", "fanout", durable=True)
    channel.queue_declare("test.work", durable=True, arguments=QUORUM)
    channel.queue_bind("test.work", "test.back")
    ttl = {**QUORUM, "x-message-ttl": 100, "x-dead-letter-exchange": "test.back"}
    channel.queue_declare("test.wait", durable=True, arguments=ttl)
    connection.close()
    before = time.time()
    publish(amqp_url, "test.wait", timestamps=[int(before) - 3600])  # published an hour ago
    taken: list[float | None] = []

    def record(queue: str, enqueued_at: float | None) -> None:
        taken.append(enqueued_at)

    with consuming(amqp_url, "test.work", lambda e: Disposition.ACK, on_take=record):
        wait_until(lambda: bool(taken), what="the message back from the TTL queue")

    (entered,) = taken
    assert entered is not None and entered >= int(before)  # x-death time, not the timestamp
