"""What each endpoint kind is sent: one pure render function per kind, alert → Payload (the
exact bytes and their content type). Intake calls them once per referral; bootstrap picks one per
endpoint from its kind. No I/O here: the transforms do the work, this only names the wire form.
"""

from __future__ import annotations

from hub.messages import Alert, HubIdentity, Recipient
from hub.ports import Payload
from hub.transforms.alert_to_referral import build_referral, bundle_bytes, referral_ids
from hub.transforms.referral_to_ref_i12 import control_id_for, render_ref_i12
from hub.transforms.referral_to_webhook import CONTENT_TYPE as WEBHOOK_CONTENT_TYPE
from hub.transforms.referral_to_webhook import build_webhook_referral, webhook_bytes

FHIR_CONTENT_TYPE = "application/fhir+json"
# The HL7-registered media type for ER7-encoded v2 messages; MSH-18 says UTF-8 as well.
HL7V2_CONTENT_TYPE = "x-application/hl7-v2+er7; charset=utf-8"
HL7V2_ENCODING = "utf-8"


def render_fhir_bundle(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    bundle = build_referral(alert, recipient=recipient, hub=hub)
    return Payload(bundle_bytes(bundle), FHIR_CONTENT_TYPE)


def hl7v2_control_id(alert_id: str, endpoint: str) -> str:
    """MSH-10 of the REF^I12 for one referral: the sender needs it to match the ACK's MSA-2."""
    return control_id_for(referral_ids(alert_id, endpoint))


def render_hl7v2_ref_i12(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    control_id = hl7v2_control_id(alert.alert_id, recipient.endpoint)
    message = render_ref_i12(alert, recipient=recipient, hub=hub, control_id=control_id)
    return Payload(message.encode(HL7V2_ENCODING), HL7V2_CONTENT_TYPE)


def render_webhook_json(alert: Alert, recipient: Recipient, hub: HubIdentity) -> Payload:
    document = build_webhook_referral(alert, recipient=recipient, hub=hub)
    return Payload(webhook_bytes(document), WEBHOOK_CONTENT_TYPE)
