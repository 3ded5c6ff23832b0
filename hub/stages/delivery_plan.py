"""The delivery stage's functional core: pure functions that decide, from the referral the
ledger holds, its siblings for the same endpoint and the Sender's verdict, whether a delivery
job is sent, waits behind the messages queued before it, or is withheld, what each attempt is
recorded as, and which outcome the justice side is told. The shell (hub/stages/delivery.py)
does the I/O; how often a transient failure is retried before it is dead-lettered is the
Dispatcher's (hub/pipeline.py RetryPolicy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from hub.errors import CircuitOpen, PermanentError, TransientError
from hub.messages import OutcomeStatus
from hub.records import ReferralRecord, ReferralState


class Start(StrEnum):
    RETELL = "retell"  # delivered already: only make sure the justice side heard
    SKIP = "skip"  # withheld already: nothing to do
    SEND = "send"  # a referral's first attempt: sent without the cancellation check
    CHECK = "check"  # a retry, replay or follow-up: plan_send decides


def plan_start(referral: ReferralRecord, *, retried: bool) -> Start:
    """What a delivery job needs first. `retried`: the job carries an attempt count (a retry
    or replay). A referral's first attempt skips the cancellation check (one query per referral
    at full speed): a cancellation applied since then waits for it and follows it. Retries and
    replays are checked, so a referral cancelled while it waited, or replayed after, is never
    sent."""
    if referral.state is ReferralState.DELIVERED:
        return Start.RETELL
    if referral.state is ReferralState.WITHHELD:
        return Start.SKIP
    if referral.kind == "new" and not retried:
        return Start.SEND
    return Start.CHECK


@dataclass(frozen=True, slots=True)
class Send:
    pass


@dataclass(frozen=True, slots=True)
class Withhold:
    reason: str  # a code, recorded as the attempt's detail and the event's reason


@dataclass(frozen=True, slots=True)
class Wait:
    waiting_for: tuple[str, ...]  # bundle ids of the messages queued before this one


SendPlan = Send | Withhold | Wait


def plan_send(
    referral: ReferralRecord, *, alert_cancelled: bool, siblings: Sequence[ReferralRecord]
) -> SendPlan:
    """Send now, wait (send later, after the messages queued before it for this endpoint: a
    follow-up never overtakes the referral it is about, even while that one waits in a retry
    queue), or withhold (never send). `siblings`: the alert's messages for this endpoint (only
    read for a follow-up)."""
    if referral.kind == "new":
        return Withhold("alert_cancelled") if alert_cancelled else Send()
    original = next((r for r in siblings if r.kind == "new"), None)
    if original is None or original.state in (ReferralState.FAILED, ReferralState.WITHHELD):
        return Withhold("referral_not_delivered")
    created = referral.created_at
    earlier = [
        r
        for r in siblings
        if r.state is ReferralState.QUEUED
        and r.bundle_id != referral.bundle_id
        and (r.kind == "new" or (created and r.created_at and r.created_at < created))
    ]
    if earlier:
        return Wait(tuple(r.bundle_id for r in earlier))
    return Send()


def attempt_result(error: TransientError | PermanentError) -> str:
    """What a failed attempt is recorded as."""
    return "transient" if isinstance(error, TransientError) else "permanent"


def attempt_was_made(error: TransientError | PermanentError) -> bool:
    """Whether a failed attempt reached the service (is timed): an open circuit sent nothing."""
    return not isinstance(error, CircuitOpen)


def worth_a_quick_retry(error: BaseException) -> bool:
    """Transient, and the peer did not ask us to stay away for longer than a blip."""
    if not isinstance(error, TransientError) or isinstance(error, CircuitOpen):
        return False
    return error.retry_after is None or error.retry_after <= 2


def outcome_after_delivery(referral: ReferralRecord) -> OutcomeStatus | None:
    """The outcome the justice side is told once a message is delivered: `received` for the
    referral itself, nothing for a follow-up (it hears `received` once)."""
    return OutcomeStatus.RECEIVED if referral.kind == "new" else None
