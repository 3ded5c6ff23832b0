"""RabbitMQ through kombu: the connection (plain or TLS), topology, confirmed publishing, and the
consumer loop.

The only module that imports kombu/amqp. Broker exceptions become hub errors here, in words an
operator can act on. It decides nothing about messages: a handler returns whether to ack or to
requeue.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from amqp.serialization import GenericContent
from kombu import Connection
from kombu.exceptions import OperationalError

from hub.adapters.rabbitmq import tls as rabbitmq_tls
from hub.errors import TransientError
from hub.log import get_logger
from hub.settings.broker_tls import AmqpTls

log = get_logger("hub.rabbitmq")


GROUP_SIZE_ARG = "x-quorum-initial-group-size"
DEFAULT_GROUP_SIZE = 3  # RabbitMQ's own default is every node of the cluster


@dataclass(frozen=True, slots=True)
class Broker:
    """Where RabbitMQ is and how to reach it: the AMQP URL, or several (`;`-separated, kombu's
    failover form: the nodes of one cluster, tried in turn on connect and on every reconnect),
    and, for amqps://, the TLS options (None: verify the broker against the system's CA store,
    present no client certificate). The broker's certificate is always verified
    (hub.adapters.rabbitmq.tls), against the host name of the node actually connected to."""

    url: str = field(repr=False)  # may carry credentials
    tls: AmqpTls | None = None

    @classmethod
    def of(cls, broker: Broker | str) -> Broker:
        """A Broker from a plain URL too (amqps:// then verifies against the system store)."""
        return broker if isinstance(broker, Broker) else cls(broker)

    @property
    def urls(self) -> list[str]:
        """Each node's URL, in the order they are tried."""
        return [u.strip() for u in self.url.split(";") if u.strip()] or [self.url]

    @property
    def uses_tls(self) -> bool:
        return self.urls[0].startswith("amqps://")

    @property
    def address(self) -> str:
        """host:port of each node, for messages (the URL itself may carry a password)."""
        return ", ".join(_address(u, self.uses_tls) for u in self.urls)

    def connection(self, **options: Any) -> Connection:
        """A kombu Connection (not yet connected) with this broker's TLS options; with several
        URLs, kombu fails over round-robin and `_FailoverConnection` re-makes the TLS options
        for each node it switches to."""
        urls = self.urls
        first = urls[0]
        if len(urls) == 1:
            return Connection(first, ssl=rabbitmq_tls.ssl_options(first, self.tls), **options)
        connection = _FailoverConnection(
            ";".join(urls),
            failover_strategy="round-robin",
            ssl=rabbitmq_tls.ssl_options(first, self.tls),
            **options,
        )
        connection.hub_tls = self.tls
        return connection

    def explain(self, exc: BaseException) -> str:
        """Why a connection failed, in words an operator can act on."""
        return rabbitmq_tls.explain(exc, address=self.address, uses_tls=self.uses_tls, tls=self.tls)

    def explain_lost(self, exc: BaseException) -> str:
        """Why a connection that was working stopped (a node went down or was restarted):
        `explain` speaks of handshakes, which this was not."""
        detail = str(exc).strip() or "no detail"
        return f"connection to the broker lost ({type(exc).__name__}: {detail[:200]})"

    def attempts(self, retries: int) -> int:
        """kombu's `max_retries` for `retries` rounds after the first: it counts one retry per
        node tried, and waits its interval only after each round over all of them."""
        return (retries + 1) * len(self.urls) - 1

    def starting_after(self, turns: int) -> Broker:
        """The same nodes, tried from the `turns`-th onwards (then round): where a publisher
        goes after the node it was on failed it."""
        urls = self.urls
        k = turns % len(urls)
        return Broker(";".join(urls[k:] + urls[:k]), self.tls)


def _address(url: str, uses_tls: bool) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port or (5671 if uses_tls else 5672)
    except ValueError:
        return "(unparsable AMQP URL)"
    return f"{parts.hostname or 'localhost'}:{port}"


class _FailoverConnection(Connection):
    """kombu's Connection over several nodes. kombu keeps the `ssl=` options it was built with
    for every alternate, so the host name verified would stay the first node's: each switch
    re-makes them for the node switched to (amqp.tls.server_hostname still wins)."""

    hub_tls: AmqpTls | None = None

    def switch(self, conn_str: str) -> None:
        super().switch(conn_str)
        self.ssl: Any = rabbitmq_tls.ssl_options(conn_str, self.hub_tls)

    def clone(self, **kwargs: Any) -> Connection:
        # ConsumerMixin reconnects through a clone: it must keep failing over the same way.
        cloned = super().clone(**kwargs)
        cloned.hub_tls = self.hub_tls
        return cloned


def connect(broker: Broker | str, *, heartbeat: int = 30) -> Connection:
    """A kombu connection; publisher confirms on for the AMQP transport."""
    broker = Broker.of(broker)
    options: dict[str, Any] = {}
    if broker.urls[0].startswith(("amqp://", "amqps://", "pyamqp://")):
        options["confirm_publish"] = True
    elif broker.urls[0].startswith("memory://"):
        options["polling_interval"] = 0.01  # the embedded demo: no 1 s polling per hop
    return broker.connection(heartbeat=heartbeat, transport_options=options, connect_timeout=10)


@contextmanager
def connected(
    broker: Broker | str, *, max_retries: int = 3, interval_start: float = 0.5
) -> Iterator[Connection]:
    """An established connection, released on exit; one that cannot be made raises
    TransientError saying why (`Broker.explain`), never a library traceback."""
    broker = Broker.of(broker)
    connection = connect(broker)
    errors = (OSError, OperationalError, *connection.connection_errors, *connection.channel_errors)
    try:
        try:
            connection.ensure_connection(
                max_retries=broker.attempts(max_retries), interval_start=interval_start
            )
        except errors as exc:
            raise TransientError(
                f"cannot connect to RabbitMQ at {broker.address}: {broker.explain(exc)}"
            ) from exc
        yield connection
    finally:
        connection.release()


# How long a publish waits for its confirm. A quorum queue confirms once a majority of its
# members have the message; while its leader is being re-elected (a node lost) that takes a few
# seconds. Past this, the publish is tried again on the next node: the same message id and
# bytes, so at worst a duplicate, which the ledger and the receivers absorb.
CONFIRM_TIMEOUT_SECONDS = 15.0
PUBLISH_ATTEMPTS = 4
RETRY_PAUSE_SECONDS = 0.5


_load_properties = GenericContent._load_properties


def _tolerant_load_properties(content: Any, class_id: int, buf: Any, offset: int) -> int:
    """py-amqp's property decoding, except that properties it cannot decode (a message_id or
    content_type that is not UTF-8, header tables nested past the recursion limit) leave the
    message without properties instead of raising out of the connection's frame reader, where
    the error would kill the consumer thread and leave the message to do it again on every
    redelivery. The body still arrives, and the hub judges it without its properties."""
    try:
        result: int = _load_properties(content, class_id, buf, offset)
        return result
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        log.warning("message_properties_unreadable", error_class=type(exc).__name__)
        content.properties = {}
        return offset  # unused by py-amqp's inbound_header


def tolerate_unreadable_properties() -> None:
    """Install `_tolerant_load_properties` (idempotent; py-amqp offers no hook for it)."""
    GenericContent._load_properties = _tolerant_load_properties


def queue_depth(broker: Broker | str, queue: str, *, timeout: float = 3.0) -> int | None:
    """Messages ready on `queue` (a passive declare, which creates nothing); None when the
    queue does not exist or the broker cannot be reached, for a status page that must render."""
    broker = Broker.of(broker)
    try:
        with broker.connection(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=broker.attempts(0))
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue=queue, passive=True)
                return int(count)
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 - the channel dies with a 404 anyway
                    pass
    except Exception:  # noqa: BLE001 - a status read reports, never raises
        return None


def queue_depths(
    broker: Broker | str, queues: Sequence[str], *, timeout: float = 5.0
) -> dict[str, int]:
    """Messages ready on each queue, by passive declares over one connection (creates
    nothing; RabbitMQ counts ready messages, not unacked ones). A queue that does not exist is
    left out; an unreachable broker raises TransientError."""
    depths: dict[str, int] = {}
    broker = Broker.of(broker)
    connection = broker.connection(connect_timeout=timeout)
    try:
        connection.ensure_connection(max_retries=broker.attempts(1))
        channel = connection.channel()
        for name in queues:
            try:
                _, count, _ = channel.queue_declare(queue=name, passive=True)
                depths[name] = int(count)
            except connection.channel_errors:
                # 404: the broker closed the channel; carry on with a fresh one.
                channel = connection.channel()
        channel.close()
    except (OSError, OperationalError, *connection.connection_errors) as exc:
        raise TransientError(
            f"cannot read queue depths: broker unreachable ({broker.explain(exc)})"
        ) from exc
    finally:
        connection.release()
    return depths
