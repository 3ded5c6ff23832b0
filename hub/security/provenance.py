"""Which headers the hub believes: only `x-hub-*` headers the hub wrote itself.

Every publish the hub makes seals its `x-hub-*` headers (`SealingPublisher`): an HMAC-SHA256,
under a key derived from HUB_ID_KEY, over those headers, the body and the message_id. When a
message is taken off a queue (`Provenance.admit`), its `x-hub-*` headers are kept only if the
seal holds and the message did not come straight from the justice side (`justice.alerts`):
anything else in the hub's namespace is removed before any stage reads it. So a publisher, or
anyone who can reach hub.work / hub.retry.* / hub.dlq, cannot tell the hub where a message came
from, where it failed or how often (docs/trust-boundary.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from hub.ports import Publisher
from hub.wire import ALERTS_EXCHANGE, Envelope, Outgoing

HUB_PREFIX = "x-hub-"
H_SEAL = "x-hub-seal"


def is_hub_header(key: object) -> bool:
    # AMQP header names are case-sensitive, but nothing outside may use any spelling of ours.
    return str(key).lower().startswith(HUB_PREFIX)


def without_hub_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in headers.items() if not is_hub_header(k)}


def _canonical(value: Any) -> Any:
    """A header value as it reads after an AMQP round trip (py-amqp gives str for what the hub
    sent as str; pika and the memory transport may give bytes)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class Provenance:
    """Seals the hub's own headers and admits only sealed ones."""

    def __init__(self, seal_key: bytes) -> None:
        self._key = seal_key

    def __repr__(self) -> str:
        return "Provenance(<key>)"

    def _mac(self, headers: Mapping[str, Any], *, body: bytes, message_id: str | None) -> str:
        ours = {str(k): _canonical(v) for k, v in headers.items() if is_hub_header(k)}
        ours.pop(H_SEAL, None)
        text = json.dumps(ours, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (
            text.encode(),
            hashlib.sha256(body).digest(),
            (message_id or "").encode("utf-8", "surrogatepass"),
        ):
            mac.update(len(part).to_bytes(8, "big") + part)
        return mac.hexdigest()

    def seal(
        self, headers: Mapping[str, Any], *, body: bytes, message_id: str | None
    ) -> dict[str, Any]:
        """`headers` with the seal over its `x-hub-*` ones (none to seal: unchanged)."""
        sealed = {k: v for k, v in headers.items() if k != H_SEAL}
        if any(is_hub_header(k) for k in sealed):
            sealed[H_SEAL] = self._mac(sealed, body=body, message_id=message_id)
        return sealed

    def sealed_by_hub(self, envelope: Envelope) -> bool:
        seal = envelope.headers.get(H_SEAL)
        if isinstance(seal, bytes | bytearray):
            seal = bytes(seal).decode("ascii", "replace")
        if not isinstance(seal, str):
            return False
        expected = self._mac(envelope.headers, body=envelope.body, message_id=envelope.message_id)
        return hmac.compare_digest(seal, expected)

    def admit(self, envelope: Envelope) -> Envelope:
        """The envelope as a stage may read it: `x-hub-*` headers only if the hub wrote them.
        A message delivered from justice.alerts has never been through the hub, so whatever
        it carries in the hub's namespace is a publisher's claim and goes, sealed or not."""
        if envelope.exchange != ALERTS_EXCHANGE and self.sealed_by_hub(envelope):
            return envelope
        if not any(is_hub_header(k) for k in envelope.headers):
            return envelope
        return dataclasses.replace(envelope, headers=without_hub_headers(envelope.headers))


class SealingPublisher:
    """A Publisher that seals the hub's headers on everything it publishes."""

    def __init__(self, inner: Publisher, provenance: Provenance) -> None:
        self.inner = inner
        self.provenance = provenance

    def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.inner.publish(
            exchange=exchange,
            routing_key=routing_key,
            body=body,
            headers=self.provenance.seal(headers or {}, body=body, message_id=message_id),
            message_id=message_id,
            correlation_id=correlation_id,
            content_type=content_type,
        )

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        self.inner.publish_many(
            [
                dataclasses.replace(
                    m,
                    headers=self.provenance.seal(m.headers, body=m.body, message_id=m.message_id),
                )
                for m in messages
            ]
        )

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
