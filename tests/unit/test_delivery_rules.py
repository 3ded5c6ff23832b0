"""The delivery rule table and the retry schedule: pure, judged row by row."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hub.pipeline import RetryPolicy
from hub.records import HttpResult
from hub.transforms.http_answer import Verdict, classify

pytestmark = pytest.mark.unit

RID, CID = "req-1", "corr-1"
ECHO = {"x-request-id": RID, "x-correlation-id": CID}


def oo(code: str, text: str = "") -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def judge(status: int, headers: dict[str, str] | None = None, body: bytes = b"{}") -> Verdict:
    result = HttpResult(
        status=status, headers=headers if headers is not None else ECHO, body=body, elapsed_ms=1.0
    )
    return classify(result, request_id=RID, correlation_id=CID).verdict


@pytest.mark.parametrize("status", [200, 201, 202])
def test_2xx_with_echo_headers_and_json_is_delivered(status: int) -> None:
    assert judge(status) is Verdict.DELIVERED


def test_2xx_without_the_bars_echo_headers_is_transient() -> None:
    assert judge(200, headers={}) is Verdict.TRANSIENT
    assert judge(200, headers={**ECHO, "x-request-id": "other"}) is Verdict.TRANSIENT


def test_2xx_with_an_unparsable_body_is_transient() -> None:
    assert judge(200, body=b"<html>") is Verdict.TRANSIENT


def test_409_duplicate_means_the_receiver_already_has_it() -> None:
    assert judge(409, body=oo("duplicate")) is Verdict.DELIVERED


def test_409_without_duplicate_is_permanent() -> None:
    assert judge(409, body=oo("conflict")) is Verdict.PERMANENT


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507])
def test_timeouts_throttling_and_server_errors_are_transient(status: int) -> None:
    assert judge(status) is Verdict.TRANSIENT


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301])
def test_other_answers_are_permanent_and_keep_the_operation_outcome(status: int) -> None:
    result = HttpResult(
        status=status, headers=ECHO, body=oo("invalid", "NHS number unknown"), elapsed_ms=1.0
    )
    judgement = classify(result, request_id=RID, correlation_id=CID)
    assert judgement.verdict is Verdict.PERMANENT
    assert "NHS number unknown" in (judgement.operation_outcome or "")


def test_retry_after_is_read_from_a_429() -> None:
    result = HttpResult(
        status=429, headers={**ECHO, "retry-after": "120"}, body=b"", elapsed_ms=1.0
    )
    assert classify(result, request_id=RID, correlation_id=CID).retry_after == 120


def test_retry_delays_grow_then_repeat_until_the_deadline() -> None:
    policy = RetryPolicy()
    first = datetime(2026, 11, 23, tzinfo=UTC)
    delays = [policy.next_delay(failures=n, first_failure=first, now=first) for n in range(1, 8)]
    assert delays == [10, 60, 600, 3600, 21600, 21600, 21600]
    assert (
        policy.next_delay(failures=20, first_failure=first, now=first + timedelta(hours=71)) is None
    )


def test_retry_after_picks_the_shortest_delay_at_least_as_long() -> None:
    policy = RetryPolicy()
    now = datetime(2026, 11, 23, tzinfo=UTC)
    assert policy.next_delay(failures=1, first_failure=now, now=now, retry_after=120) == 600
