"""What every sender does with what it sent: refuse a job rendered for another kind, judge
an HTTP answer with the rule table."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.errors import PermanentError, TransientError
from hub.records import Delivered, DeliveryJob, HttpResult
from hub.transforms.http_answer import Verdict, classify


def _check_rendered_for(job: DeliveryJob, content_type: str, kind: str) -> None:
    """A job rendered for another kind (the endpoint's kind changed while jobs were queued)
    cannot be sent as it is: dead-letter it with a reason an operator can act on."""
    if job.content_type and job.content_type.split(";")[0] != content_type.split(";")[0]:
        raise PermanentError(
            f"delivery job holds {job.content_type.split(';')[0]}, not what a {kind} endpoint "
            f"sends ({content_type.split(';')[0]}); the endpoint's kind changed since it was "
            "routed: re-send the alert"
        )


def _judged(result: HttpResult, *, request_id: str, correlation_id: str, echo: bool) -> Delivered:
    judgement = classify(
        result,
        request_id=request_id,
        correlation_id=correlation_id,
        echo_required=echo,
        now=datetime.now(UTC),
    )
    if judgement.verdict is Verdict.TRANSIENT:
        raise TransientError(
            judgement.reason, retry_after=judgement.retry_after, status=result.status
        )
    if judgement.verdict is Verdict.PERMANENT:
        raise PermanentError(
            judgement.reason, operation_outcome=judgement.operation_outcome, status=result.status
        )
    return Delivered(answer=judgement.reason, status=result.status, elapsed_ms=result.elapsed_ms)
