"""Charts of a published report as inline SVG: the funnel's stage bars and the funnel plots.

Hand-written SVG (no plotting library): small, deterministic, no network and no script, so a
report opens anywhere and can be emailed. Every text placed in a chart is escaped here.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from hub.operations.reports.stats import Z95, Z998
from hub.security.terminal import neutralise

COLOURS = {
    "within": "#005eb8",  # NHS blue
    "alert_high": "#ed8b00",
    "alert_low": "#ed8b00",
    "alarm_high": "#da291c",
    "alarm_low": "#da291c",
}


def _text(value: object) -> str:
    """Text from outside (group names) as a chart shows it: neutralised, then escaped."""
    return escape(neutralise(str(value)))


def stage_bars(stages: list[str], counts: dict[str, Any], *, width: int = 560) -> str:
    """Horizontal bars, one per funnel stage; a suppressed count (`*`) gets no bar."""
    numbers = [c for c in counts.values() if isinstance(c, int)]
    top = max(numbers, default=0) or 1
    row, left = 22, 120
    height = row * len(stages) + 10
    parts = [
        f'<svg role="img" aria-label="pathway funnel" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Arial, sans-serif" font-size="12">'
    ]
    for i, stage in enumerate(stages):
        y = 5 + i * row
        value = counts.get(stage)
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{_text(stage)}</text>')
        if isinstance(value, int) and value > 0:
            w = (width - left - 60) * value / top
            parts.append(
                f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="#005eb8"/>'
            )
        else:
            w = 0
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 14}">{_text(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def funnel_plot(plot: dict[str, Any], *, width: int = 560, height: int = 320) -> str:
    """One rate's funnel plot: each group's rate against its size (as published), the overall
    rate, and the 95 % and 99.8 % control limits p ± z·√(p(1−p)/n) drawn as curves."""
    p = plot["overall"]
    points = [pt for pt in plot["points"] if "rate" in pt]
    title = f"{plot['rate']}: {plot['numerator']} ÷ {plot['denominator']}"
    head = (
        f'<svg role="img" aria-label="{_text(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Arial, sans-serif" font-size="11">'
        f'<text x="{width / 2}" y="14" text-anchor="middle" font-weight="bold">'
        f"{_text(title)}</text>"
    )
    if p is None or not points:
        return head + (
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            "no group large enough to show</text></svg>"
        )
    left, right, top, bottom = 50, 15, 25, 35
    n_max = max(pt["n"] for pt in points) * 1.08
    rates = [pt["rate"] for pt in points] + [p]
    lo_rate = max(0.0, min(rates + [_limit(p, n_max / 20, -Z998)]) - 0.05)
    hi_rate = min(1.0, max(rates + [_limit(p, n_max / 20, Z998)]) + 0.05)
    span = (hi_rate - lo_rate) or 1.0

    def x(n: float) -> float:
        return left + (width - left - right) * n / n_max

    def y(rate: float) -> float:
        return top + (height - top - bottom) * (hi_rate - rate) / span

    parts = [head]
    parts.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#999"/>'
    )
    for k in range(5):
        rate = lo_rate + span * k / 4
        parts.append(
            f'<text x="{left - 4}" y="{y(rate) + 4:.1f}" text-anchor="end">{100 * rate:.0f}%</text>'
        )
        n = n_max * k / 4
        parts.append(
            f'<text x="{x(n):.1f}" y="{height - bottom + 14}" text-anchor="middle">{n:.0f}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
        f"{_text(plot['denominator'])} (group size)</text>"
    )
    parts.append(
        f'<line x1="{x(0):.1f}" y1="{y(p):.1f}" x2="{x(n_max):.1f}" y2="{y(p):.1f}" stroke="#333"/>'
    )
    for z, dash in ((Z95, ' stroke-dasharray="4 3"'), (Z998, "")):
        for sign in (1, -1):
            path = []
            for step in range(1, 81):
                n = n_max * step / 80
                rate = min(hi_rate, max(lo_rate, _limit(p, n, sign * z)))
                path.append(f"{'M' if step == 1 else 'L'}{x(n):.1f},{y(rate):.1f}")
            parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#666"{dash}/>')
    for pt in points:
        colour = COLOURS.get(pt["flag"], "#005eb8")
        label = f"{pt['group']}: {100 * pt['rate']:.1f}% of {pt['n']} ({pt['flag']})"
        parts.append(
            f'<circle cx="{x(pt["n"]):.1f}" cy="{y(pt["rate"]):.1f}" r="4" fill="{colour}">'
            f"<title>{_text(label)}</title></circle>"
        )
        if pt["flag"] != "within":
            parts.append(
                f'<text x="{x(pt["n"]) + 6:.1f}" y="{y(pt["rate"]) + 4:.1f}" '
                f'fill="{colour}">{_text(pt["group"])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _limit(p: float, n: float, z: float) -> float:
    return p + z * math.sqrt(p * (1 - p) / n)
