"""Reading dead letters into the failed-message store (hub.dead_letters), on the in-memory store:
errors group by what they say rather than the ids they quote, a redelivered dead letter is one
row and acked again, and a store that is away leaves the message on its queue."""

from __future__ import annotations

from datetime import datetime

import pytest

from hub.adapters.memory_failed_store import MemoryFailedStore
from hub.adapters.rabbitmq import Disposition
from hub.dead_letters import DeadLetterIngester, normalise_error
from hub.errors import TransientError
from hub.ports import NewFailure
from tests.fixtures.dead_letters import T0, dead_letter

pytestmark = pytest.mark.unit


def test_errors_are_normalised_for_grouping() -> None:
    a = normalise_error("timeout after 10 s on 3f2a9c1e77 for a1b2c3d4-0000-4000-8000-00000000abcd")
    b = normalise_error("timeout after 9 s on 77c1d0ee42 for 11111111-2222-4333-8444-555555555555")
    assert a == b == "timeout after <n> s on <hex> for <uuid>"


def test_the_ingester_stores_a_dead_letter_once_and_acks_each_delivery_of_it() -> None:
    store = MemoryFailedStore()
    ingester = DeadLetterIngester(store, stage="deliver", clock=lambda: T0)
    envelope = dead_letter()

    assert ingester(envelope) is Disposition.ACK
    assert ingester(envelope) is Disposition.ACK  # the first ack was lost: redelivered

    (message,) = store.list()
    assert message.failure.body == envelope.body and message.received_at == T0


def test_the_ingester_leaves_a_dead_letter_queued_while_the_store_is_away() -> None:
    class AwayStore:
        def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
            raise TransientError("database away")

    ingester = DeadLetterIngester(AwayStore(), stage="deliver")  # type: ignore[arg-type]

    assert ingester(dead_letter()) is Disposition.REQUEUE
