"""The RabbitMQ adapter over TLS, against the real broker behind a TLS-terminating proxy that
demands a client certificate (tests/tls_proxy.py): confirmed publishing and queue depths work
through amqps://, and every way the handshake can fail ends in a sentence an operator can act
on. Also the management API over https with the broker's CA."""

from __future__ import annotations

import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pika
import pytest

from hub.adapters.rabbitmq.connection import Broker, connected, queue_depths
from hub.adapters.rabbitmq.management import head_message_ages
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.errors import TransientError
from hub.settings.broker_tls import AmqpTls
from tests.conftest import wait_until
from tests.pki import make_pki
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def proxy(pki: Path, rabbitmq_available: None) -> Iterator[TlsProxy]:
    proxy = TlsProxy(cert=pki / "server.pem", key=pki / "server.key", client_ca=pki / "ca.pem")
    yield proxy.start()
    proxy.stop()


def hub_tls(pki: Path, *, ca: str = "ca", client: str | None = "client", **extra: Any) -> AmqpTls:
    cert = {"cert_file": str(pki / f"{client}.pem"), "key_file": str(pki / f"{client}.key")}
    return AmqpTls(ca_file=str(pki / f"{ca}.pem"), **(cert if client else {}), **extra)


def vhost_of(amqp_url: str) -> str:
    return amqp_url.rsplit("/", 1)[1]


def connection_error(broker: Broker) -> str:
    with pytest.raises(TransientError) as caught, connected(broker, max_retries=0):
        pass
    return caught.value.message


def test_a_confirmed_publish_over_amqps_presents_the_client_certificate_and_arrives(
    pki: Path, proxy: TlsProxy, amqp_url: str
) -> None:
    queue = f"tls.{uuid.uuid4().hex[:8]}"
    plain = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = plain.channel()
    channel.queue_declare(queue, durable=True)
    publisher = KombuPublisher(Broker(proxy.url(vhost_of(amqp_url)), hub_tls(pki)))

    publisher.publish(exchange="", routing_key=queue, body=b'{"over": "tls"}')
    publisher.close()

    method, _, body = channel.basic_get(queue, auto_ack=True)
    plain.close()
    assert method is not None and body == b'{"over": "tls"}'
    assert proxy.peers == ["client"]


def test_queue_depths_are_read_over_amqps(pki: Path, proxy: TlsProxy, amqp_url: str) -> None:
    plain = pika.BlockingConnection(pika.URLParameters(amqp_url))
    plain.channel().queue_declare("tls.depth", durable=True)
    plain.channel().basic_publish("", "tls.depth", b"one")
    plain.close()

    depths = queue_depths(Broker(proxy.url(vhost_of(amqp_url)), hub_tls(pki)), ["tls.depth"])

    assert depths == {"tls.depth": 1}


def test_without_a_client_certificate_the_error_says_the_hub_sent_none(
    pki: Path, proxy: TlsProxy
) -> None:
    broker = Broker(proxy.url("ld"), hub_tls(pki, client=None))

    message = connection_error(broker)

    assert message.startswith(f"cannot connect to RabbitMQ at localhost:{proxy.port}: TLS: ")
    assert "the hub sent none" in message
    assert "HUB_AMQP_CERT_FILE" in message
    wait_until(lambda: proxy.refused == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"], timeout=5)


def test_a_client_certificate_from_a_ca_the_broker_does_not_trust_is_refused_clearly(
    pki: Path, proxy: TlsProxy
) -> None:
    broker = Broker(proxy.url("ld"), hub_tls(pki, client="rogue-client"))

    message = connection_error(broker)

    assert "client certificate" in message
    assert "it must be signed by a CA the broker trusts" in message
    assert proxy.peers == []


def test_a_broker_certificate_from_an_untrusted_ca_is_refused_naming_the_ca_setting(
    pki: Path, proxy: TlsProxy
) -> None:
    broker = Broker(proxy.url("ld"), hub_tls(pki, ca="rogue-ca"))

    message = connection_error(broker)

    assert "TLS: the broker's certificate was not accepted (" in message
    assert "amqp.tls.ca_file (HUB_AMQP_CA_FILE) must hold the CA" in message
    assert proxy.peers == []  # the hub hung up before showing its certificate to a stranger


def test_amqps_without_tls_options_still_verifies_the_broker_against_the_system_store(
    proxy: TlsProxy,
) -> None:
    message = connection_error(Broker(proxy.url("ld")))

    assert "TLS: the broker's certificate was not accepted" in message


def test_a_host_name_not_on_the_broker_certificate_is_refused(pki: Path, proxy: TlsProxy) -> None:
    tls = hub_tls(pki, server_hostname="rabbit.example")

    message = connection_error(Broker(proxy.url("ld"), tls))

    assert "Hostname mismatch" in message
    assert "amqp.tls.server_hostname" in message


def test_connecting_by_ip_address_works_when_the_certificate_names_it(
    pki: Path, proxy: TlsProxy, amqp_url: str
) -> None:
    broker = Broker(proxy.url(vhost_of(amqp_url), host="127.0.0.1"), hub_tls(pki))

    with connected(broker, max_retries=0) as connection:
        assert connection.connected


def test_a_plain_amqp_url_at_a_tls_listener_says_to_use_amqps(
    proxy: TlsProxy,
) -> None:
    url = proxy.url("ld").replace("amqps://", "amqp://")

    message = connection_error(Broker(url))

    assert message.endswith(
        f"if localhost:{proxy.port} is its TLS listener, the URL must be amqps://"
    )


def test_amqps_at_the_plain_amqp_port_says_it_is_not_a_tls_listener(
    pki: Path, rabbitmq_available: None
) -> None:
    url = "amqps://guest:guest@localhost:5672/"

    message = connection_error(Broker(url, hub_tls(pki)))

    assert "TLS: the broker did not answer in TLS" in message
    assert "must be its TLS listener (usually port 5671)" in message


# -- the management API over https ---------------------------------------------------------


@pytest.fixture
def https_management(pki: Path) -> Iterator[str]:
    """/api/queues/<vhost> over https, demanding a client certificate from the test CA."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            rows = [{"name": "hub.deliver.wy-ld", "head_message_timestamp": 1000}]
            payload = json.dumps(rows).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_the_management_api_over_https_trusts_the_broker_ca_and_shows_the_certificate(
    pki: Path, https_management: str
) -> None:
    ages = head_message_ages(
        https_management,
        "amqps://hub@localhost/ld",
        ["hub.deliver.wy-ld"],
        now=1030.0,
        tls=hub_tls(pki),
    )

    assert ages == {"hub.deliver.wy-ld": 30.0}


def test_the_management_api_over_https_is_verified_without_tls_options(
    https_management: str,
) -> None:
    with pytest.raises(TransientError) as caught:
        head_message_ages(https_management, "amqps://hub@localhost/ld", ["q"], now=0.0)

    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
