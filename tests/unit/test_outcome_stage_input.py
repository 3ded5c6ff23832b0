"""The outcome stage refuses a body it cannot read as an invalid message (parked, never a
crash), however deeply it is nested."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.adapters.memory.ledger import MemoryLedger
from hub.errors import InvalidMessage
from hub.security.ids import IdKey
from hub.stages.outcomes import OutcomeStage
from hub.wire import Envelope

ID_KEY = IdKey.of("unit-test-id-key-" + "k" * 32)


pytestmark = pytest.mark.unit


@pytest.mark.parametrize("body", [b"[" * 50_000, b'{"a":' * 30_000, b"\xff", b"{"])
def test_an_unreadable_service_response_is_an_invalid_message(body: bytes) -> None:
    stage = OutcomeStage(
        ids=ID_KEY,
        ledger=MemoryLedger(),
        publisher=None,  # type: ignore[arg-type]
        recipients={},
        clock=lambda: datetime(2026, 11, 23, tzinfo=UTC),
    )
    envelope = Envelope(
        body=body,
        queue="hub.outcomes.inbound",
        exchange="hub.work",
        routing_key="hub.outcomes.inbound",
        headers={},
        message_id=None,
        user_id=None,
        content_type="application/fhir+json",
    )

    with pytest.raises(InvalidMessage):
        stage.process(envelope)
