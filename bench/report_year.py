"""How long the pathway report takes over a seeded ledger (bench/seed_year.py): the full year by
each grouping, and one month by site (what the console's Pathway page reads), as `hub report`
computes them (read-only reader, then suppression): from the summary tables once
`hub report refresh` has run, all live before. `--refresh full` first times a full refresh and
then `--repeat` incremental ones (`--refresh incremental`: only those).

    .venv/bin/python bench/report_year.py --url postgresql://…/test?options=-csearch_path%3Dx \
        --refresh full

A measurement, not a test. Prints one line per run: the median of --repeat, and every time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from hub.adapters.sql.report_summary import SqlReportRefresher
from hub.adapters.sql.reports import SqlReportReader
from hub.operations.reports.disclosure import publish
from hub.operations.reports.measures import GroupBy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refresh", choices=("none", "full", "incremental"), default="none")
    parser.add_argument(
        "--now", type=datetime.fromisoformat, help="the refreshes' clock (default: now, UTC)"
    )
    parser.add_argument("--only-month", action="store_true", help="time the month alone")
    args = parser.parse_args()
    if args.refresh != "none":
        refresher = SqlReportRefresher(args.url)
        try:
            kinds = (["full"] if args.refresh == "full" else []) + ["incremental"] * args.repeat
            for kind in kinds:
                began = time.perf_counter()
                result = refresher.refresh(now=args.now or datetime.now(UTC), full=kind == "full")
                print(
                    f"refresh {kind:11} {time.perf_counter() - began:7.2f} s  "
                    f"({result.alerts} alerts summarised)",
                    flush=True,
                )
        finally:
            refresher.close()
    year = (datetime(args.year, 1, 1, tzinfo=UTC), datetime(args.year + 1, 1, 1, tzinfo=UTC))
    month = (datetime(args.year, 3, 1, tzinfo=UTC), datetime(args.year, 4, 1, tzinfo=UTC))
    runs = [] if args.only_month else [("year", g, year) for g in GroupBy]
    runs.append(("month", GroupBy.SITE, month))
    reader = SqlReportReader(args.url, timeout=600)
    try:
        for label, group_by, (start, end) in runs:
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                report = reader.report(start, end, group_by)
                publish(report)
                times.append(time.perf_counter() - began)
            print(
                f"{label:5} by {group_by.value:13} {statistics.median(times):7.2f} s  "
                f"(runs {', '.join(f'{t:.2f}' for t in times)}; "
                f"{report.total['identified']} identified)",
                flush=True,
            )
    finally:
        reader.close()


if __name__ == "__main__":
    main()
