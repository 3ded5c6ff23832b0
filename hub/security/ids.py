"""Keyed ids: every id that leaves the hub (outcome ids today) is an HMAC-SHA256 of what it names
under the hub's secret `HUB_ID_KEY`, so it is stable (same key, same inputs → same id, across
redeliveries and restarts) and reveals nothing about its inputs to anyone without the key.

Pure: the key comes in as an argument (settings.py reads it from the environment).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import lru_cache

MIN_KEY_CHARS = 32

# Domain separation: one secret, a different derived key for each use, so an id can never be
# replayed as a header seal or the other way round.
_IDS = b"ld-hub/ids/1"
_SEAL = b"ld-hub/header-seal/1"


@lru_cache(maxsize=16)
def _derive(secret: bytes, purpose: bytes) -> bytes:
    # One HMAC per (secret, purpose) for the life of the process, not one per id: a referral's
    # Bundle carries about a dozen keyed ids. Kept in memory only, as the secret itself is.
    return hmac.new(secret, purpose, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class IdKey:
    """The hub's secret, and what it derives. Never logged (repr hides it)."""

    secret: bytes = field(repr=False)

    @classmethod
    def of(cls, text: str) -> IdKey:
        if len(text) < MIN_KEY_CHARS:
            raise ValueError(f"the id key must be at least {MIN_KEY_CHARS} characters")
        return cls(text.encode("utf-8"))

    def _derived(self, purpose: bytes) -> bytes:
        return _derive(self.secret, purpose)

    @property
    def seal_key(self) -> bytes:
        """The key hub.security.provenance seals the hub's own message headers with."""
        return self._derived(_SEAL)

    def keyed_uuid(self, purpose: str, *parts: str) -> str:
        """A UUID (RFC 9562 version 8, "custom") made of the first 122 bits of
        HMAC-SHA256(derived key, purpose and parts). Parts are length-prefixed, so no two
        different inputs share a message."""
        chunks = []
        for text in (purpose, *parts):
            data = text.encode("utf-8")
            chunks.append(len(data).to_bytes(4, "big"))
            chunks.append(data)
        digest = hmac.digest(self._derived(_IDS), b"".join(chunks), "sha256")
        # Version 8 in the top nibble of byte 6, the RFC 4122 variant in the top bits of
        # byte 8; written straight into the 8-4-4-4-12 form (a referral needs a dozen of
        # these: a third of the time of uuid.UUID(bytes=…)).
        h = digest[:16].hex()
        return (
            f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{(int(h[16], 16) & 0x3) | 0x8:x}{h[17:20]}-{h[20:32]}"
        )

    def outcome_id(self, answers_to: str, answers: str, status: str) -> str:
        """The id of one justice outcome: what it answers (a referral's Bundle id, or an
        alert id for a rejection), what answered (a response message id, `received`,
        `overdue`, a body digest) and the status."""
        return self.keyed_uuid("outcome", answers_to, answers, status)
