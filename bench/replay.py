"""Drain rate of a backlog: how fast the hub works off alerts that queued while it was down.

    .venv/bin/python bench/replay.py                          # 100,000 alerts, PostgreSQL
    .venv/bin/python bench/replay.py --alerts 10000 --workers 2 --outcomes

With the hub stopped (one start and stop first declares the topology and migrates a fresh
ledger), N synthetic custody alerts are published to justice.alerts with up to 200 confirms
in flight, so they all wait in hub.alerts.custody. Then the hub starts (N workers, competing
consumers) and the clock runs until every alert's Bundle reached the FakeTrust, and with
--outcomes until every `received` outcome was published to justice.outcomes too. Prints the
drain rate and what a 1,000,000-alert year would take at it. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pika  # noqa: E402

from bench import pipelined  # noqa: E402
from bench.throughput import (  # noqa: E402
    ENDPOINT,
    ROUTING_KEY,
    SERVICE,
    CpuMeter,
    TimedTrust,
    add_hub_arguments,
    database_name,
    free_port,
    hub_env,
    ledger_url,
    make_alerts,
    new_vhost,
    run_cleanups,
    start_hubs,
    stop_hubs,
    write_hub_config,
)

ALERT_QUEUE = "hub.alerts.custody"
OUTCOME_TAP = "bench.outcomes.tap"  # a copy of everything the hub tells the justice side
YEAR = 1_000_000


def queue_depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def tap_outcomes(url: str) -> None:
    """A quorum queue bound to justice.outcomes for every routing key, to count them."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.queue_declare(OUTCOME_TAP, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(OUTCOME_TAP, "justice.outcomes", routing_key="#")
    finally:
        conn.close()


def wait_depth(url: str, queue: str, at_least: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    depth = queue_depth(url, queue)
    while depth < at_least and time.monotonic() < deadline:
        time.sleep(0.5)
        depth = queue_depth(url, queue)
    return depth


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_hub_arguments(ap)
    ap.set_defaults(alerts=100_000)
    ap.add_argument(
        "--outcomes",
        action="store_true",
        help="also wait until every `received` outcome was published to justice.outcomes",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="give up draining after this many seconds (default: as if at 10 alerts/s, "
        "at least 600)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    n = args.alerts
    timeout = args.timeout or max(600.0, n / 10)

    cleanups: list[Any] = []
    workdir = Path(tempfile.mkdtemp(prefix="ldreplay-"))
    trust = TimedTrust(services={ENDPOINT: SERVICE}, hub_base_url=None, replies=None).start()
    cleanups.append(trust.stop)
    try:
        url = args.amqp_url or new_vhost(cleanups)
        db_url, db_stats = ledger_url(args.db, workdir, cleanups)
        config = write_hub_config(
            workdir / "config",
            trust=trust,
            api_port=free_port(),
            max_in_flight=args.max_in_flight,
            prefetch=args.prefetch,
            log_level=args.log_level,
        )
        env = hub_env(url, db_url, args.log_level)
        print("declaring the topology and migrating the ledger (one hub start) ...", flush=True)
        (workdir / "setup").mkdir()
        stop_hubs(start_hubs(config, env, workdir=workdir / "setup", workers=1, mode="subprocess"))
        if args.outcomes:
            tap_outcomes(url)

        alerts = make_alerts(n)
        print(f"queueing {n} alerts on justice.alerts (hub stopped) ...", flush=True)
        publish_seconds = pipelined.publish_pipelined(
            url, alerts, exchange="justice.alerts", routing_key=ROUTING_KEY, stamps={}
        )
        depth = queue_depth(url, ALERT_QUEUE)
        print(f"  {n / publish_seconds:.0f} alerts/s; {ALERT_QUEUE} holds {depth}", flush=True)

        print(f"starting {args.workers} hub process(es) and draining ...", flush=True)
        meter = CpuMeter([], database=database_name(db_url))
        started_ns = time.time_ns()
        hubs = start_hubs(config, env, workdir=workdir, workers=args.workers, mode="subprocess")
        try:
            meter.hub_pids = [h.pid for h in hubs]  # their CPU so far counts: they are new
            ids = {a for a, _ in alerts}
            complete = trust.wait_for(ids, timeout=timeout)
            bundles_done_ns = max(trust.arrivals.get(a, 0) for a in ids)
            outcomes = None
            outcomes_done_ns = None
            if args.outcomes:
                outcomes = wait_depth(url, OUTCOME_TAP, n, timeout=max(60.0, timeout / 10))
                outcomes_done_ns = time.time_ns()
            cpu = meter.read()
            rss = [h.peak_rss_kib() for h in hubs]
        finally:
            stop_hubs(hubs)

        arrived = [trust.arrivals[a] for a in ids if a in trust.arrivals]
        first_ns = min(arrived, default=started_ns)
        drain_s = (bundles_done_ns - started_ns) / 1e9
        steady_s = (bundles_done_ns - first_ns) / 1e9
        figures: dict[str, Any] = {
            "n": n,
            "db": args.db,
            "workers": args.workers,
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
            "queue_rate": n / publish_seconds,
            "queued": depth,
            "delivered": len(arrived),
            "complete": complete,
            "drain_seconds": drain_s,  # hub start -> last Bundle received, start-up included
            "drain_rate": len(arrived) / drain_s if drain_s > 0 else float("nan"),
            "steady_rate": (len(arrived) - 1) / steady_s if steady_s > 0 else float("nan"),
            "startup_seconds": (first_ns - started_ns) / 1e9,
            "cpu_ms_per_alert": {k: round(1000 * v / n, 3) for k, v in cpu.items()},
            "peak_rss_kib_each": rss,
            "duplicates": len([r for r in trust.received if r.duplicate]),
        }
        if outcomes is not None and outcomes_done_ns is not None:
            figures["outcomes"] = outcomes
            outcome_s = (outcomes_done_ns - started_ns) / 1e9
            figures["outcomes_rate"] = outcomes / outcome_s
        if db_stats:
            time.sleep(0.5)
            figures["db_per_alert"] = {k: round(v / n, 1) for k, v in db_stats().items()}
        figures["year_hours"] = YEAR / figures["drain_rate"] / 3600
        print_figures(figures)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0 if complete else 1
    finally:
        run_cleanups(cleanups)


def print_figures(f: dict[str, Any]) -> None:
    print()
    print(
        f"N={f['n']}  db={f['db']}  workers={f['workers']}  cpus={f['cpus']}  "
        f"load={f['load_1min']:.1f}"
    )
    print(f"queued {f['queued']} alerts at {f['queue_rate']:.0f}/s (pipelined confirms)")
    print(
        f"drained {f['delivered']}/{f['n']} Bundles in {f['drain_seconds']:.1f} s: "
        f"{f['drain_rate']:.1f} alerts/s from hub start "
        f"({f['steady_rate']:.1f}/s from the first Bundle; start-up {f['startup_seconds']:.1f} s)"
    )
    if "outcomes" in f:
        print(f"received outcomes published: {f['outcomes']} ({f['outcomes_rate']:.1f}/s)")
    cpu = f["cpu_ms_per_alert"]
    print(
        f"CPU ms per alert: hub {cpu['hub']:.2f}, broker {cpu['broker']:.2f}, "
        f"PostgreSQL {cpu['postgres']:.2f}"
        + (f" (its backends {cpu['postgres_db']:.2f})" if "postgres_db" in cpu else "")
    )
    if "db_per_alert" in f:
        print(
            "PostgreSQL per alert: " + ", ".join(f"{k} {v:g}" for k, v in f["db_per_alert"].items())
        )
    print("peak RSS: " + ", ".join(f"{r / 1024:.1f} MiB" for r in f["peak_rss_kib_each"] if r))
    if f["duplicates"]:
        print(f"duplicate deliveries seen by the trust: {f['duplicates']}")
    print(f"a {YEAR:,}-alert year at {f['drain_rate']:.1f} alerts/s: {f['year_hours']:.1f} hours")


if __name__ == "__main__":
    sys.exit(main())
