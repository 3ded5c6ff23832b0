"""Percentiles and funnel-plot control limits, written out so a test can check them by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided normal quantiles of the NHS funnel plots: 95 % (about 2 SD) and 99.8 % (about 3 SD).
Z95 = 1.959964
Z998 = 3.090232


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0–100) by linear interpolation between closest ranks (Hyndman and
    Fan type 7: R's default, Excel PERCENTILE.INC): position (n − 1)·p/100 in the sorted values.
    None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Limits:
    lower95: float
    upper95: float
    lower998: float
    upper998: float


def control_limits(p: float, n: float) -> Limits:
    """Limits around the overall rate `p` for a group of size `n`: p ± z·√(p(1−p)/n), normal
    approximation to the binomial, clipped to [0, 1]."""
    if n <= 0:
        raise ValueError("control limits need a group size above zero")
    sd = math.sqrt(p * (1 - p) / n)

    def clip(x: float) -> float:
        return min(1.0, max(0.0, x))

    return Limits(
        lower95=clip(p - Z95 * sd),
        upper95=clip(p + Z95 * sd),
        lower998=clip(p - Z998 * sd),
        upper998=clip(p + Z998 * sd),
    )


def flag(rate: float, limits: Limits) -> str:
    """Where a group's rate sits: `within`, `alert` (beyond 95 %), `alarm` (beyond 99.8 %),
    with the direction (`high`/`low`), as NHS provider comparisons label them."""
    if rate > limits.upper998:
        return "alarm_high"
    if rate < limits.lower998:
        return "alarm_low"
    if rate > limits.upper95:
        return "alert_high"
    if rate < limits.lower95:
        return "alert_low"
    return "within"
