"""The follow-up intake's functional core: pure functions that decide, from the follow-up, the
alert and referrals the ledger holds, the route decision on an update's new content and the
clock value, which services get the follow-up, which are newly sent the referral, what consent
they are told and what the journey records. The shell (hub/stages/follow_ups.py) does the I/O.
Whether a queued follow-up waits behind its referral, or is withheld, is the delivery stage's
(hub/stages/delivery_plan.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from hub.messages import ChangeKind, FollowUp
from hub.records import AlertState, ChangeState, ConsentFacts, ReferralRecord, Seen
from hub.routes.rules import RouteDecision
from hub.security.ids import IdKey
from hub.transforms.consent_rules import consent_facts, consent_to_tell
from hub.transforms.followup_to_bundle import CANCELLED_STATUS
from hub.transforms.referral_ids import followup_ids, referral_ids

EVENTS = {
    ChangeKind.UPDATE: "alert_updated",
    ChangeKind.CANCELLATION: "alert_cancelled",
    ChangeKind.CONSENT: "consent_updated",
}


class ChangeAction(StrEnum):
    CONFLICT = "conflict"  # the change id was used for another body: rejected
    DUPLICATE = "duplicate"  # applied already: nothing more to do
    PARKED = "parked"  # its alert was parked: rejected
    WAIT = "wait"  # its alert is recorded but not yet routed: retried later
    APPLY = "apply"


def plan_change(seen: Seen, change_state: ChangeState, alert_state: AlertState) -> ChangeAction:
    """What to do with a follow-up, given what the ledger said when it was recorded."""
    if seen is Seen.CONFLICT:
        return ChangeAction.CONFLICT
    if seen is Seen.DUPLICATE and change_state is ChangeState.APPLIED:
        return ChangeAction.DUPLICATE
    if alert_state is AlertState.PARKED:
        return ChangeAction.PARKED
    if alert_state is not AlertState.ROUTED:
        # A crash between recording the alert and queueing its referrals: the alert's own
        # redelivery finishes that; this follow-up waits for it rather than overtaking it.
        return ChangeAction.WAIT
    return ChangeAction.APPLY


@dataclass(frozen=True, slots=True)
class FollowUpJob:
    message: ReferralRecord
    # True: the follow-up rendered for the endpoint; False: the referral itself (an update's
    # alert), for a service the update selects for the first time.
    is_follow_up: bool


@dataclass(frozen=True, slots=True)
class FollowUpPlan:
    jobs: tuple[FollowUpJob, ...]
    added: dict[str, int]  # endpoints newly sent the referral → their service level (seconds)

    @property
    def messages(self) -> list[ReferralRecord]:
        return [job.message for job in self.jobs]


def newly_selected(decision: RouteDecision, have: Collection[str]) -> dict[str, int]:
    """Endpoints the new content selects that have no referral yet, with their service
    levels (seconds)."""
    return {e: decision.service_levels[e] for e in decision.endpoints if e not in have}


def plan_follow_up(
    follow_up: FollowUp,
    *,
    referrals: Sequence[ReferralRecord],
    alert_cancelled: bool,
    endpoints: Collection[str],
    decision: RouteDecision | None,
    id_key: IdKey,
    now: datetime,
) -> FollowUpPlan:
    """Which services get this follow-up (those holding the referral, still configured in
    `endpoints`), and, for an update (`decision` on its new content), which services are sent
    the referral for the first time."""
    have = list(dict.fromkeys(r.endpoint for r in referrals if r.kind == "new"))
    if alert_cancelled:  # a second cancellation: the services already have the first
        have = []
    jobs: list[FollowUpJob] = []
    for endpoint in have:
        if endpoint not in endpoints:
            continue  # removed from the configuration since: nothing to send it with
        ids = followup_ids(id_key, follow_up.alert_id, endpoint, follow_up.change_id)
        message = ReferralRecord(
            bundle_id=ids.bundle_id,
            alert_id=follow_up.alert_id,
            endpoint=endpoint,
            request_id=ids.request_id,
            kind=str(follow_up.kind),
            change_id=follow_up.change_id,
        )
        jobs.append(FollowUpJob(message, is_follow_up=True))
    added: dict[str, int] = {}
    if follow_up.alert is not None and decision is not None:
        added = newly_selected(decision, have)
        for endpoint, service_level in added.items():
            ids = referral_ids(id_key, follow_up.alert_id, endpoint)
            referral = ReferralRecord(
                bundle_id=ids.bundle_id,
                alert_id=follow_up.alert_id,
                endpoint=endpoint,
                request_id=ids.request_id,
                due_at=now + timedelta(seconds=service_level),
            )
            jobs.append(FollowUpJob(referral, is_follow_up=False))
    return FollowUpPlan(jobs=tuple(jobs), added=added)


def follow_up_to_tell(follow_up: FollowUp, in_force: ConsentFacts | None) -> FollowUp:
    """`follow_up` as the services are told it: carrying the consent in force (an update's
    alert too), which is the follow-up's own unless it lost to an earlier-received one. The
    follow-up as it came when the ledger applied no consent (`in_force` None)."""
    if in_force is None:
        return follow_up
    assert follow_up.consent is not None  # the ledger returns a consent only when given one
    consent = consent_to_tell(follow_up.consent, in_force)
    alert = None if follow_up.alert is None else replace(follow_up.alert, consent=consent)
    return replace(follow_up, consent=consent, alert=alert)


def follow_up_event(
    follow_up: FollowUp, plan: FollowUpPlan, in_force: ConsentFacts | None
) -> tuple[str, dict[str, object]]:
    """The journey event a follow-up applied records: its name and detail."""
    detail: dict[str, object] = {
        "change_id": follow_up.change_id,
        "endpoints": [m.endpoint for m in plan.messages if m.kind != "new"],
    }
    if plan.added:
        detail["added_endpoints"] = list(plan.added)
    if follow_up.cancellation is not None:
        detail["reason"] = str(follow_up.cancellation)
        detail["status"] = CANCELLED_STATUS[follow_up.cancellation]
    if follow_up.update_reason is not None:
        detail["reason"] = str(follow_up.update_reason)
    consent = follow_up.consent
    if consent is not None and in_force is not None:
        detail["consent_status"] = in_force.status
        detail["share_with_justice"] = in_force.share_with_justice
        if consent_facts(consent) != in_force:
            detail["consent_outranked"] = True
    return EVENTS[follow_up.kind], detail
