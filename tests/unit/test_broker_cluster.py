"""Past one broker node and one database session, without services: a cluster's URLs (hub.yaml
list or HUB_AMQP_URL's ';' form), failing over with the TLS host name of the node connected
to, the quorum group size, and a lost ledger connection requeued unacked while consumers hold."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.adapters.memory.publisher import MemoryPublisher
from hub.adapters.rabbitmq.connection import GROUP_SIZE_ARG, Broker
from hub.adapters.rabbitmq.topology import Topology
from hub.errors import ConfigError, LedgerUnavailable, TransientError
from hub.operations.database_watch import DatabaseWatch
from hub.pipeline import Dispatcher, RetryPolicy
from hub.settings.broker_tls import AmqpTls
from hub.settings.load import load_settings
from hub.wire import Disposition
from tests.fixtures.dead_letters import PROVENANCE
from tests.fixtures.stages import ALERT_ENVELOPE, FailingStage

pytestmark = pytest.mark.unit

NODES = "amqps://hub:pw@rmq-1.example:5671/ld;amqps://hub:pw@rmq-2.example:5671/ld;" + (
    "amqps://hub:pw@rmq-3.example:5671/ld"
)

HUB_YAML = """\
hub: {ods_code: XHB01, name: Test Hub, endpoint: 'http://127.0.0.1:8080/fhir'}
endpoints:
  leeds-ld:
    kind: fhir-rest
    url: http://127.0.0.1:9001/fhir
    ods_code: XLD01
    organisation_name: Leeds L&D
"""


def config(tmp_path: Path, amqp: str = "") -> Path:
    (tmp_path / "hub.yaml").write_text(HUB_YAML + textwrap.dedent(amqp))
    (tmp_path / "routes.yaml").write_text("default: [leeds-ld]\n")
    return tmp_path


def problems(tmp_path: Path, amqp: str = "", env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, amqp), env=env or {})
    return list(caught.value.problems)


# --- settings --------------------------------------------------------------------------------


def test_a_list_of_urls_in_hub_yaml_becomes_the_failover_form(tmp_path: Path) -> None:
    amqp = """\
    amqp:
      url: [amqp://rmq-1:5672/ld, amqp://rmq-2:5672/ld, amqp://rmq-3:5672/ld]
    """
    settings = load_settings(config(tmp_path, amqp), env={})
    assert settings.amqp_url == "amqp://rmq-1:5672/ld;amqp://rmq-2:5672/ld;amqp://rmq-3:5672/ld"
    assert Broker(settings.amqp_url).urls == settings.amqp_url.split(";")


def test_hub_amqp_url_may_name_several_nodes_joined_by_semicolons(tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path), env={"HUB_AMQP_URL": NODES})
    assert settings.amqp_url == NODES
    assert "pw" not in repr(settings)


def test_a_bad_node_url_is_reported_with_its_place_and_never_quoted(tmp_path: Path) -> None:
    amqp = """\
    amqp:
      url: [amqp://rmq-1:5672/ld, http://rmq-2:15672/]
    """
    (found,) = problems(tmp_path, amqp)
    assert found.endswith("/hub.yaml:9: amqp.url[1]: must be an amqp(s):// URL")
    from_env = problems(tmp_path, env={"HUB_AMQP_URL": "amqp://hub:pw@a//;redis://hub:pw@b//"})
    assert from_env == [
        "environment HUB_AMQP_URL: must be an amqp(s):// URL, or several joined by ';'"
    ]
    assert all("pw" not in p for p in from_env)


def test_a_cluster_cannot_mix_tls_and_plain_nodes(tmp_path: Path) -> None:
    env = {"HUB_AMQP_URL": "amqps://hub:pw@rmq-1:5671/ld;amqp://hub:pw@rmq-2:5672/ld"}
    assert problems(tmp_path, env=env) == [
        "environment HUB_AMQP_URL: the URLs mix amqp:// and amqps://; use one scheme for every node"
    ]


def test_quorum_queues_get_three_members_unless_configured(tmp_path: Path) -> None:
    assert load_settings(config(tmp_path), env={}).quorum_group_size == 3
    five = load_settings(config(tmp_path, "amqp: {quorum_initial_group_size: 5}\n"), env={})
    assert five.quorum_group_size == 5
    (found,) = problems(tmp_path, "amqp: {quorum_initial_group_size: 0}\n")
    assert found.endswith(
        "/hub.yaml:8: amqp.quorum_initial_group_size: 0 is less than the minimum of 1"
    )


# --- the broker's nodes ----------------------------------------------------------------------


def test_each_node_is_named_in_messages_without_the_password() -> None:
    broker = Broker(NODES)
    assert broker.address == "rmq-1.example:5671, rmq-2.example:5671, rmq-3.example:5671"
    assert broker.uses_tls


def test_failing_over_verifies_the_host_name_of_the_node_connected_to() -> None:
    # kombu keeps the ssl options it was built with for every alternate: the second node's
    # certificate would be checked against the first node's name.
    connection = Broker(NODES, AmqpTls(ca_file="/etc/hub/ca.pem")).connection()
    assert (connection.hostname, connection.ssl["server_hostname"]) == ("rmq-1.example",) * 2
    connection.maybe_switch_next()
    assert (connection.hostname, connection.ssl["server_hostname"]) == ("rmq-2.example",) * 2
    assert connection.ssl["ca_certs"] == "/etc/hub/ca.pem"
    # ConsumerMixin reconnects through a clone of the connection: it fails over the same way.
    clone = connection.clone()
    clone.maybe_switch_next()
    clone.maybe_switch_next()
    assert (clone.hostname, clone.ssl["server_hostname"]) == ("rmq-3.example",) * 2


def test_a_configured_server_hostname_wins_on_every_node() -> None:
    connection = Broker(NODES, AmqpTls(server_hostname="rabbitmq.internal")).connection()
    connection.maybe_switch_next()
    assert connection.ssl["server_hostname"] == "rabbitmq.internal"


def test_a_publisher_that_failed_starts_again_at_the_next_node() -> None:
    broker = Broker(NODES)
    assert [Broker(b.url).urls[0].split("@")[1] for b in map(broker.starting_after, range(4))] == [
        "rmq-1.example:5671/ld",
        "rmq-2.example:5671/ld",
        "rmq-3.example:5671/ld",
        "rmq-1.example:5671/ld",
    ]


def test_each_retry_round_tries_every_node() -> None:
    assert Broker(NODES).attempts(0) == 2  # one round: three nodes
    assert Broker(NODES).attempts(1) == 5
    assert Broker("amqp://guest:guest@127.0.0.1:5672//").attempts(1) == 1


def test_queues_are_declared_with_the_initial_group_size() -> None:
    topology = Topology(endpoints=["leeds-ld"], retry_delays=[10])
    for queue, _ in topology._queues():
        assert queue.queue_arguments[GROUP_SIZE_ARG] == 3, queue.name
    for queue, _ in Topology(endpoints=["leeds-ld"], retry_delays=[10], group_size=None)._queues():
        assert GROUP_SIZE_ARG not in queue.queue_arguments


# --- the ledger away -------------------------------------------------------------------------


def test_a_message_the_ledger_could_not_take_goes_back_unacked() -> None:
    publisher = MemoryPublisher()
    away = LedgerUnavailable("ledger unavailable (postgresql db:5432/hub) during record_alert")
    dispatcher = Dispatcher(
        FailingStage(away), publisher=publisher, retry=RetryPolicy(), provenance=PROVENANCE
    )

    assert dispatcher(ALERT_ENVELOPE) is Disposition.REQUEUE
    assert publisher.published == []  # no retry queue: that would be an ack


def test_other_transient_failures_still_wait_in_a_retry_queue() -> None:
    publisher = MemoryPublisher()
    dispatcher = Dispatcher(
        FailingStage(TransientError("endpoint 503")),
        publisher=publisher,
        retry=RetryPolicy(),
        provenance=PROVENANCE,
    )
    assert dispatcher(ALERT_ENVELOPE) is Disposition.ACK
    assert [p.exchange for p in publisher.published] == ["hub.retry.10s"]


def test_consumers_hold_while_the_database_is_away_and_resume_when_it_answers() -> None:
    answers: list[Exception | None] = [None, LedgerUnavailable("away"), None]

    def ping() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    watch = DatabaseWatch(ping, interval=3600)  # started, but asked only here
    watch.start()
    try:
        assert watch.check() and watch.may_consume(object())
        assert not watch.check() and not watch.may_consume(object())
        assert watch.reason == "away"
        assert watch.check() and watch.may_consume(object()) and watch.reason is None
    finally:
        watch.stop()


def test_consumers_never_hold_for_ever_on_a_watch_that_died() -> None:
    def ping() -> None:
        raise LedgerUnavailable("away")

    watch = DatabaseWatch(ping, interval=0.01)
    watch.check()
    watch.start()
    assert not watch.may_consume(object())  # the watch runs: the database is away
    watch.stop()
    assert watch.may_consume(object())  # nobody would ever say it is back
