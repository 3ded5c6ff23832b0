"""The `mesh` endpoint kind: the FHIR Bundle as a MESH message."""

from __future__ import annotations

import time
from typing import Protocol

from hub.endpoints.delivered import _check_rendered_for
from hub.endpoints.fhir_rest import FHIR_CONTENT_TYPE
from hub.records import Delivered, DeliveryJob


class MeshOutbox(Protocol):
    """What the mesh kind needs of hub.adapters.mesh.MeshSender."""

    def send(self, body: bytes, *, local_id: str, subject: str, filename: str) -> str: ...


class MeshReferralSender:
    """mesh: the referral's FHIR Bundle uploaded, byte for byte, to the trust's mailbox under
    the endpoint's workflow; `local_id` is the X-Request-Id, the same on every resend (MESH
    does not de-duplicate: the ledger's DELIVERED check before sending does). MESH accepting it
    is delivery; the trust acknowledges it from its inbox."""

    def __init__(self, *, outbox: MeshOutbox) -> None:
        self.outbox = outbox

    def close(self) -> None:
        close = getattr(self.outbox, "close", None)
        if close is not None:
            close()

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, FHIR_CONTENT_TYPE, "mesh")
        referral = job.referral
        started = time.perf_counter()
        message_id = self.outbox.send(
            job.body,
            local_id=referral.request_id,
            subject="L&D referral",
            filename=f"{referral.bundle_id}.json",
        )
        return Delivered(
            answer=f"MESH message {message_id}",
            status=None,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
