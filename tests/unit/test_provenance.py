"""Which headers the hub believes (hub.security.provenance): its own `x-hub-*` headers,
sealed when it published them, and never anything in its namespace on a message straight from
justice.alerts.
The Dispatcher admits every envelope before a stage (or itself) reads a header."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.errors import InvalidMessage, TransientError
from hub.messages import Problem
from hub.pipeline import Dispatcher, RetryPolicy
from hub.security.ids import IdKey
from hub.security.provenance import H_SEAL, Provenance, SealingPublisher
from hub.stages.intake_plan import publisher_routing_key, publisher_user_id, source_from_routing_key
from hub.wire import Envelope
from tests.fixtures.stages import FailingStage

pytestmark = pytest.mark.unit

PROVENANCE = Provenance(IdKey.of("unit-test-id-key-" + "u" * 32).seal_key)
FORGED = {
    "x-hub-original-routing-key": "court.LMC01.identification",
    "x-hub-original-queue": "hub.outcomes.inbound",
    "x-hub-original-user-id": "court-system",
    "x-hub-endpoint": "wy-ld",
    "x-hub-attempts": 5,
    "X-Hub-Stage": "outcome",
}


def from_justice(headers: dict[str, Any], **changes: Any) -> Envelope:
    envelope = Envelope(
        body=b'{"schema": "ld.identification-alert/1"}',
        queue="hub.alerts.custody",
        exchange="justice.alerts",
        routing_key="custody.WYP01.identification",
        headers=headers,
        message_id="m-1",
        user_id="wyp-custody",
        content_type="application/json",
    )
    return dataclasses.replace(envelope, **changes)


def via_hub_work(headers: dict[str, Any], *, seal: bool) -> Envelope:
    envelope = from_justice(
        headers, exchange="hub.work", routing_key="hub.alerts.custody", user_id=None
    )
    if seal:
        sealed = PROVENANCE.seal(headers, body=envelope.body, message_id=envelope.message_id)
        envelope = dataclasses.replace(envelope, headers=sealed)
    return envelope


def test_every_hub_header_from_the_justice_side_is_removed_in_any_spelling() -> None:
    admitted = PROVENANCE.admit(from_justice({**FORGED, "x-custom": "kept"}))

    assert admitted.headers == {"x-custom": "kept"}


def test_a_hub_seal_does_not_make_a_justice_delivery_believed() -> None:
    sealed = PROVENANCE.seal(FORGED, body=from_justice({}).body, message_id="m-1")

    assert PROVENANCE.admit(from_justice(sealed)).headers == {}


def test_headers_the_hub_sealed_come_back_through_hub_work_intact() -> None:
    envelope = via_hub_work(FORGED, seal=True)

    assert PROVENANCE.admit(envelope) == envelope


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: dataclasses.replace(e, headers={**e.headers, "x-hub-attempts": 0}),
        lambda e: dataclasses.replace(e, headers={**e.headers, "x-hub-endpoint-2": "x"}),
        lambda e: dataclasses.replace(e, body=e.body + b" "),
        lambda e: dataclasses.replace(e, message_id="m-2"),
        lambda e: dataclasses.replace(e, headers={**e.headers, H_SEAL: "0" * 64}),
        lambda e: dataclasses.replace(e, headers={**e.headers, H_SEAL: 7}),
    ],
    ids=["value changed", "header added", "body changed", "message id", "seal", "seal type"],
)
def test_a_seal_that_does_not_hold_removes_every_hub_header(tamper: Any) -> None:
    envelope = tamper(via_hub_work({**FORGED, "x-other": 1}, seal=True))

    assert PROVENANCE.admit(envelope).headers == {"x-other": 1}


def test_a_seal_made_with_another_key_is_not_believed() -> None:
    other = Provenance(IdKey.of("another-id-key-" + "o" * 32).seal_key)
    envelope = via_hub_work(FORGED, seal=False)
    forged = other.seal(FORGED, body=envelope.body, message_id=envelope.message_id)

    assert PROVENANCE.admit(dataclasses.replace(envelope, headers=forged)).headers == {}


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20) | st.integers(), max_size=5))
def test_whatever_a_publisher_sends_no_hub_header_survives(headers: dict[str, Any]) -> None:
    admitted = PROVENANCE.admit(from_justice({**headers, **FORGED}))

    assert not any(str(k).lower().startswith("x-hub-") for k in admitted.headers)


def test_the_source_of_an_alert_is_the_routing_key_and_user_the_broker_delivered() -> None:
    admitted = PROVENANCE.admit(from_justice(FORGED))

    assert source_from_routing_key(admitted) == ("custody", "WYP01")
    assert publisher_user_id(admitted) == "wyp-custody"


def test_back_through_hub_work_the_source_is_the_hubs_sealed_record_or_unknown() -> None:
    sealed = PROVENANCE.admit(via_hub_work(FORGED, seal=True))
    unsealed = PROVENANCE.admit(via_hub_work(FORGED, seal=False))

    assert source_from_routing_key(sealed) == ("court", "LMC01")
    assert publisher_user_id(sealed) == "court-system"
    assert publisher_routing_key(unsealed) is None and publisher_user_id(unsealed) is None


# -- the Dispatcher admits before anyone reads a header ------------------------------------


@dataclass
class ListPublisher:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **message: Any) -> None:
        self.published.append(message)


@pytest.mark.parametrize(
    "error", [InvalidMessage([Problem("$", "bad")]), TransientError("ledger away")]
)
def test_failure_headers_record_where_the_broker_delivered_it_not_what_it_claimed(
    error: Exception,
) -> None:
    stage = FailingStage(error)
    inner = ListPublisher()
    dispatcher = Dispatcher(
        stage,
        publisher=SealingPublisher(inner, PROVENANCE),
        retry=RetryPolicy(),
        provenance=PROVENANCE,
    )

    dispatcher(from_justice(FORGED))

    assert all(not any(k.lower().startswith("x-hub-") for k in e.headers) for e in stage.seen)
    (parked,) = inner.published
    headers = parked["headers"]
    assert headers["x-hub-original-exchange"] == "justice.alerts"
    assert headers["x-hub-original-routing-key"] == "custody.WYP01.identification"
    assert headers["x-hub-original-queue"] == "hub.alerts.custody"
    assert headers["x-hub-original-user-id"] == "wyp-custody"
    assert headers["x-hub-attempts"] == 1 and headers["x-hub-stage"] == "intake"
    assert "x-hub-endpoint" not in headers and "X-Hub-Stage" not in headers
    # and what the hub wrote is sealed: it is believed when it comes back
    back = Envelope(
        body=parked["body"],
        queue="hub.alerts.custody",
        exchange="hub.work",
        routing_key="hub.alerts.custody",
        headers=headers,
        message_id=parked["message_id"],
        user_id=None,
        content_type="application/json",
    )
    assert PROVENANCE.sealed_by_hub(back)
