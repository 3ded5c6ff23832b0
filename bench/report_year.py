"""How long the pathway report takes over a seeded ledger (bench/seed_year.py): the full year by
each grouping, and one month by site (what the console's Pathway page reads), as `hub report`
computes them (read-only reader, aggregation in the database on PostgreSQL, then suppression).

    .venv/bin/python bench/report_year.py --url postgresql://…/test?options=-csearch_path%3Dx

A measurement, not a test. Prints one line per run: the best of --repeat.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from hub.adapters.sql.reports import SqlReportReader
from hub.operations.reports.disclosure import publish
from hub.operations.reports.measures import GroupBy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    year = (datetime(args.year, 1, 1, tzinfo=UTC), datetime(args.year + 1, 1, 1, tzinfo=UTC))
    month = (datetime(args.year, 3, 1, tzinfo=UTC), datetime(args.year, 4, 1, tzinfo=UTC))
    runs = [("year", g, year) for g in GroupBy] + [("month", GroupBy.SITE, month)]
    reader = SqlReportReader(args.url, timeout=600)
    try:
        for label, group_by, (start, end) in runs:
            best = float("inf")
            for _ in range(args.repeat):
                began = time.perf_counter()
                report = reader.report(start, end, group_by)
                publish(report)
                best = min(best, time.perf_counter() - began)
            print(
                f"{label:5} by {group_by.value:13} {best:7.2f} s  "
                f"({report.total['identified']} identified)"
            )
    finally:
        reader.close()


if __name__ == "__main__":
    main()
