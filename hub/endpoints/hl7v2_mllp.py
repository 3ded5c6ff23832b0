"""The `hl7v2-mllp` endpoint kind: REF^I12/I13/I14 rendered for MLLP."""

from __future__ import annotations

from hub.messages import Alert, FollowUp, HubIdentity, Recipient
from hub.records import Payload
from hub.security.ids import IdKey
from hub.transforms.followup_to_hl7v2 import followup_control_id, render_followup
from hub.transforms.referral_ids import referral_ids
from hub.transforms.referral_to_ref_i12 import control_id_for, render_ref_i12

# The HL7-registered media type for ER7-encoded v2 messages; MSH-18 says UTF-8 as well.
HL7V2_CONTENT_TYPE = "x-application/hl7-v2+er7; charset=utf-8"
HL7V2_ENCODING = "utf-8"


def hl7v2_control_id(key: IdKey, alert_id: str, endpoint: str) -> str:
    """MSH-10 of the REF^I12 for one referral: the sender needs it to match the ACK's MSA-2."""
    return control_id_for(referral_ids(key, alert_id, endpoint))


def render_hl7v2_ref_i12(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    control_id = hl7v2_control_id(hub.id_key(), alert.alert_id, recipient.endpoint)
    message = render_ref_i12(alert, recipient=recipient, hub=hub, control_id=control_id)
    return Payload(message.encode(HL7V2_ENCODING), HL7V2_CONTENT_TYPE)


def render_hl7v2_followup(follow_up: FollowUp, recipient: Recipient, hub: HubIdentity) -> Payload:
    """REF^I13 (update, consent update) or REF^I14 (cancellation); MSH-10 from the follow-up's
    own X-Request-Id, so the sender matches its ACK by the job's request id, not the I12's."""
    control_id = followup_control_id(follow_up, recipient.endpoint, hub.id_key())
    message = render_followup(follow_up, recipient=recipient, hub=hub, control_id=control_id)
    return Payload(message.encode(HL7V2_ENCODING), HL7V2_CONTENT_TYPE)
