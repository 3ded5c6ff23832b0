"""Report periods: a calendar month as [first day, first day of the next) in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_period(text: str) -> tuple[datetime, datetime]:
    """`YYYY-MM` (years 2000–2099) as its [start, end); anything else is a ValueError."""
    found = _MONTH.fullmatch(text)
    if found is None or not 2000 <= int(found[1]) <= 2099 or not 1 <= int(found[2]) <= 12:
        raise ValueError("a month is YYYY-MM")
    first = datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)
    return first, (first + timedelta(days=32)).replace(day=1)
