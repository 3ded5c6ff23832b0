"""The published report (hub.operations.reports.disclosure.publish) as a terminal table or CSV.

Input is already suppressed: these functions only lay it out. Group names are codes the
ledger holds (organisation codes, endpoint names); the caller neutralises what it prints.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

_LABELS = {
    "identified": "ident",
    "referred": "refd",
    "accepted": "accpt",
    "screened": "scrn",
    "assessed": "assd",
    "referred_on": "ref-on",
    "attended": "attd",
    "did_not_attend": "dna",
    "declined": "decl",
    "closed": "closed",
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> Iterator[str]:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    yield "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(header, widths, strict=True))
    )
    for row in rows:
        yield "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )


def table_lines(report: dict[str, Any]) -> Iterator[str]:
    period = report["period"]
    yield (
        f"L&D pathway report {period['from']} to {period['to']} (end exclusive), "
        f"by {report['grouped_by']}"
    )
    yield (
        "counts of 1-7 shown as *, others rounded to the nearest 5"
        if report["suppressed"]
        else "EXACT counts (audited)"
    )
    yield ""
    yield "Pathway funnel (people identified, and how many reached each stage)"
    stages = report["stages"]
    rows = [[row["group"], *(_cell(row[s]) for s in stages)] for row in report["funnel"]]
    rows.append(["ALL", *(_cell(report["total"][s]) for s in stages)])
    yield from _table([report["grouped_by"], *(_LABELS[s] for s in stages)], rows)
    yield ""
    yield "Timeliness from identification, hours (median / 90th percentile)"
    yield from _table(
        ["urgency", "interval", "n", "median", "p90"],
        [
            [
                t["urgency"],
                t["interval"],
                _cell(t["n"]),
                _cell(t["median_hours"]),
                _cell(t["p90_hours"]),
            ]
            for t in report["timeliness"]
        ],
    )
    yield ""
    yield "Overdue against the service level, per service"
    yield from _table(
        ["service", "with level", "overdue", "share"],
        [
            [o["service"], _cell(o["with_service_level"]), _cell(o["overdue"]), _pct(o["share"])]
            for o in report["overdue"]
        ],
    )
    yield ""
    yield "Variation between groups (funnel plot flags: beyond 95 % alert, beyond 99.8 % alarm)"
    rows = []
    for plot in report["variation"]:
        for p in plot["points"]:
            rows.append(
                [
                    plot["rate"],
                    p["group"],
                    _cell(p["n"]),
                    _pct(p.get("rate")),
                    _pct(plot["overall"]),
                    p.get("flag", "withheld"),
                ]
            )
    yield from _table(["rate", "group", "n", "rate %", "overall %", "flag"], rows)
    yield ""
    yield "Case mix per site"
    for site in report["case_mix"]:
        parts = [
            f"{dim}: " + ", ".join(f"{code} {_cell(n)}" for code, n in site[dim].items())
            for dim in ("vulnerability", "pathway", "urgency", "consent")
        ]
        yield f"{site['site']}  " + "; ".join(parts)
    yield ""
    yield "Rejected alerts per sending site, by field path"
    for r in report["rejections"]:
        paths = ", ".join(f"{p} {_cell(n)}" for p, n in r["by_field_path"].items())
        yield f"{r['site']}  rejected {_cell(r['rejected'])}  ({paths})"


def csv_rows(report: dict[str, Any]) -> Iterator[list[str]]:
    """Long form, one figure a row: section, group, measure, value (`*` where suppressed,
    empty where a rate or time is withheld)."""
    yield ["section", "group", "measure", "value"]

    def v(value: Any) -> str:
        return "" if value is None else str(value)

    for row in report["funnel"]:
        for s in report["stages"]:
            yield ["funnel", row["group"], s, v(row[s])]
    for s in report["stages"]:
        yield ["funnel", "ALL", s, v(report["total"][s])]
    for t in report["timeliness"]:
        for m in ("n", "median_hours", "p90_hours"):
            yield ["timeliness", t["urgency"], f"{t['interval']}.{m}", v(t[m])]
    for o in report["overdue"]:
        for m in ("with_service_level", "overdue", "share"):
            yield ["overdue", o["service"], m, v(o[m])]
    for site in report["case_mix"]:
        for dim in ("vulnerability", "pathway", "urgency", "consent"):
            for code, n in site[dim].items():
                yield ["case_mix", site["site"], f"{dim}.{code}", v(n)]
    for r in report["rejections"]:
        yield ["rejections", r["site"], "rejected", v(r["rejected"])]
        for p, n in r["by_field_path"].items():
            yield ["rejections", r["site"], f"path.{p}", v(n)]
    for plot in report["variation"]:
        yield ["variation", "ALL", f"{plot['rate']}.overall", v(plot["overall"])]
        for p in plot["points"]:
            for m in ("n", "rate", "lower95", "upper95", "lower998", "upper998", "flag"):
                yield ["variation", p["group"], f"{plot['rate']}.{m}", v(p.get(m))]


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv_rows(report):
        # A leading =, +, - or @ is a formula to a spreadsheet: group names come from outside.
        writer.writerow([_inert(c) for c in row])
    return out.getvalue()


def _inert(cell: str) -> str:
    """A cell starting =, +, - or @ is a formula to a spreadsheet; group names come from
    outside, so such a text is quoted. Numbers (a negative time, say) stay numbers."""
    if cell[:1] not in ("=", "+", "-", "@"):
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell


def summary_lines(report: dict[str, Any]) -> Iterator[str]:
    """A few lines on the whole period: the funnel's totals, rejections and the median time
    to delivery (as published: suppressed unless the report is exact)."""
    total = report["total"]
    yield "Pathway summary" + ("" if report["suppressed"] else " (exact counts)") + ":"
    yield "  " + " → ".join(f"{stage} {_cell(total[stage])}" for stage in report["stages"])
    rejected = sum(r["rejected"] for r in report["rejections"] if isinstance(r["rejected"], int))
    starred = any(not isinstance(r["rejected"], int) for r in report["rejections"])
    yield f"  rejected alerts {rejected}{' (+ suppressed)' if starred else ''}"
    for t in report["timeliness"]:
        if t["interval"] == "to_delivery" and t["median_hours"] is not None:
            seconds = 3600 * t["median_hours"]
            took = f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
            yield f"  {t['urgency']}: median {took} from identification to delivery"
