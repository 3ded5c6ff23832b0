"""Which consent is in force when another arrives: one rule, applied by every ledger (SQL or in
memory) and to what the hub tells the services, so the hub and the NHS cannot disagree.

Pure: no I/O, no clock. A consent's `recorded_at` is the sender's claim (its clock may run
ahead, within hub.contracts.alert.CLOCK_SKEW), so it never lets a grant outrank a later withdrawal.

How much a consent shares, lowest first:

| rank | consent (status, share_with_justice)   | what it permits                               |
|------|----------------------------------------|-----------------------------------------------|
| 0    | refused or not_asked, either           | no referral (FHIR Consent provision deny)     |
| 1    | given, false; lacks_capacity, either   | the referral; nothing clinical to justice     |
| 2    | given, true                            | the referral, and its detail to justice       |

Rank 2 is exactly hub.transforms.consent_filter.may_share_detail.

The rule, for a consent received while another is in force:
- one that shares less (lower rank) replaces it, whatever either `recorded_at` says: a
  withdrawal is never outranked by a grant the hub received earlier;
- one that shares more (higher rank) replaces it only if its `recorded_at` is strictly later;
- one that shares the same replaces it unless its `recorded_at` is earlier (an older consent never
  replaces a newer one; the same consent again changes nothing);
- a consent in force without `recorded_at` (kept before the ledger stored it) is replaced.
"""

from __future__ import annotations

from datetime import datetime

from hub.messages import Consent, ConsentStatus
from hub.records import ConsentFacts
from hub.transforms.consent_filter import may_share_detail

_PERMITS_REFERRAL = frozenset({ConsentStatus.GIVEN.value, ConsentStatus.LACKS_CAPACITY.value})


def sharing_rank(*, status: str, share_with_justice: bool) -> int:
    """0, 1 or 2: how much a consent shares (the table above)."""
    if may_share_detail(consent_status=status, share_with_justice=share_with_justice):
        return 2
    return 1 if status in _PERMITS_REFERRAL else 0


def replaces(
    incoming: ConsentFacts, *, status: str, share_with_justice: bool, recorded_at: datetime | None
) -> bool:
    """True if `incoming`, received now, replaces the consent in force (status,
    share_with_justice, recorded_at)."""
    if recorded_at is None:
        return True
    before = sharing_rank(status=status, share_with_justice=share_with_justice)
    after = sharing_rank(status=incoming.status, share_with_justice=incoming.share_with_justice)
    if after < before:
        return True
    if after > before:
        return incoming.recorded_at > recorded_at
    return incoming.recorded_at >= recorded_at


def consent_in_force(
    incoming: ConsentFacts, *, status: str, share_with_justice: bool, recorded_at: datetime | None
) -> ConsentFacts:
    """The consent in force once `incoming` has been received while (status,
    share_with_justice, recorded_at) was."""
    if replaces(
        incoming, status=status, share_with_justice=share_with_justice, recorded_at=recorded_at
    ):
        return incoming
    assert recorded_at is not None  # replaces() is true without one
    return ConsentFacts(
        status=status, share_with_justice=share_with_justice, recorded_at=recorded_at
    )


def consent_facts(consent: Consent) -> ConsentFacts:
    """What a ledger keeps of a consent (not who recorded it)."""
    return ConsentFacts(
        status=str(consent.status),
        share_with_justice=consent.share_with_justice,
        recorded_at=consent.recorded_at,
    )


def consent_to_tell(incoming: Consent, in_force: ConsentFacts) -> Consent:
    """The consent the services are told after `incoming` was applied: `incoming` when it is in
    force, otherwise the one that is. `recorded_by` is the staff id of the message that was
    received; no renderer maps it (see the transforms' mapping tables), and the hub keeps no
    other."""
    if consent_facts(incoming) == in_force:
        return incoming
    return Consent(
        status=ConsentStatus(in_force.status),
        share_with_justice=in_force.share_with_justice,
        recorded_at=in_force.recorded_at,
        recorded_by=incoming.recorded_by,
    )
