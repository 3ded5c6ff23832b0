"""Each endpoint kind's transport: the Sender (and OAuth2 token cache) built for one configured
endpoint. Builds adapters only; which stage uses them is hub/bootstrap/__init__.py's."""

from __future__ import annotations

from hub.adapters.http_client import Urllib3FhirClient
from hub.adapters.mesh import MeshSender
from hub.adapters.mllp import Hl7v2MllpSender, MllpSender
from hub.endpoints.fhir_rest import FhirRestSender, FhirTarget
from hub.endpoints.mesh import MeshReferralSender
from hub.endpoints.oauth2 import OAuth2TokenSource
from hub.endpoints.webhook import WebhookSender, WebhookTarget
from hub.ports import FhirClient, Sender
from hub.settings.types import EndpointConfig, EndpointKind


def sender_for(
    endpoint: EndpointConfig,
    *,
    http: FhirClient,
    mllp: MllpSender,
    tokens: OAuth2TokenSource | None = None,
) -> Sender:
    """The Sender for one configured endpoint (settings guarantee its kind's fields are set).
    `tokens`: the endpoint's shared OAuth2 token cache (`token_source_for`)."""
    match endpoint.kind:
        case EndpointKind.FHIR_REST:
            assert endpoint.url is not None
            auth = f"Bearer {endpoint.auth.token}" if endpoint.auth else None
            target = FhirTarget(
                service_id=endpoint.service_id,
                url=endpoint.url,
                timeout_seconds=endpoint.timeout_seconds,
                authorization=auth,
            )
            if endpoint.tls is not None:
                # Mutual TLS and/or its own CA bundle: a client of the endpoint's own.
                http = Urllib3FhirClient(
                    verify=endpoint.tls.ca or True, cert=endpoint.tls.client_cert
                )
            return FhirRestSender(target=target, client=http, tokens=tokens)
        case EndpointKind.MESH:
            assert endpoint.mesh is not None
            box, tls = endpoint.mesh, endpoint.tls
            outbox = MeshSender(
                box.url,
                box.mailbox,
                box.password,
                box.shared_key,
                recipient_mailbox=box.recipient_mailbox,
                workflow_id=box.workflow_id,
                cert=tls.client_cert if tls else None,
                verify=tls.ca if tls and tls.ca else None,
                timeout=endpoint.timeout_seconds,
                endpoint=endpoint.name,
            )
            return MeshReferralSender(outbox=outbox)
        case EndpointKind.HL7V2_MLLP:
            assert endpoint.host is not None and endpoint.port is not None
            return Hl7v2MllpSender(
                host=endpoint.host,
                port=endpoint.port,
                timeout_seconds=endpoint.timeout_seconds,
                client=mllp,
            )
        case EndpointKind.WEBHOOK:
            assert endpoint.url is not None and endpoint.signing is not None
            webhook = WebhookTarget(
                url=endpoint.url,
                timeout_seconds=endpoint.timeout_seconds,
                key=endpoint.signing.key,
            )
            return WebhookSender(target=webhook, client=http)


def token_source_for(endpoint: EndpointConfig) -> OAuth2TokenSource | None:
    """One OAuth2 token cache per endpoint, shared by its consumers; None without OAuth2."""
    if endpoint.oauth2 is None:
        return None
    tls = endpoint.tls
    client = Urllib3FhirClient(
        verify=tls.ca if tls and tls.ca else True, cert=tls.client_cert if tls else None
    )
    return OAuth2TokenSource(
        endpoint.oauth2, client, timeout=endpoint.timeout_seconds, endpoint=endpoint.name
    )
