"""Where queue metrics come from: passive declares on the real RabbitMQ (depths), and the
management API's head_message_timestamp (ages) from a stand-in HTTP server on loopback, as the
test broker runs without the management plugin."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pika
import pytest

from hub.adapters.rabbitmq import queue_depths
from hub.adapters.rabbitmq_management import head_message_ages
from hub.errors import TransientError

pytestmark = pytest.mark.integration


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
