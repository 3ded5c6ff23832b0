"""The Dispatcher's boundary is total: whatever the stage, its rejection and dead-letter handlers
or the publishes they make raise, the message ends parked (ack) or, when nothing durable could
be done, requeued; the exception never reaches the consumer thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import HubError, InvalidMessage, PermanentError, TransientError
from hub.messages import Problem
from hub.pipeline import Dispatcher, RetryPolicy
from hub.wire import DLQ_EXCHANGE, Disposition, Envelope
from tests.fixtures.dead_letters import PROVENANCE

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
INVALID = InvalidMessage([Problem("$", "not valid JSON")])


def envelope(**headers: Any) -> Envelope:
    return Envelope(
        body=b"{",
        queue="hub.alerts.custody",
        exchange="justice.alerts",
        routing_key="custody.WYP.identification",
        headers=headers,
        message_id="m" * 250,
        user_id=None,
        content_type=None,
    )


@dataclass
class Publisher:
    fail_with: Callable[[], BaseException] | None = None
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **kwargs: Any) -> None:
        if self.fail_with is not None:
            raise self.fail_with()
        self.published.append(kwargs)

    def parked(self) -> list[dict[str, Any]]:
        return [p for p in self.published if p["exchange"] == DLQ_EXCHANGE]


@dataclass
class Stage:
    error: Exception | None = None
    rejected_fails: Exception | None = None
    dead_letter_fails: Exception | None = None
    name: str = "intake"

    def process(self, envelope: Envelope) -> None:
        if self.error is not None:
            raise self.error

    def on_rejected(self, envelope: Envelope, error: InvalidMessage) -> None:
        if self.rejected_fails is not None:
            raise self.rejected_fails

    def on_dead_letter(self, envelope: Envelope, error: HubError) -> None:
        if self.dead_letter_fails is not None:
            raise self.dead_letter_fails


def dispatch(stage: Stage, publisher: Publisher, message: Envelope | None = None) -> Disposition:
    retry = RetryPolicy(delays=(1, 2), deadline=timedelta(hours=1))
    dispatcher = Dispatcher(
        stage, publisher=publisher, retry=retry, provenance=PROVENANCE, clock=lambda: NOW
    )
    return dispatcher(message or envelope())


def test_a_rejection_handler_that_raises_permanent_error_leaves_the_message_parked_once() -> None:
    publisher = Publisher()
    stage = Stage(error=INVALID, rejected_fails=PermanentError("alert_id too long"))

    assert dispatch(stage, publisher) is Disposition.ACK
    assert len(publisher.parked()) == 1


def test_a_dead_letter_handler_that_crashes_still_parks_the_message_saying_so() -> None:
    publisher = Publisher()
    stage = Stage(error=PermanentError("refused"), dead_letter_fails=KeyError("x"))

    assert dispatch(stage, publisher) is Disposition.ACK

    (parked,) = publisher.parked()
    assert parked["headers"]["x-hub-error-class"] == "Unexpected"
    assert "KeyError while disposing" in parked["headers"]["x-hub-error"]


def test_a_handler_crash_on_a_crashed_stage_still_parks_it() -> None:
    publisher = Publisher()
    stage = Stage(
        error=UnicodeEncodeError("utf-8", "x", 0, 1, "no"), dead_letter_fails=ValueError()
    )

    assert dispatch(stage, publisher) is Disposition.ACK
    assert len(publisher.parked()) == 1


def test_a_publish_that_fails_unexpectedly_requeues_the_message_instead_of_killing_the_thread() -> (
    None
):
    publisher = Publisher(fail_with=lambda: OverflowError("struct"))

    assert dispatch(Stage(error=INVALID), publisher) is Disposition.REQUEUE


def test_a_rejection_handler_that_cannot_reach_the_broker_requeues() -> None:
    publisher = Publisher()
    stage = Stage(error=INVALID, rejected_fails=TransientError("broker away"))

    assert dispatch(stage, publisher) is Disposition.REQUEUE


@pytest.mark.parametrize(
    "headers",
    [
        {"x-hub-attempts": "many", "x-hub-first-failure": "2026-11-23T09:00:00"},  # no zone
        {"x-hub-attempts": "9" * 5000, "x-hub-first-failure": "9999-12-31T23:59:59-05:00"},
        {"x-hub-attempts": [1], "x-hub-first-failure": b"\xff"},
    ],
)
def test_odd_failure_headers_do_not_stop_a_retry(headers: dict[str, Any]) -> None:
    publisher = Publisher()

    disposition = dispatch(Stage(error=TransientError("503")), publisher, envelope(**headers))

    assert disposition is Disposition.ACK
    assert [p["exchange"] for p in publisher.published] == ["hub.retry.1s"]


errors = st.sampled_from(
    [
        INVALID,
        TransientError("away"),
        PermanentError("refused"),
        RecursionError(),
        UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"),
        KeyError("k"),
        ValueError("v"),
        TypeError("t"),
        OverflowError("o"),
        MemoryError(),
    ]
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    error=st.none() | errors,
    rejected=st.none() | errors,
    dead_letter=st.none() | errors,
    publish=st.none() | errors,
    headers=st.dictionaries(
        st.sampled_from(["x-hub-attempts", "x-hub-first-failure", "x-hub-alert-id", "x-death"]),
        st.none() | st.integers() | st.text() | st.binary() | st.lists(st.integers()),
    ),
)
def test_whatever_raises_the_dispatcher_returns_a_disposition(
    error: Exception | None,
    rejected: Exception | None,
    dead_letter: Exception | None,
    publish: Exception | None,
    headers: dict[str, Any],
) -> None:
    publisher = Publisher(fail_with=(lambda: publish) if publish is not None else None)
    stage = Stage(error=error, rejected_fails=rejected, dead_letter_fails=dead_letter)

    disposition = dispatch(stage, publisher, envelope(**headers))

    assert disposition in (Disposition.ACK, Disposition.REQUEUE)
    if disposition is Disposition.ACK and error is not None:
        assert len(publisher.published) == 1  # parked, or sent for a delayed retry: once
