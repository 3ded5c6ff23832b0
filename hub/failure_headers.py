"""The headers a failed message carries to its retry queue or to hub.dlq.<stage>: how many
times it failed, when first and last, why, and where it came from. Read back by the Dispatcher
(hub/pipeline.py) on its next failure; pure, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hub.errors import HubError, InvalidMessage, PermanentError
from hub.wire import (
    H_ATTEMPTS,
    H_ENDPOINT,
    H_ERROR,
    H_ERROR_CLASS,
    H_FIRST_FAILURE,
    H_HTTP_STATUS,
    H_LAST_FAILURE,
    H_OPERATION_OUTCOME,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_ORIGINAL_USER_ID,
    H_PROBLEMS,
    H_STAGE,
    Envelope,
)


def attempts(headers: Mapping[str, Any]) -> int:
    """Failures so far (the hub's own header); anything odd in it counts as none."""
    value = headers.get(H_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int | str) or len(str(value)) > 9:
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def first_failure(headers: Mapping[str, Any], default: datetime) -> datetime:
    """When the message first failed (the hub's own header), else `default`."""
    return _parse_time(headers.get(H_FIRST_FAILURE), default)


def failure_headers(
    envelope: Envelope,
    error: HubError,
    *,
    stage: str,
    failures: int,
    first: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The envelope's headers (less the broker's x-death), with where it first came from and
    this failure added."""
    headers: dict[str, Any] = {
        k: v for k, v in envelope.headers.items() if not str(k).startswith("x-death")
    }
    headers.setdefault(H_ORIGINAL_EXCHANGE, envelope.exchange)
    headers.setdefault(H_ORIGINAL_ROUTING_KEY, envelope.routing_key)
    headers.setdefault(H_ORIGINAL_QUEUE, envelope.queue)
    if envelope.user_id:
        headers.setdefault(H_ORIGINAL_USER_ID, envelope.user_id)
    headers.update(
        {
            H_ATTEMPTS: failures,
            H_FIRST_FAILURE: _iso(first),
            H_LAST_FAILURE: _iso(now),
            H_ERROR_CLASS: type(error).__name__,
            H_ERROR: error.message[:2000],
            H_STAGE: stage,
        }
    )
    if error.endpoint:
        headers[H_ENDPOINT] = error.endpoint
    if error.status is not None:
        headers[H_HTTP_STATUS] = error.status
    if isinstance(error, PermanentError) and error.operation_outcome:
        headers[H_OPERATION_OUTCOME] = error.operation_outcome[:4000]
    if isinstance(error, InvalidMessage):
        headers[H_PROBLEMS] = json.dumps([p.as_dict() for p in error.problems])
    return headers


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, default: datetime) -> datetime:
    # An odd header (a time with no zone, past year 9999 in UTC…) reads as the default.
    try:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            return default
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return default
