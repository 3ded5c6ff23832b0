"""What the non-FHIR routes make of a follow-up (update, cancellation, consent update): the words
for statuses, reasons and consents, and what each kind must carry. The status a cancellation
sets is followup_to_bundle.CANCELLED_STATUS, so every route names the same one.

Pure data and checks: no I/O, no clock.
"""

from __future__ import annotations

from hub.messages import Alert, CancellationReason, ChangeKind, Consent, ConsentStatus, FollowUp

# Labels for the ServiceRequest.status values followup_to_bundle.CANCELLED_STATUS gives.
STATUS_LABELS = {"revoked": "Revoked", "entered-in-error": "Entered in error"}

CANCELLATION_LABELS: dict[CancellationReason, str] = {
    CancellationReason.PERSON_RELEASED: "Person released",
    CancellationReason.NO_LONGER_REQUIRED: "No longer required",
    CancellationReason.RAISED_IN_ERROR: "Raised in error",
}

# A consent update cannot say what the consent was before (the hub keeps no personal data), so
# "refused" reads as refused or withdrawn.
CONSENT_LABELS: dict[ConsentStatus, str] = {
    ConsentStatus.GIVEN: "Given",
    ConsentStatus.REFUSED: "Refused or withdrawn",
    ConsentStatus.NOT_ASKED: "Not asked yet",
    ConsentStatus.LACKS_CAPACITY: (
        "Lacks capacity: referral decided in their best interests (Mental Capacity Act 2005 s.4)"
    ),
}


def updated_alert(follow_up: FollowUp) -> Alert:
    """The whole new alert an update carries; ValueError for any other kind or a mismatch."""
    alert = follow_up.alert
    if follow_up.kind is not ChangeKind.UPDATE or alert is None:
        raise ValueError(f"a {follow_up.kind} follow-up carries no updated alert")
    if alert.alert_id != follow_up.alert_id:
        raise ValueError("an update's alert must keep the alert_id it updates")
    return alert


def cancellation_reason(follow_up: FollowUp) -> CancellationReason:
    if follow_up.kind is not ChangeKind.CANCELLATION or follow_up.cancellation is None:
        raise ValueError(f"a {follow_up.kind} follow-up carries no cancellation reason")
    return follow_up.cancellation


def new_consent(follow_up: FollowUp) -> Consent:
    """The consent now in force: a consent update's, or the one inside an update's alert."""
    if follow_up.kind is ChangeKind.UPDATE:
        return updated_alert(follow_up).consent
    if follow_up.kind is not ChangeKind.CONSENT or follow_up.consent is None:
        raise ValueError(f"a {follow_up.kind} follow-up carries no consent")
    return follow_up.consent
