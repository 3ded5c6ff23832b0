"""Fill a ledger with a synthetic year of the L&D pathway, for the report's benchmark and for
looking at the report and the console's Pathway page with realistic figures.

    .venv/bin/python bench/seed_year.py --url postgresql://postgres@127.0.0.1:5432/test \\
        --alerts 1000000                       # ~40 sites, ~1.6 referrals each, outcomes over weeks
    .venv/bin/python bench/seed_year.py --url sqlite:///year.db --alerts 20000 --year 2026

Everything is made up and coded: site codes (custody suites C01…, courts M01…), endpoint names,
codes and times; ids are sequential (`y-<n>`), references are `R<n>`. Sites differ in volume
(log-normal) and in their pathway rates (a few sites well outside the rest, so the funnel plots
have real outliers). Written straight into the ledger's tables in batches, through the ledger's
own table definitions (so the schema is the hub's), not through the pipeline.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.tables import (
    alert_vulnerabilities_table,
    alerts_table,
    outcomes_table,
    referrals_table,
    rejections_table,
)

SERVICES = ("ld-team", "drugs-alcohol", "mental-health", "housing", "youth-justice-health")
VULNERABILITIES = (
    ("mental_health", 0.55),
    ("substance_misuse", 0.30),
    ("alcohol_misuse", 0.25),
    ("learning_disability", 0.08),
    ("autism", 0.06),
    ("physical_health", 0.12),
    ("unstable_accommodation", 0.18),
    ("self_harm_suicide_risk", 0.15),
    ("domestic_abuse", 0.07),
    ("financial_hardship", 0.10),
    ("speech_language_communication", 0.05),
)
SLA_HOURS = {"emergency": 4, "urgent": 24, "routine": 120}
PATHS = ("person.nhs_number", "consent.status", "source.reference", "urgency", "person.name")


def sites(count: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        court = i % 4 == 3
        out.append(
            {
                "code": f"{'M' if court else 'C'}{i + 1:02d}",
                "kind": "court" if court else "custody",
                "weight": rng.lognormvariate(0, 0.8),
                # most sites near the usual rates; every 9th well below, every 13th above
                "assess": 0.62 * (0.7 if i % 9 == 4 else 1.2 if i % 13 == 6 else 1.0)
                + rng.gauss(0, 0.02),
                "reject": 0.01 + (0.05 if i % 11 == 2 else 0.0),
            }
        )
    return out


def seed(url: str, *, alerts: int, site_count: int, year: int, seed_value: int) -> dict[str, int]:
    rng = random.Random(seed_value)
    SqlLedger(url).close()  # creates the tables (and their indexes) the hub would
    ledger = SqlLedger(url)
    engine = ledger._engine  # the benchmark writes in bulk; the hub never does
    all_sites = sites(site_count, rng)
    weights = [s["weight"] for s in all_sites]
    start = datetime(year, 1, 1, tzinfo=UTC)
    seconds = (datetime(year + 1, 1, 1, tzinfo=UTC) - start).total_seconds()
    counts = dict.fromkeys(("alerts", "vulnerabilities", "referrals", "outcomes", "rejections"), 0)
    batch = 20_000
    for first in range(0, alerts, batch):
        rows: dict[str, list[dict[str, Any]]] = {k: [] for k in counts}
        for n in range(first, min(first + batch, alerts)):
            site = rng.choices(all_sites, weights)[0]
            received = start + timedelta(seconds=rng.random() * seconds)
            if rng.random() < site["reject"]:
                rows["rejections"].append(
                    {
                        "alert_id": f"y-rej-{n}",
                        "source_kind": site["kind"],
                        "organisation_code": site["code"],
                        "reference": None,
                        "problem_count": 1,
                        "problem_paths": [rng.choice(PATHS)],
                        "at": received,
                    }
                )
                continue
            _alert(rows, n, site, received, rng)
        with engine.begin() as conn:
            for name, table in (
                ("alerts", alerts_table),
                ("vulnerabilities", alert_vulnerabilities_table),
                ("referrals", referrals_table),
                ("outcomes", outcomes_table),
                ("rejections", rejections_table),
            ):
                if rows[name]:
                    conn.execute(table.insert(), rows[name])
                    counts[name] += len(rows[name])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:  # fresh statistics, as autovacuum would give in time
            conn.execute(sa.text("ANALYZE"))
    ledger.close()
    return counts


def _alert(
    rows: dict[str, list[dict[str, Any]]],
    n: int,
    site: dict[str, Any],
    received: datetime,
    rng: random.Random,
) -> None:
    alert_id = f"y-{n}"
    pathway = "youth" if rng.random() < 0.12 else "adult"
    urgency = rng.choices(("routine", "urgent", "emergency"), (0.6, 0.35, 0.05))[0]
    consent = rng.choices(
        ("given", "refused", "not_asked", "lacks_capacity"), (0.78, 0.1, 0.08, 0.04)
    )[0]
    rows["alerts"].append(
        {
            "alert_id": alert_id,
            "body_sha256": "0" * 64,
            "source_kind": site["kind"],
            "organisation_code": site["code"],
            "reference": f"R{n}",
            "pathway": pathway,
            "urgency": urgency,
            "consent_status": consent,
            "share_with_justice": consent == "given",
            "received_at": received,
            "state": "routed",
            "rule": "default",
            "updated_at": received,
            "consent_recorded_at": received,
            "cancelled": None,
        }
    )
    for kind, p in VULNERABILITIES:
        if rng.random() < p:
            rows["vulnerabilities"].append({"alert_id": alert_id, "type": kind})
    services = ["ld-team"]
    if rng.random() < 0.45:
        services.append(rng.choice(SERVICES[1:4]))
    if rng.random() < 0.15:
        services.append("youth-justice-health" if pathway == "youth" else "housing")
    for i, service in enumerate(dict.fromkeys(services)):
        _referral(rows, f"{alert_id}-{i}", alert_id, service, site, urgency, received, rng)


def _referral(
    rows: dict[str, list[dict[str, Any]]],
    bundle_id: str,
    alert_id: str,
    service: str,
    site: dict[str, Any],
    urgency: str,
    received: datetime,
    rng: random.Random,
) -> None:
    delivered = (
        received + timedelta(seconds=rng.expovariate(1 / 40)) if rng.random() < 0.985 else None
    )
    due = received + timedelta(hours=SLA_HOURS[urgency])
    scale = {"emergency": 0.3, "urgent": 1.0, "routine": 3.0}[urgency]
    at = delivered
    outcomes: list[tuple[str, datetime]] = []
    if delivered is not None and rng.random() < 0.9:
        at = delivered + timedelta(hours=rng.expovariate(1 / (6 * scale)))
        outcomes.append(("accepted", at))
        if rng.random() < 0.5:
            at += timedelta(hours=rng.expovariate(1 / (12 * scale)))
            outcomes.append(("screened", at))
        if rng.random() < min(0.97, site["assess"] / 0.9):
            at += timedelta(hours=rng.expovariate(1 / (30 * scale)))
            outcomes.append(("assessed", at))
            if rng.random() < 0.3:
                at += timedelta(hours=rng.expovariate(1 / 48))
                outcomes.append(("referred_on", at))
            at += timedelta(days=rng.uniform(2, 21))
            outcomes.append((rng.choices(("attended", "did_not_attend"), (0.7, 0.3))[0], at))
        elif rng.random() < 0.4:
            at += timedelta(hours=rng.expovariate(1 / 24))
            outcomes.append(("declined", at))
        if rng.random() < 0.8:
            outcomes.append(("closed", at + timedelta(days=rng.uniform(1, 30))))
    first = outcomes[0][1] if outcomes else None
    overdue = None if first is not None and first <= due else due
    rows["referrals"].append(
        {
            "bundle_id": bundle_id,
            "alert_id": alert_id,
            "endpoint": service,
            "request_id": f"q-{bundle_id}",
            "state": "delivered" if delivered else "queued",
            "attempts": 1,
            "delivered_at": delivered,
            "kind": "new",
            "change_id": None,
            "created_at": received,
            "due_at": due,
            "overdue_at": overdue,
            "overdue_resolved_at": first if overdue is not None and first is not None else None,
        }
    )
    for i, (status, when) in enumerate(outcomes):
        rows["outcomes"].append(
            {
                "outcome_id": f"o-{bundle_id}-{i}",
                "alert_id": alert_id,
                "bundle_id": bundle_id,
                "status": status,
                "at": when,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the ledger database URL")
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=40)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    began = time.perf_counter()
    counts = seed(
        args.url, alerts=args.alerts, site_count=args.sites, year=args.year, seed_value=args.seed
    )
    print(f"seeded in {time.perf_counter() - began:.1f} s: {counts}")


if __name__ == "__main__":
    main()
