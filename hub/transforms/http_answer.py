"""The HTTP rule table: how one HTTP answer from an endpoint is judged (delivered, transient,
permanent). Pure: the time comes in as `now`.

It is the single place an HTTP answer is judged, for both HTTP kinds (fhir-rest, webhook),
by the delivery stage (hub/stages/delivery.py):

| answer                                                        | verdict   |
|---------------------------------------------------------------|-----------|
| 2xx with X-Request-Id and X-Correlation-Id echoed, JSON body  | delivered |
| 2xx without the echo headers, or with an unparsable body      | transient |
| webhook only (echo_required=False): 2xx without the echo      | delivered |
| headers, and 2xx with an empty body (204) (BaRS headers are a |           |
| FHIR-receiver contract; a webhook receiver need not know it). |           |
| A non-empty body that is not JSON is still transient.         |           |
| 409 whose OperationOutcome has issue code `duplicate` (BaRS)  | delivered |
| 408, 429, 500, 502, 503, 504, any other 5xx                   | transient (Retry-After honoured) |
| connection refused / reset, timeout (raised by the client)   | transient |
| any other 4xx (and 1xx/3xx)                                   | permanent, OperationOutcome kept |
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from hub.records import (
    HttpResult,
)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# What of a service's OperationOutcome may enter an error message (and so a log line): its
# codes only, never its text, which may quote the person.
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _codes_only(codes: list[str]) -> str:
    return " ".join(dict.fromkeys(c for c in codes if _CODE.fullmatch(c)))[:200]


class Verdict(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    reason: str
    retry_after: float | None = None
    operation_outcome: str | None = None


def _operation_outcome(body: bytes) -> tuple[list[str], str | None]:
    """(issue codes, readable text) of an OperationOutcome body, if it is one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return [], None
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return [], None
    codes, texts = [], []
    for issue in doc.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        codes.append(str(issue.get("code", "")))
        details = issue.get("details") or {}
        coding = (details.get("coding") or [{}])[0] if isinstance(details, dict) else {}
        text = (
            issue.get("diagnostics")
            or (details.get("text") if isinstance(details, dict) else None)
            or coding.get("display")
        )
        code = coding.get("code") if isinstance(coding, dict) else None
        texts.append(" ".join(str(x) for x in (code, text) if x))
        if code:
            codes.append(str(code))
    return codes, "; ".join(t for t in texts if t) or None


def _retry_after(headers: Mapping[str, str], now: datetime | None) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        if now is None:  # an HTTP-date needs the caller's clock
            return None
        try:
            return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
        except (TypeError, ValueError):
            return None


def classify(
    result: HttpResult,
    *,
    request_id: str,
    correlation_id: str,
    echo_required: bool = True,
    now: datetime | None = None,
) -> Judgement:
    status = result.status
    if 200 <= status < 300:
        if echo_required and (
            result.headers.get("x-request-id") != request_id
            or result.headers.get("x-correlation-id") != correlation_id
        ):
            return Judgement(
                Verdict.TRANSIENT,
                f"HTTP {status} without the BaRS X-Request-Id/X-Correlation-Id echo",
            )
        if not echo_required and not result.body.strip():
            return Judgement(Verdict.DELIVERED, f"HTTP {status}")
        try:
            json.loads(result.body)
        except (ValueError, UnicodeDecodeError):
            return Judgement(Verdict.TRANSIENT, f"HTTP {status} with an unparsable body")
        return Judgement(Verdict.DELIVERED, f"HTTP {status}")
    codes, text = _operation_outcome(result.body)
    if status == 409 and "duplicate" in codes:
        return Judgement(
            Verdict.DELIVERED,
            "HTTP 409 duplicate: the receiver already has it",
            operation_outcome=text,
        )
    said = _codes_only(codes)
    reason = f"HTTP {status}" + (f": {said}" if said else "")
    if status in TRANSIENT_STATUSES or status >= 500:
        return Judgement(
            Verdict.TRANSIENT,
            reason,
            retry_after=_retry_after(result.headers, now),
            operation_outcome=text,
        )
    return Judgement(Verdict.PERMANENT, reason, operation_outcome=text)
