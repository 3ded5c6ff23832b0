"""The published report as HTML: a body fragment (shared with the console's Pathway page) and
a self-contained document (inline CSS and SVG; no script, no link, nothing fetched) that a
service manager can email. Every text is neutralised (hub.security.terminal) and escaped here.
"""

from __future__ import annotations

from html import escape
from typing import Any

from hub.operations.reports.charts import funnel_plot, stage_bars
from hub.security.terminal import neutralise

CSS = """
body{font-family:Arial,sans-serif;margin:1.5em;color:#212b32;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:2px solid #005eb8}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #d8dde0;padding:.25em .5em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f4f5}
.note{color:#4c6272;font-size:.9em}.plots{display:flex;flex-wrap:wrap;gap:1em}
.alarm_high,.alarm_low{color:#da291c;font-weight:bold}.alert_high,.alert_low{color:#b35900}
"""


def _t(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return escape(neutralise(str(value)))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_t(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_body(report: dict[str, Any]) -> str:
    """The report's sections as an HTML fragment (already escaped)."""
    stages = report["stages"]
    by = _t(report["grouped_by"])
    note = (
        "Counts from 1 to 7 are shown as *, other counts are rounded to the nearest 5; rates "
        "are computed from exact numbers and withheld (–) where either side is suppressed."
        if report["suppressed"]
        else "EXACT counts: this view was audited."
    )
    parts = [
        f'<p class="note">Period {_t(report["period"]["from"])} to {_t(report["period"]["to"])}'
        f" (end excluded), grouped by {by}. {escape(note)} People identified in the period are "
        "followed to their outcomes, whenever those came.</p>",
        "<h2>Pathway funnel</h2>",
        stage_bars(stages, report["total"]),
        _table(
            [report["grouped_by"], *stages],
            [[_t(r["group"]), *(_t(r[s]) for s in stages)] for r in report["funnel"]]
            + [["<b>all</b>", *(_t(report["total"][s]) for s in stages)]],
        ),
        "<h2>Variation between groups</h2>",
        '<p class="note">Funnel plots: each point is a group, its rate against its size; the '
        "line is the overall rate, dashed curves the 95 % and solid curves the 99.8 % control "
        "limits (normal approximation). Points beyond 99.8 % are alarms, beyond 95 % alerts."
        "</p>",
        '<div class="plots">' + "".join(funnel_plot(p) for p in report["variation"]) + "</div>",
        _table(
            ["rate", "group", "n", "rate", "overall", "flag"],
            [
                [
                    _t(plot["rate"]),
                    _t(p["group"]),
                    _t(p["n"]),
                    _pct(p.get("rate")),
                    _pct(plot["overall"]),
                    f'<span class="{_t(p.get("flag", "withheld"))}">'
                    f"{_t(p.get('flag', 'withheld'))}</span>",
                ]
                for plot in report["variation"]
                for p in plot["points"]
                if p.get("flag", "within") != "within"
            ],
        ),
        "<h2>Timeliness (hours from identification)</h2>",
        _table(
            ["urgency", "interval", "referrals", "median", "90th percentile"],
            [
                [
                    _t(t["urgency"]),
                    _t(t["interval"]),
                    _t(t["n"]),
                    _t(t["median_hours"]),
                    _t(t["p90_hours"]),
                ]
                for t in report["timeliness"]
            ],
        ),
        "<h2>Overdue against the service level</h2>",
        _table(
            ["service", "with a service level", "overdue", "share"],
            [
                [_t(o["service"]), _t(o["with_service_level"]), _t(o["overdue"]), _pct(o["share"])]
                for o in report["overdue"]
            ],
        ),
        "<h2>Case mix per site</h2>",
    ]
    for dim in ("vulnerability", "pathway", "urgency", "consent"):
        codes = sorted({c for site in report["case_mix"] for c in site[dim]})
        parts.append(
            _table(
                ["site", *codes],
                [
                    [_t(s["site"]), *(_t(s[dim].get(c, 0)) for c in codes)]
                    for s in report["case_mix"]
                ],
            )
        )
    parts.append("<h2>Rejected alerts per sending site, by field path</h2>")
    paths = sorted({p for r in report["rejections"] for p in r["by_field_path"]})
    parts.append(
        _table(
            ["site", "rejected", *paths],
            [
                [
                    _t(r["site"]),
                    _t(r["rejected"]),
                    *(_t(r["by_field_path"].get(p, 0)) for p in paths),
                ]
                for r in report["rejections"]
            ],
        )
    )
    return "\n".join(parts)


def render_html(report: dict[str, Any]) -> str:
    """A complete, self-contained HTML document of the report."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>L&amp;D pathway report</title>"
        f"<style>{CSS}</style></head><body><h1>L&amp;D pathway report</h1>\n"
        f"{report_body(report)}\n</body></html>\n"
    )
