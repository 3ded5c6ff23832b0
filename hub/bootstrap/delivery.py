"""Builds an endpoint's delivery stages: one per in-flight slot, each with its own sender of the
endpoint's kind behind the endpoint's shared circuit breaker. Wiring only; `Hub` spawns each
on the endpoint's delivery queue (hub/bootstrap/__init__.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from hub.adapters.http_client import Urllib3FhirClient
from hub.adapters.mllp import MllpSender
from hub.bootstrap.senders import sender_for, token_source_for
from hub.pipeline import Clock
from hub.ports import FhirClient, Metrics, Publisher
from hub.ports_ledger import DeliveryLedger
from hub.security.ids import IdKey
from hub.settings.types import EndpointConfig
from hub.stages.delivery import DeliveryStage
from hub.stages.endpoint_gate import CircuitSender, EndpointGate


def delivery_stages(
    name: str,
    endpoint: EndpointConfig,
    *,
    gate: EndpointGate,
    http: Callable[[], FhirClient],
    mllp: MllpSender,
    ledger: DeliveryLedger,
    publisher: Callable[[], Publisher],
    clock: Clock,
    ids: IdKey,
    metrics: Metrics | None,
    close_senders: list[Callable[[], None]],
) -> Iterator[DeliveryStage]:
    """`endpoint.max_in_flight` stages, made as they are taken. Each sends one request at a
    time, so the endpoint never has more than max_in_flight outstanding and a slow one blocks
    only itself. `http()` gives each slot its HTTP client (its own connection pool, so the
    slots never queue on one pool's lock). A sender that holds connections has its `close`
    added to `close_senders`."""
    tokens = token_source_for(endpoint)  # one OAuth2 token cache, shared by its consumers
    for _ in range(endpoint.max_in_flight):
        sender = sender_for(endpoint, http=http(), mllp=mllp, tokens=tokens)
        if (close := getattr(sender, "close", None)) is not None:
            close_senders.append(close)
        yield DeliveryStage(
            endpoint=name,
            recipient=endpoint.recipient,
            sender=CircuitSender(sender, gate.circuit, endpoint=name),
            ledger=ledger,
            publisher=publisher(),
            clock=clock,
            ids=ids,
            metrics=metrics,
        )


def http_clients(
    given: FhirClient | None, close_senders: list[Callable[[], None]]
) -> Callable[[], FhirClient]:
    """What gives each delivery slot its HTTP client: the one given (tests share theirs), else
    a new Urllib3FhirClient each, closed when the hub stops."""

    def one() -> FhirClient:
        if given is not None:
            return given
        client = Urllib3FhirClient()
        close_senders.append(client.close)
        return client

    return one
