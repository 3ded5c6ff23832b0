"""`ld.referral-outcome/1`: the outcome the hub returns, checked before it leaves."""

from __future__ import annotations

from typing import Any

from hub.contracts.problems import (
    _schema_problems,
)
from hub.contracts.schemas import (
    _validator,
    is_valid,
)
from hub.messages import (
    Problem,
)

_OUTCOME_SCHEMA_FILE = "ld.referral-outcome.1"


def validate_outcome(body: dict[str, Any]) -> list[Problem]:
    """Every problem with `body` as an `ld.referral-outcome/1`; empty when it is valid. A valid
    one (every outcome the hub builds) is said so by the fast validator; jsonschema explains the
    rest, in the usual wording."""
    if is_valid(_OUTCOME_SCHEMA_FILE, body):
        return []
    return _schema_problems(_validator(_OUTCOME_SCHEMA_FILE), body)
