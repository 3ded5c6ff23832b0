"""Every exchange and queue the hub declares, with the same type and arguments each time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kombu import Connection, Exchange, Queue

from hub.adapters.rabbitmq.connection import DEFAULT_GROUP_SIZE, GROUP_SIZE_ARG
from hub.errors import ConfigError, TransientError
from hub.log import get_logger
from hub.wire import (
    ALERT_QUEUES,
    ALERTS_EXCHANGE,
    DELIVERY_LIMIT,
    DLQ_EXCHANGE,
    OUTCOMES_EXCHANGE,
    OUTCOMES_INBOUND_QUEUE,
    STAGES,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
    WORK_EXCHANGE,
    delivery_queue,
    dlq_queue,
    retry_exchange,
)

log = get_logger("hub.rabbitmq")


def _quorum(**extra: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **extra}


_ALT = {"alternate-exchange": UNROUTED_EXCHANGE}


def declared_exchange(name: str) -> Exchange:
    """Every exchange the hub declares, always with the same type and arguments (a
    redeclaration with others is refused by the broker)."""
    if name == UNROUTED_EXCHANGE or name.startswith("hub.retry."):
        return Exchange(name, type="fanout", durable=True)
    kind = "topic" if name in (ALERTS_EXCHANGE, OUTCOMES_EXCHANGE) else "direct"
    return Exchange(name, type=kind, durable=True, arguments=_ALT)


def _work_queue(name: str, stage: str, group: dict[str, Any]) -> Queue:
    return Queue(
        name,
        exchange=declared_exchange(WORK_EXCHANGE),
        routing_key=name,
        durable=True,
        queue_arguments=_quorum(
            **group,
            **{
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DLQ_EXCHANGE,
                "x-dead-letter-routing-key": stage,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        ),
    )


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything the hub declares. Declaring is idempotent; a queue that exists with other
    arguments stops start-up with a ConfigError saying which.

    `group_size` is each quorum queue's initial number of members
    (`x-quorum-initial-group-size`; RabbitMQ uses all nodes when it exceeds the cluster's
    size, None leaves the broker's default). It matters only when a queue is created, so a
    queue that already exists with another size, or none (made by an earlier hub), is
    declared without it and keeps its members: `queue_group_size_kept` says so, and
    `rabbitmq-queues grow` changes its membership (README, "Broker cluster")."""

    endpoints: Sequence[str]
    retry_delays: Sequence[int]
    group_size: int | None = DEFAULT_GROUP_SIZE

    def declare(self, connection: Connection) -> None:
        channel = connection.channel()
        try:
            for exchange in self._exchanges():
                exchange(channel).declare()
            for queue, extra_bindings in self._queues():
                channel = self._declare_queue(connection, channel, queue)
                bound = queue(channel)
                for exchange_name, key in extra_bindings:
                    bound.bind_to(exchange=exchange_name, routing_key=key)
        except connection.channel_errors as exc:
            raise ConfigError(
                [
                    f"RabbitMQ refused the hub's topology ({exc}); a queue or exchange probably "
                    "exists with other arguments: delete it or rename it"
                ]
            ) from exc
        except connection.connection_errors as exc:
            raise TransientError(f"cannot declare topology: broker unreachable ({exc})") from exc
        finally:
            try:
                channel.close()
            except connection.connection_errors:
                pass  # the connection went with it: the error above says so

    def _declare_queue(self, connection: Connection, channel: Any, queue: Queue) -> Any:
        """Declares `queue`; returns the channel to carry on with (a refusal closes one)."""
        try:
            queue(channel).declare()
            return channel
        except connection.channel_errors as exc:
            if GROUP_SIZE_ARG not in str(exc):
                raise
        # The queue exists with another initial group size (or none): that argument only
        # counts at creation, so declare it without, keeping every other argument checked.
        given: dict[str, Any] = getattr(queue, "queue_arguments", None) or {}
        args = {k: v for k, v in given.items() if k != GROUP_SIZE_ARG}
        channel = connection.channel()
        try:
            Queue(**{**queue.as_dict(), "queue_arguments": args})(channel).declare()
        except connection.channel_errors as exc:
            if GROUP_SIZE_ARG not in str(exc):
                raise
            # It was made with a size of its own: a passive declare only checks it exists.
            channel = connection.channel()
            channel.queue_declare(queue=queue.name, passive=True)
        log.warning(
            "queue_group_size_kept",
            queue=queue.name,
            wanted=self.group_size,
            hint="the queue existed before; see its members with `rabbitmq-queues "
            "quorum_status` and add some with `rabbitmq-queues grow`",
        )
        return channel

    def _exchanges(self) -> list[Exchange]:
        names = [
            UNROUTED_EXCHANGE,
            ALERTS_EXCHANGE,
            OUTCOMES_EXCHANGE,
            WORK_EXCHANGE,
            DLQ_EXCHANGE,
            *(retry_exchange(d) for d in self.retry_delays),
        ]
        return [declared_exchange(n) for n in names]

    def all_queue_names(self) -> list[str]:
        return [q.name for q, _ in self._queues()]

    def _queues(self) -> Iterable[tuple[Queue, list[tuple[str, str]]]]:
        group = {} if self.group_size is None else {GROUP_SIZE_ARG: self.group_size}
        yield (
            Queue(
                UNROUTED_QUEUE,
                exchange=declared_exchange(UNROUTED_EXCHANGE),
                durable=True,
                queue_arguments=_quorum(**group),
            ),
            [],
        )
        for kind, name in ALERT_QUEUES.items():
            # Bound to the justice side's topic exchange, and to hub.work for retries/replays.
            yield _work_queue(name, "intake", group), [(ALERTS_EXCHANGE, f"{kind}.#")]
        yield _work_queue(OUTCOMES_INBOUND_QUEUE, "outcome", group), []
        for endpoint in self.endpoints:
            yield _work_queue(delivery_queue(endpoint), "deliver", group), []
        for stage in STAGES:
            yield (
                Queue(
                    dlq_queue(stage),
                    exchange=declared_exchange(DLQ_EXCHANGE),
                    routing_key=stage,
                    durable=True,
                    queue_arguments=_quorum(**group),
                ),
                [],
            )
        for delay in self.retry_delays:
            # Messages wait out the TTL here, then the broker dead-letters them back to
            # hub.work under their original routing key (the queue they came from).
            yield (
                Queue(
                    f"hub.retry.{delay}s",
                    exchange=declared_exchange(retry_exchange(delay)),
                    durable=True,
                    queue_arguments=_quorum(
                        **group,
                        **{
                            "x-message-ttl": delay * 1000,
                            "x-dead-letter-exchange": WORK_EXCHANGE,
                            "x-dead-letter-strategy": "at-least-once",
                            "x-overflow": "reject-publish",
                        },
                    ),
                ),
                [],
            )
