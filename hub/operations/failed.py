"""What an operator can do with parked failures and the ledger: list, show (masked unless
revealed, and a reveal is audited), replay, discard, and trace one referral by any of its ids.

No click and no adapters built here: the store, ledger, publisher and clock come in as
arguments, so `hub.cli` is a thin shell and tests drive these functions directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hub.log import scrub_text
from hub.ports import FailedStore, Publisher
from hub.records import FailedMessage, FailedState
from hub.security.allowlists import CODE, CONTENT_TYPE, HUB_NAME, UUID
from hub.security.mask_spec import HIDDEN, Leaf
from hub.security.masking import mask_headers, shown_or_hidden, view_body
from hub.security.provenance import H_SEAL, is_hub_header
from hub.stages.dead_letters import origin_queue_allowed
from hub.wire import (
    ALERT_QUEUES,
    ALERTS_EXCHANGE,
    H_ALERT_ID,
    H_ATTEMPTS,
    H_BUNDLE_ID,
    H_ENDPOINT,
    H_ERROR,
    H_ORIGINAL_EXCHANGE,
    H_ORIGINAL_QUEUE,
    H_ORIGINAL_ROUTING_KEY,
    H_ORIGINAL_USER_ID,
    H_PROBLEMS,
    H_REPLAYED_FROM,
    H_REQUEST_ID,
    WORK_EXCHANGE,
    delivery_queue,
)

# The hub's own words about a failure (its error, the contract's problems): shown scrubbed.
# A service's OperationOutcome text is its own words, and may quote the person: hidden.
_HUB_TEXT_HEADERS = (H_ERROR, H_PROBLEMS)
# What a replayed message carries, and nothing else: the ids a stage needs (delivery reads the
# alert, Bundle and request ids), and for an alert who sent it (intake reads the routing key and
# the AMQP user the broker first delivered it with). No failure headers: the message starts its
# retries afresh (a kept first-failure time would put it straight past the retry deadline).
_CARRIED_HEADERS = (H_ALERT_ID, H_BUNDLE_ID, H_REQUEST_ID)


class OperationRefused(Exception):
    """The operator asked for something the hub will not do (no reason, unknown id…)."""


# -- selecting ----------------------------------------------------------------------------


def select_ids(
    store: FailedStore, *, ids: Sequence[int] = (), group: str | None = None
) -> list[int]:
    """The failed ids an action applies to: the ids given, or every still-failed message of
    a group (key or key prefix). Unknown ids are refused, not skipped."""
    if bool(ids) == bool(group):
        raise OperationRefused("give message ids or --group, not both and not neither")
    if group:
        return [m.id for m in store.list(group=group, state=FailedState.FAILED)]
    unknown = [i for i in ids if store.get(i) is None]
    if unknown:
        raise OperationRefused(f"no failed message with id {', '.join(map(str, unknown))}")
    return list(dict.fromkeys(ids))


_AGE_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: datetime) -> datetime:
    """`--since`: an ISO time (UTC if no offset) or an age such as 30m, 6h, 2d."""
    text = text.strip()
    unit = _AGE_UNITS.get(text[-1:].lower())
    if unit and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * unit)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OperationRefused(f"--since {text!r}: use an ISO time or an age like 6h") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- viewing ------------------------------------------------------------------------------


def summary(message: FailedMessage) -> dict[str, Any]:
    """One line of `hub failed list`: ids, codes and a scrubbed error, no message content."""
    f = message.failure
    return {
        "id": message.id,
        "state": str(message.state),
        "stage": f.stage,
        "endpoint": f.endpoint,
        "error_class": f.error_class,
        "error": scrub_text(f.error_message),
        "http_status": f.http_status,
        "attempts": f.attempts,
        "last_failure": f.last_failure.isoformat(),
        "alert_id": f.alert_id if f.alert_id is None else shown_or_hidden(f.alert_id, UUID),
        "group": f.group_key[:12],
    }


def show(
    store: FailedStore,
    failed_id: int,
    *,
    reveal: bool = False,
    by: str | None = None,
    now: datetime,
    reason: str = "show --reveal",
) -> dict[str, Any]:
    """Everything about one failed message, personal data masked unless `reveal` (which
    needs an operator name and is written to the audit log first)."""
    message = store.get(failed_id)
    if message is None:
        raise OperationRefused(f"no failed message with id {failed_id}")
    if reveal:
        if not by:
            raise OperationRefused("revealing personal data needs an operator name (--as)")
        store.audit("reveal", [failed_id], by=by, reason=reason, at=now)
    f = message.failure
    headers = dict(f.headers) if reveal else _masked_headers(f.headers)
    view = summary(message)
    view.update(
        {
            "group": f.group_key,
            "error": f.error_message if reveal else scrub_text(f.error_message),
            "first_failure": f.first_failure.isoformat(),
            "original_exchange": _maybe(f.original_exchange, HUB_NAME, reveal),
            "original_routing_key": _maybe(f.original_routing_key, HUB_NAME, reveal),
            "original_queue": _maybe(f.original_queue, HUB_NAME, reveal),
            "operation_outcome": f.operation_outcome
            if reveal or not f.operation_outcome
            else HIDDEN,
            "message_id": _maybe(f.message_id, CODE, reveal),
            "content_type": _maybe(f.content_type, CONTENT_TYPE, reveal),
            "received_at": message.received_at.isoformat(),
            "state_by": message.state_by,
            "state_reason": message.state_reason,
            "masked": not reveal,
            "headers": headers,
            "body": view_body(f.body, reveal=reveal),
            "audit": [
                {"at": a.at.isoformat(), "action": a.action, "by": a.by, "reason": a.reason}
                for a in store.audit_log(failed_id)
            ],
        }
    )
    return view


def _maybe(value: str | None, leaf: Leaf, reveal: bool) -> str | None:
    return value if reveal or value is None else shown_or_hidden(value, leaf)


def _masked_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers by the allowlist (hub.security.allowlists.HEADERS); the hub's own failure text
    scrubbed."""
    masked = mask_headers(headers)
    for key in _HUB_TEXT_HEADERS:
        if isinstance(headers.get(key), str):
            masked[key] = scrub_text(headers[key])
    return masked


# -- acting -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionResult:
    done: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # id → why


def replay_headers(message: FailedMessage) -> dict[str, Any]:
    """The headers of a replay: rebuilt from what the hub recorded (the row's origin fields,
    and the ids it sealed), never copied wholesale from the parked message."""
    f = message.failure
    stored = f.headers
    headers: dict[str, Any] = {
        k: stored[k] for k in _CARRIED_HEADERS if isinstance(stored.get(k), str | int)
    }
    if H_SEAL in stored and isinstance(stored.get(H_ORIGINAL_USER_ID), str):
        # Kept only from a dead letter the hub had sealed (the ingester drops unsealed ones).
        headers[H_ORIGINAL_USER_ID] = stored[H_ORIGINAL_USER_ID]
    headers[H_ORIGINAL_QUEUE] = f.original_queue
    if f.original_exchange:
        headers[H_ORIGINAL_EXCHANGE] = f.original_exchange
    if f.original_routing_key:
        headers[H_ORIGINAL_ROUTING_KEY] = f.original_routing_key
    if f.endpoint:
        headers[H_ENDPOINT] = f.endpoint
    headers[H_ATTEMPTS] = 0
    headers[H_REPLAYED_FROM] = str(message.id)
    return headers


def replay_refusal(message: FailedMessage) -> str | None:
    """Why a parked message may not be replayed where its row says, or None. Checked again at
    replay time, whatever the row says: a message goes back only to the stage it failed in,
    an alert only to an alert queue (with the routing key it was published under), a referral
    only to the delivery queue of the endpoint recorded, a service response only to
    hub.outcomes.inbound."""
    f = message.failure
    queue = f.original_queue
    if not queue:
        return "the queue it came from is not known"
    if not origin_queue_allowed(f.stage, queue, None):
        return f"a {f.stage} failure cannot be replayed to {queue}"
    if f.stage == "deliver" and queue != (delivery_queue(f.endpoint) if f.endpoint else None):
        return f"a delivery to {f.endpoint or 'an unknown endpoint'} cannot go to {queue}"
    if f.stage == "intake":
        if H_SEAL not in f.headers and any(is_hub_header(k) for k in f.headers):
            # Stored before the hub sealed its headers: its x-hub-original-* may be a
            # publisher's, so who sent it is not known (look at it, then discard it).
            return "parked before the hub sealed its headers: who sent it is not known"
        key = (f.original_routing_key or "").split(".")
        if f.original_exchange != ALERTS_EXCHANGE or ALERT_QUEUES.get(key[0]) != queue:
            return "the routing key it was published under is not known"
    return None


def replay(
    store: FailedStore,
    publisher: Publisher,
    ids: Sequence[int],
    *,
    by: str,
    reason: str,
    now: datetime,
) -> ActionResult:
    """Republish each still-failed message, as it was first sent, to the queue it failed on
    (through hub.work), then mark it replayed and audit it. The message_id (alert or Bundle
    id) is kept, so the ledger and the receiver absorb a replay of something that had, after
    all, got through. A publish that is not confirmed stops the run: what was replayed so far
    is marked, the rest stays failed."""
    _need(by=by, reason=reason)
    result = ActionResult()
    for failed_id in ids:
        message = store.get(failed_id)
        if message is None:
            result.skipped[failed_id] = "unknown id"
            continue
        if message.state is not FailedState.FAILED:
            result.skipped[failed_id] = f"already {message.state}"
            continue
        refusal = replay_refusal(message)
        if refusal is not None:
            result.skipped[failed_id] = refusal
            continue
        queue = message.failure.original_queue
        assert queue is not None  # replay_refusal says why otherwise
        publisher.publish(
            exchange=WORK_EXCHANGE,
            routing_key=queue,
            body=message.failure.body,
            headers=replay_headers(message),
            message_id=message.failure.message_id,
            correlation_id=message.failure.alert_id,
            content_type=message.failure.content_type or "application/json",
        )
        # Marked one by one: a crash between publish and mark at worst leaves a replayed
        # message looking failed, and replaying it again is absorbed by the stable ids.
        result.done.extend(store.mark_replayed([failed_id], by=by, reason=reason, at=now))
    return result


def discard(
    store: FailedStore, ids: Sequence[int], *, by: str, reason: str, now: datetime
) -> ActionResult:
    """Give up on still-failed messages, saying who and why (kept, never deleted)."""
    _need(by=by, reason=reason)
    done = store.mark_discarded(ids, by=by, reason=reason, at=now)
    skipped = {}
    for failed_id in ids:
        if failed_id not in done:
            message = store.get(failed_id)
            skipped[failed_id] = "unknown id" if message is None else f"already {message.state}"
    return ActionResult(done=done, skipped=skipped)


def _need(*, by: str, reason: str) -> None:
    if not by or not by.strip():
        raise OperationRefused("an operator name is needed (--as NAME or HUB_OPERATOR)")
    if not reason or not reason.strip():
        raise OperationRefused("a reason is needed (--reason TEXT)")


# -- tracing ------------------------------------------------------------------------------
