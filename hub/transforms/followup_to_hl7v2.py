"""Follow-up → HL7 v2.5 for receivers without FHIR: an update becomes REF^I13 (modify patient
referral), a cancellation REF^I14 (cancel patient referral), a consent update REF^I13 whose NTE
carries the new consent (HL7 v2.5 ch. 11: I12-I15 share the REF_I12 structure).

Pure: no clock, no I/O, no environment, no logging. Built from referral_to_ref_i12's pieces and
validated at STRICT before it is returned, like the REF^I12; MSH-10 comes from the follow-up's
own X-Request-Id (`followup_control_id`), so its ACK is matched to it and not to the I12's.

Every follow-up names the referral as the REF^I12 did: RF1-6 `<referral bundle id>^<hub ODS>`
(referral_ids(), the id the FHIR route and the webhook use too) and RF1-11
`<alert id>^<source ODS>`. A receiver finds the referral by RF1-6, never by PID.

| follow-up                    | HL7 v2.5 (REF_I12 structure)                                     |
|------------------------------|------------------------------------------------------------------|
| any                          | MSH as the I12's (MSH-7 = sent_at); PRD `RP` from source.        |
|                              | organisation, PRD `RT` from the Recipient                        |
| update                       | MSH-9 `REF^I13^REF_I12`; every other segment built from the new  |
|                              | `alert` exactly as the I12 (referral_to_ref_i12's mapping), but  |
|                              | RF1-1 left empty; then one more NTE with the consent (below):    |
|                              | the I12 has no consent field, and a withdrawal sent inside an    |
|                              | update must not be dropped                                       |
| cancellation                 | MSH-9 `REF^I14^REF_I12`; RF1-1 `revoked^Revoked^99LDS` (reasons  |
|                              | person_released, no_longer_required) or `entered-in-error^       |
|                              | Entered in error^99LDS` (raised_in_error): the FHIR route's      |
|                              | ServiceRequest.status; NTE `Referral cancelled by <source org>:  |
|                              | <reason label>`                                                  |
| consent update               | MSH-9 `REF^I13^REF_I12`; RF1-1 empty; NTE: `Consent update from  |
|                              | <source org>`, then the consent lines                            |
| consent (update and consent  | NTE-3 lines `Consent to referral: <CONSENT_LABELS>`, `Share      |
| update)                      | outcomes with the justice side: Yes/No`, `Consent recorded:      |
|                              | <YYYY-MM-DD HH:MM> UTC`; NTE-4 `RE^Remark^HL70364`, NTE-2 `P`    |
| cancellation, consent update | PID-3 `<patient_id()>^^^<hub ODS>^ANON` (the FHIR Patient.id,    |
| (no personal data)           | table 0203 ANON "anonymous identifier"), PID-5 `^^^^^^S` (XPN-7  |
|                              | table 0200 S "coded pseudo-name to ensure anonymity"): PID and   |
|                              | PID-5 are required in REF_I12 and STRICT refuses the message     |
|                              | without them; no other PID field, no DG1, RF1-2 or RF1-7         |
| update_reason, change_id,    | not mapped (change_id only through MSH-10)                       |
| consent.recorded_by          |                                                                  |

Why these values:
- Table 0283 (referral status) is user-defined and suggests only A accepted, E expired,
  P pending, R rejected, all "added v2.3" (HL7 v2.5 ch. 11, RF1-1; hl7apy's v2_5 tables; the
  terminology.hl7.org v2-0283 code system): there is no "cancelled". The I14 trigger event is
  the cancellation; RF1-1 adds which kind, as a local value of the user-defined table under the
  hub's local code system `99LDS` (table 0396 "99zzz"), so no receiver mistakes it for a 0283
  code. hl7apy checks CE.3 against table 0396 only, so `99LDS` is a warning, never an error.
- An I13 leaves RF1-1 empty: the hub does not know whether the receiver has accepted the
  referral since, and in a v2 update an empty field means "no change" while `P` would put an
  accepted referral back to pending (`""` would erase it).
- PID-5 as `^^^^^^S` rather than a made-up name: a receiver that files names from messages
  cannot overwrite the person's name with a placeholder.
- The 36-character id in PID-3 is longer than the 15 characters HL7's component tables give
  CX-1 (v2+ CX table); hl7apy does not check component lengths. A receiver that enforces it
  would need a shorter form: it matches the referral on RF1-6 in any case.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hl7apy.core import Message

from hub.messages import ChangeKind, Consent, FollowUp, HubIdentity, Recipient
from hub.security.ids import IdKey
from hub.transforms.followup_terms import (
    CANCELLATION_LABELS,
    CONSENT_LABELS,
    STATUS_LABELS,
    cancellation_reason,
    new_consent,
    updated_alert,
)
from hub.transforms.followup_to_bundle import CANCELLED_STATUS
from hub.transforms.referral_ids import Role, followup_ids, resource_id
from hub.transforms.referral_to_ref_i12 import (
    add_note,
    add_providers,
    add_referral_info,
    build_ref,
    control_id_for,
    encode,
    er7_components,
    er7_text,
    start_ref,
)

MODIFY_TYPE = "REF^I13^REF_I12"
CANCEL_TYPE = "REF^I14^REF_I12"
LOCAL_STATUS_SYSTEM = "99LDS"  # table 0396 "99zzz": the hub's referral statuses (FHIR's)
ANONYMOUS_NAME = "^^^^^^S"  # XPN-7 name type S: pseudo-name to ensure anonymity (table 0200)


def followup_control_id(follow_up: FollowUp, endpoint: str, key: IdKey) -> str:
    """MSH-10 of a follow-up to one endpoint: from its own X-Request-Id (followup_ids)."""
    return control_id_for(followup_ids(key, follow_up.alert_id, endpoint, follow_up.change_id))


def patient_id(key: IdKey, alert_id: str, endpoint: str) -> str:
    """The FHIR route's Patient.id for one referral (keyed, role `patient`): a follow-up without
    personal data names the person by it alone."""
    return resource_id(key, alert_id, endpoint, Role.PATIENT)


def render_followup(
    follow_up: FollowUp, *, recipient: Recipient, hub: HubIdentity, control_id: str
) -> str:
    """The REF^I13 or REF^I14 for one follow-up and one recipient, ER7-encoded."""
    if follow_up.kind is ChangeKind.UPDATE:
        alert = updated_alert(follow_up)
        message = build_ref(
            alert,
            recipient=recipient,
            hub=hub,
            control_id=control_id,
            message_type=MODIFY_TYPE,
            status=None,
        )
        add_note(message, len(message.nte) + 1, _consent_lines(alert.consent))
    elif follow_up.kind is ChangeKind.CANCELLATION:
        reason = cancellation_reason(follow_up)
        status = CANCELLED_STATUS[reason]
        message = _about_referral(
            follow_up,
            message_type=CANCEL_TYPE,
            status=er7_components(status, STATUS_LABELS[status], LOCAL_STATUS_SYSTEM),
            recipient=recipient,
            hub=hub,
            control_id=control_id,
        )
        by = follow_up.source.organisation.name
        add_note(message, 1, [f"Referral cancelled by {by}: {CANCELLATION_LABELS[reason]}"])
    else:
        consent = new_consent(follow_up)
        message = _about_referral(
            follow_up,
            message_type=MODIFY_TYPE,
            status=None,
            recipient=recipient,
            hub=hub,
            control_id=control_id,
        )
        heading = f"Consent update from {follow_up.source.organisation.name}"
        add_note(message, 1, [heading, *_consent_lines(consent)])
    return encode(message)


def _about_referral(
    follow_up: FollowUp,
    *,
    message_type: str,
    status: str | None,
    recipient: Recipient,
    hub: HubIdentity,
    control_id: str,
) -> Message:
    """MSH, RF1, PRDs and an anonymous PID: all a follow-up without personal data can say."""
    message = start_ref(
        message_type=message_type,
        control_id=control_id,
        at=follow_up.sent_at,
        recipient=recipient,
        hub=hub,
    )
    source = follow_up.source
    add_referral_info(
        message,
        alert_id=follow_up.alert_id,
        source_code=source.organisation.code,
        recipient=recipient,
        hub=hub,
        status=status,
    )
    add_providers(message, referrer=source.organisation, recipient=recipient)
    pid = message.add_segment("PID")
    pid.pid_1 = "1"
    person = patient_id(hub.id_key(), follow_up.alert_id, recipient.endpoint)
    pid.pid_3 = f"{person}^^^{er7_text(hub.ods_code)}^ANON"
    pid.pid_5 = ANONYMOUS_NAME
    return message


def _consent_lines(consent: Consent) -> list[str]:
    share = "Yes" if consent.share_with_justice else "No"
    return [
        f"Consent to referral: {CONSENT_LABELS[consent.status]}",
        f"Share outcomes with the justice side: {share}",
        f"Consent recorded: {_when(consent.recorded_at)}",
    ]


def _when(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValueError("HL7 timestamps need a time zone; got a naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
