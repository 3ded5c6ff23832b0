"""The endpoint kinds: for each, its renderers. A new kind is one module in hub/endpoints/
plus its transform, a row here, and its sender's transport in bootstrap.senders.sender_for."""

from __future__ import annotations

from hub.endpoints.fhir_rest import (
    render_fhir_bundle,
    render_fhir_followup,
)
from hub.endpoints.hl7v2_mllp import render_hl7v2_followup, render_hl7v2_ref_i12
from hub.endpoints.webhook import (
    render_webhook_followup,
    render_webhook_json,
)
from hub.ports import Render, RenderFollowUp
from hub.settings.types import EndpointKind

# What intake renders for each endpoint kind; the matching Sender is built by `sender_for`.
RENDERERS: dict[EndpointKind, Render] = {
    EndpointKind.FHIR_REST: render_fhir_bundle,
    EndpointKind.HL7V2_MLLP: render_hl7v2_ref_i12,
    EndpointKind.WEBHOOK: render_webhook_json,
    EndpointKind.MESH: render_fhir_bundle,  # the same Bundle as fhir-rest, through a mailbox
}
# What intake renders for an update, cancellation or consent update, per endpoint kind.
FOLLOWUP_RENDERERS: dict[EndpointKind, RenderFollowUp] = {
    EndpointKind.FHIR_REST: render_fhir_followup,
    EndpointKind.HL7V2_MLLP: render_hl7v2_followup,
    EndpointKind.WEBHOOK: render_webhook_followup,
    EndpointKind.MESH: render_fhir_followup,
}
