"""The hub over TLS to its broker, end to end: every hub connection goes through
amqps://localhost:<port> (a TLS-terminating proxy in front of the real RabbitMQ that demands a
client certificate, tests/tls_proxy.py), configured only by environment variables. An alert
published by the justice side reaches the trust and its outcomes come back; a hub that cannot
make the handshake says why at start-up, in /readyz and in its log."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hub.log import configure_logging
from tests.conftest import ID_KEY, HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.pki import make_pki
from tests.tls_proxy import TlsProxy

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def proxies(pki: Path, rabbitmq_available: None) -> Iterator[Callable[..., TlsProxy]]:
    """Starts TLS proxies (the broker's certificate by default; `cert=` another one's name in
    the test PKI), all stopped at teardown. Ask for it before rig_factory: the hub must stop
    while its broker is still there (a consumer with no broker retries until it is back)."""
    started: list[TlsProxy] = []

    def start(*, cert: str = "server", port: int = 0) -> TlsProxy:
        proxy = TlsProxy(
            cert=pki / f"{cert}.pem", key=pki / f"{cert}.key", client_ca=pki / "ca.pem", port=port
        )
        started.append(proxy.start())
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(proxies: Callable[..., TlsProxy]) -> TlsProxy:
    return proxies()


def tls_env(pki: Path, *, client: str | None = "client") -> dict[str, str]:
    env = {"HUB_AMQP_CA_FILE": str(pki / "ca.pem")}
    if client:
        env |= {
            "HUB_AMQP_CERT_FILE": str(pki / f"{client}.pem"),
            "HUB_AMQP_KEY_FILE": str(pki / f"{client}.key"),
        }
    return env


def amqps_url(proxy: TlsProxy, amqp_url: str) -> str:
    """The test's own vhost, through the proxy."""
    return proxy.url(amqp_url.rsplit("/", 1)[1])


def readyz(rig: HubRig) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{rig.api_port}/readyz", timeout=15)


def test_an_alert_reaches_the_trust_and_outcomes_come_back_with_the_hub_on_amqps(
    proxy: TlsProxy, pki: Path, amqp_url: str, rig_factory: Callable[..., HubRig]
) -> None:
    rig = rig_factory(hub_amqp_url=amqps_url(proxy, amqp_url), env=tls_env(pki))
    alert = fresh_custody()

    rig.justice.publish(alert, routing_key=key_for(alert))  # plain AMQP, straight to 5672

    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral at the trust")
    assert rig.trust.delivered()[0].correlation_id == alert["alert_id"]
    rig.justice.wait_for(
        lambda got: {o["status"] for o in got} >= {"received", "accepted", "assessed"}
    )
    # Every consumer, publisher and check came through the proxy, showing the hub's certificate.
    assert len(proxy.peers) >= 5 and set(proxy.peers) == {"client"}
    assert proxy.refused == []
    assert readyz(rig).json()["checks"]["broker"] is True


def test_a_broker_certificate_the_hub_stops_trusting_shows_in_readyz_and_the_log(
    proxies: Callable[..., TlsProxy], pki: Path, amqp_url: str, rig_factory: Callable[..., HubRig]
) -> None:
    proxy = proxies()
    rig = rig_factory(hub_amqp_url=amqps_url(proxy, amqp_url), env=tls_env(pki))
    stream = io.StringIO()
    configure_logging(level="INFO", stream=stream)
    # The broker comes back on the same port with a certificate from a CA the hub does not know.
    proxy.stop()
    impostor = proxies(cert="rogue-client", port=proxy.port)

    response = readyz(rig)

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] is False
    logged = [json.loads(line) for line in stream.getvalue().splitlines()]
    not_ready = next(e for e in logged if e["event"] == "broker_not_ready")
    assert "TLS: the broker's certificate was not accepted" in not_ready["reason"]
    assert "HUB_AMQP_CA_FILE" in not_ready["reason"]
    wait_until(
        lambda: any(
            e["event"] == "broker_connection_lost" and "not accepted" in e.get("reason", "")
            for e in map(json.loads, stream.getvalue().splitlines())
        ),
        what="a consumer saying why it cannot reconnect",
    )
    assert "Traceback" not in stream.getvalue()

    # The right broker again: the consumers reconnect, and the hub stops cleanly.
    impostor.stop()
    proxies(port=proxy.port)
    wait_until(lambda: readyz(rig).status_code == 200, timeout=60, what="the hub ready again")


def test_hub_run_without_a_client_certificate_stops_saying_why_and_without_a_traceback(
    proxy: TlsProxy, pki: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "hub.yaml").write_text(
        "hub: {ods_code: X26HUB, name: Hub, endpoint: 'http://127.0.0.1:1/fhir'}\n"
        "endpoints:\n  wy-ld:\n    kind: fhir-rest\n    url: http://127.0.0.1:1/fhir\n"
        "    ods_code: RXX01\n    organisation_name: L&D\n"
    )
    (config / "routes.yaml").write_text("default: [wy-ld]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env |= tls_env(pki, client=None) | {
        "HUB_AMQP_URL": proxy.url("ld"),
        "HUB_DB_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "HUB_ID_KEY": ID_KEY,
    }

    result = subprocess.run(
        [sys.executable, "-m", "hub", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )

    assert result.returncode == 3
    said = f"cannot start: cannot connect to RabbitMQ at localhost:{proxy.port}: TLS: "
    assert said in result.stderr
    assert "the hub sent none" in result.stderr
    assert "HUB_AMQP_CERT_FILE" in result.stderr
    assert '"event": "broker_unreachable"' in result.stderr  # the JSON log line, too
    assert "Traceback" not in result.stderr
