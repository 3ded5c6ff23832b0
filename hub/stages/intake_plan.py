"""The intake stage's functional core: pure functions that decide, from the parsed alert, the
envelope, the route decision, the ledger's answer and the clock value, what the shell
(hub/stages/intake.py) does. No I/O here: the shell reads the ledger, calls these, then writes
the ledger and publishes, in that order.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from hub.contracts.identifiers import is_safe_id
from hub.messages import Alert, Problem
from hub.records import AlertFacts, AlertState, ReferralRecord, Seen
from hub.routes.rules import RouteDecision, RouteTable, select_endpoints
from hub.security.ids import IdKey
from hub.transforms.referral_ids import referral_ids
from hub.wire import (
    ALERTS_EXCHANGE,
    H_ORIGINAL_ROUTING_KEY,
    H_ORIGINAL_USER_ID,
    Envelope,
    header_str,
)

ORG_CODE = re.compile(r"[A-Z0-9]{3,10}")  # as the contracts' source.organisation.code


def safe_message_id(envelope: Envelope) -> str | None:
    """The AMQP message_id, only when it is shaped like an id (it is echoed to the sender and
    kept in the ledger)."""
    message_id = envelope.message_id
    return message_id if isinstance(message_id, str) and is_safe_id(message_id) else None


def publisher_routing_key(envelope: Envelope) -> str | None:
    """The routing key the broker delivered from justice.alerts: this delivery's own when it
    came from there; for a retry or replay (back through hub.work) the one the hub recorded in
    its sealed headers the first time (hub.security.provenance removed any it did not write).
    None when
    neither: a message that never came through justice.alerts."""
    if envelope.exchange == ALERTS_EXCHANGE:
        return envelope.routing_key
    return header_str(envelope.headers, H_ORIGINAL_ROUTING_KEY)


def publisher_user_id(envelope: Envelope) -> str | None:
    """The AMQP user_id RabbitMQ verified when the message came in from justice.alerts."""
    if envelope.exchange == ALERTS_EXCHANGE:
        return envelope.user_id
    return header_str(envelope.headers, H_ORIGINAL_USER_ID)


def source_from_routing_key(envelope: Envelope) -> tuple[str, str | None]:
    """(kind, organisation code) from `<custody|court>.<org>.<type>`, the routing key the
    broker delivered (publisher_routing_key). Kind falls back to the queue it arrived on."""
    key = publisher_routing_key(envelope) or ""
    parts = key.split(".")
    queue_kind = envelope.queue.rsplit(".", 1)[-1]
    kind = parts[0] if parts and parts[0] in ("custody", "court") else queue_kind
    org = parts[1] if len(parts) >= 3 and parts[1] else None
    return kind, org


def message_type_from_routing_key(envelope: Envelope) -> str | None:
    """The routing key's last word (`identification`, `update`, `cancellation`, `consent`), or
    None when the key does not have the documented three parts."""
    key = publisher_routing_key(envelope) or ""
    parts = key.split(".")
    return parts[2] if len(parts) == 3 and parts[2] else None


def envelope_problems(
    envelope: Envelope,
    *,
    message_id: str,
    organisation: str,
    org: str | None,
    source_users: Mapping[str, tuple[str, ...]],
) -> list[Problem]:
    """What is wrong with how a message arrived (empty: nothing). `message_id` is the body's
    own id (alert_id, update_id…); `organisation` the body's source organisation; `org` the
    routing key's."""
    problems = []
    if envelope.exchange == ALERTS_EXCHANGE and any(
        str(k).lower().startswith(("x-death", "x-first-death", "x-last-death"))
        for k in envelope.headers
    ):
        # Only the broker writes these, and only when it dead-letters a message, which it
        # never then delivers from justice.alerts: a publisher's would be believed later.
        problems.append(
            Problem("$headers", "x-death headers are the broker's; a publisher may not set them")
        )
    if envelope.message_id and envelope.message_id != message_id:
        problems.append(
            Problem("$message_id", "AMQP message_id does not match the message's own id")
        )
    if org is not None and org != organisation:
        problems.append(
            Problem(
                "source.organisation.code", "does not match the organisation in the routing key"
            )
        )
    if source_users:
        # RabbitMQ guarantees user_id equals the publishing connection's user, so this is
        # who really sent it; a mismatch is a spoofing attempt, parked like any bad alert.
        # Checked against the routing key's organisation (the broker's topic permissions
        # hold it to the user's own): what the body claims was compared with it above.
        allowed = source_users.get(org, ()) if org is not None else ()
        if publisher_user_id(envelope) not in allowed:
            problems.append(
                Problem(
                    "$user_id",
                    "publisher is not allowed to send alerts for this organisation "
                    "(AMQP user_id missing or not mapped to it in hub.yaml sources)",
                )
            )
    return problems


def alert_facts(alert: Alert, body: bytes, now: datetime) -> AlertFacts:
    """What the ledger keeps of an alert received at `now`."""
    return AlertFacts(
        alert_id=alert.alert_id,
        body_sha256=hashlib.sha256(body).hexdigest(),
        source_kind=str(alert.source.kind),
        organisation_code=alert.source.organisation.code,
        reference=alert.source.reference,
        pathway=str(alert.pathway),
        urgency=str(alert.urgency),
        consent_status=str(alert.consent.status),
        share_with_justice=alert.consent.share_with_justice,
        received_at=now,
        consent_recorded_at=alert.consent.recorded_at,
        vulnerability_types=tuple(sorted({str(v.type) for v in alert.vulnerabilities})),
    )


class IntakeAction(StrEnum):
    CONFLICT = "conflict"  # same alert_id, another body: rejected
    DUPLICATE = "duplicate"  # already routed: nothing more to do
    ROUTE = "route"  # new, or recorded but not yet routed (a crash in between): route it


def plan_intake(seen: Seen, state: AlertState) -> IntakeAction:
    """What to do with an alert, given what the ledger said when it was recorded."""
    if seen is Seen.CONFLICT:
        return IntakeAction.CONFLICT
    if seen is Seen.DUPLICATE and state is AlertState.ROUTED:
        return IntakeAction.DUPLICATE
    return IntakeAction.ROUTE


def route_decision(routes: RouteTable, alert: Alert) -> RouteDecision:
    """The routing rules applied to an alert's content."""
    return select_endpoints(
        routes,
        source_kind=str(alert.source.kind),
        organisation=alert.source.organisation.code,
        vulnerabilities=[str(v.type) for v in alert.vulnerabilities],
        pathway=str(alert.pathway),
        urgency=str(alert.urgency),
    )


@dataclass(frozen=True, slots=True)
class RoutePlan:
    referrals: tuple[ReferralRecord, ...]  # one per chosen endpoint, in the decision's order
    rule: str  # the matched rules' names, comma-joined, as the ledger keeps them
    decision: RouteDecision


def plan_referrals(
    alert: Alert, decision: RouteDecision, *, id_key: IdKey, now: datetime
) -> RoutePlan:
    """The referrals an alert gets: ids keyed by the hub's id key, each due by its endpoint's
    service level from `now`."""
    referrals = tuple(
        ReferralRecord(
            bundle_id=ids.bundle_id,
            alert_id=alert.alert_id,
            endpoint=endpoint,
            request_id=ids.request_id,
            due_at=now + timedelta(seconds=decision.service_levels[endpoint]),
        )
        for endpoint in decision.endpoints
        for ids in [referral_ids(id_key, alert.alert_id, endpoint)]
    )
    return RoutePlan(referrals=referrals, rule=",".join(decision.rules), decision=decision)
