"""A service's outcome as it arrives over HTTP, decided without HTTP: which referral it answers,
whether the (already authenticated) caller may answer it, whether it can be read and mapped,
and what is published (queued on hub.outcomes.inbound for stages/outcomes.py) or parked (on
hub.dlq.outcome, for operators). hub/adapters/inbound/api.py turns the `InboundResult` into an
HTTP answer; nothing here knows starlette or status codes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hub.errors import InvalidMessage, TransientError
from hub.log import bind_correlation, get_logger
from hub.messages import Problem, Recipient
from hub.ports import Publisher
from hub.ports_ledger import OutcomeLedger
from hub.security.allowlists import KNOWN_FIELDS
from hub.security.masking import json_depth
from hub.transforms.response_to_outcome import parse_service_response
from hub.wire import (
    DLQ_EXCHANGE,
    H_ALERT_ID,
    H_ATTEMPTS,
    H_ENDPOINT,
    H_ERROR,
    H_ERROR_CLASS,
    H_FIRST_FAILURE,
    H_HTTP_STATUS,
    H_LAST_FAILURE,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_PROBLEMS,
    H_STAGE,
    OUTCOMES_INBOUND_QUEUE,
    WORK_EXCHANGE,
)

log = get_logger("hub.api")

FHIR_JSON = "application/fhir+json"
MAX_JSON_DEPTH = 32  # a BaRS response Bundle nests about 10 deep


class Verdict(StrEnum):
    QUEUED = "queued"  # durably queued on hub.outcomes.inbound
    UNREADABLE = "unreadable"  # not JSON, or nested too deep: parked
    UNMAPPABLE = "unmappable"  # JSON, but not a response the hub can map: parked
    NOT_FOUND = "not_found"  # no such referral, or one not sent to the caller (same answer)
    WRONG_SENDER = "wrong_sender"  # the Bundle's sender is not the referral's recipient
    NOT_QUEUED = "not_queued"  # the broker did not confirm: the caller should retry


@dataclass(frozen=True)
class InboundResult:
    verdict: Verdict
    text: str = ""  # for the caller: the problems (never another service's name)


def path_for_log(path: str) -> str:
    """A problem's path with every key that is not a known FHIR element replaced: pydantic's
    paths hold the keys the service sent, and a key can quote a person as well as a value."""
    parts = []
    for part in path.split(".")[:20]:
        name, _, index = part.partition("[")
        known = name in KNOWN_FIELDS or name in ("Bundle", "$")
        parts.append((name if known else "[key]") + (f"[{index}" if index else ""))
    return ".".join(parts)[:200]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class InboundOutcomes:
    """Takes the body, the request's headers (lower-case names; `x-request-id` is required) and
    the endpoints the caller authenticated as."""

    def __init__(
        self,
        *,
        ledger: OutcomeLedger,
        publisher: Publisher,
        recipients: Mapping[str, Recipient],
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.recipients = recipients
        self.clock = clock

    def receive(
        self, body: bytes, headers: Mapping[str, str], caller: frozenset[str]
    ) -> InboundResult:
        try:
            bundle = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            problem = Problem("$", "body is not a JSON document")
            self._park(body, [problem], caller)
            return InboundResult(Verdict.UNREADABLE, problem.problem)
        except RecursionError:  # nested past Python's own limit
            bundle = None
        if bundle is None or json_depth(bundle, limit=MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            problem = Problem("$", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            self._park(body, [problem], caller)
            return InboundResult(Verdict.UNREADABLE, problem.problem)
        try:
            response = parse_service_response(bundle)
        except InvalidMessage as exc:
            self._park(body, exc.problems, caller)
            text = "; ".join(f"{p.path}: {p.problem}" for p in exc.problems)
            return InboundResult(Verdict.UNMAPPABLE, text)
        referral = self.ledger.get_referral(response.response_to)
        if referral is None:
            return InboundResult(Verdict.NOT_FOUND)
        bind_correlation(referral.alert_id)
        if referral.endpoint not in caller:
            # The same answer as for a referral that does not exist: a 403 would tell one trust
            # that an alert also went somewhere else (DESIGN.md, "Trust boundary").
            log.warning(
                "outcome_from_other_service",
                alert_id=referral.alert_id,
                endpoint=referral.endpoint,
                authenticated_as=sorted(caller),
            )
            return InboundResult(Verdict.NOT_FOUND)
        recipient = self.recipients.get(referral.endpoint)
        if recipient is None or recipient.ods_code != response.sender_ods:
            log.warning(
                "outcome_from_wrong_service", alert_id=referral.alert_id, endpoint=referral.endpoint
            )
            return InboundResult(Verdict.WRONG_SENDER, "the sender did not receive this referral")
        try:
            self.publisher.publish(
                exchange=WORK_EXCHANGE,
                routing_key=OUTCOMES_INBOUND_QUEUE,
                body=body,
                headers={
                    H_ALERT_ID: referral.alert_id,
                    "x-hub-received-request-id": headers["x-request-id"],
                },
                message_id=response.message_id,
                correlation_id=referral.alert_id,
                content_type=FHIR_JSON,
            )
        except TransientError:
            log.error("outcome_not_queued", alert_id=referral.alert_id)
            return InboundResult(Verdict.NOT_QUEUED, "could not queue the message; retry")
        log.info(
            "service_response_queued",
            alert_id=referral.alert_id,
            endpoint=referral.endpoint,
            status=str(response.status),
        )
        return InboundResult(Verdict.QUEUED, "queued")

    def _park(self, body: bytes, problems: Sequence[Problem], caller: frozenset[str]) -> None:
        """An authenticated service's response the hub cannot read or map: refused to the
        service (4xx) and parked on hub.dlq.outcome with every problem, so operators see it in
        `hub failed` and may replay it (to hub.outcomes.inbound) once the cause is fixed."""
        now = self.clock().isoformat().replace("+00:00", "Z")
        headers: dict[str, Any] = {
            H_STAGE: "outcome",
            H_ERROR_CLASS: "InvalidMessage",
            H_ERROR: "the service's response could not be mapped: "
            + "; ".join(p.path for p in problems)[:1500],
            H_PROBLEMS: json.dumps([p.as_dict() for p in problems]),
            H_ATTEMPTS: 1,
            H_FIRST_FAILURE: now,
            H_LAST_FAILURE: now,
            H_ORIGINAL_EXCHANGE: WORK_EXCHANGE,
            H_ORIGINAL_ROUTING_KEY: OUTCOMES_INBOUND_QUEUE,
            H_ORIGINAL_QUEUE: OUTCOMES_INBOUND_QUEUE,
            H_HTTP_STATUS: 422,
        }
        if len(caller) == 1:
            headers[H_ENDPOINT] = next(iter(caller))
        try:
            self.publisher.publish(
                exchange=DLQ_EXCHANGE,
                routing_key="outcome",
                body=body,
                headers=headers,
                content_type=FHIR_JSON,
            )
        except TransientError as exc:  # the service is told anyway; it may send it again
            log.warning("service_response_not_parked", reason=exc.message)
            return
        log.warning(
            "service_response_refused",
            endpoint=headers.get(H_ENDPOINT),
            problem_count=len(problems),
            paths=[path_for_log(p.path) for p in problems[:20]],
        )
