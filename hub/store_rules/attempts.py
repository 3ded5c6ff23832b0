"""What every ledger (SQL or in memory) accepts and keeps of a delivery attempt.

Pure: no I/O. Shared so the fake and the real ledger cannot drift apart.
"""

from __future__ import annotations

import re

ATTEMPT_RESULTS = frozenset({"delivered", "transient", "permanent", "withheld"})
# Outcome statuses the hub itself sends: none of them answers an overdue referral.
NOT_FROM_THE_SERVICE = ("received", "rejected", "overdue")
_CODE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def reason_code(detail: str) -> str | None:
    """An attempt's `detail` if it is a bare code (`http_503`, `timeout`), else None: free text
    from a peer may quote personal data, and the reason in full travels with the dead letter."""
    return detail if _CODE.fullmatch(detail) else None
