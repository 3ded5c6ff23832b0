"""The benchmark's own parts measured alone, to show they are not what limits its figures.

    .venv/bin/python bench/self_check.py                 # 5,000 publishes, 5,000 POSTs
    .venv/bin/python bench/self_check.py --json FILE

1. The publisher: confirmed publishes a second of an alert-sized persistent message to a
   quorum queue that has no consumer, once waiting for each confirm (how throughput.py
   publishes alerts, as a custody system does) and once with up to 200 in flight (how the
   broker_limit run and replay.py publish).
2. The FakeTrust: POSTs a second of a Bundle-sized body to its `$process-message`, from
   several threads each with its own keep-alive httpx client (as the hub's delivery
   consumers post), with a new X-Request-Id each time so each is a first receipt.

A measurement, not a test. Needs RabbitMQ (rabbitmqctl on PATH, for the vhost).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench import pipelined  # noqa: E402
from bench.throughput import (  # noqa: E402
    ENDPOINT,
    SERVICE,
    CpuMeter,
    TimedTrust,
    declare_quorum_queues,
    filler_like,
    make_alerts,
    new_vhost,
    own_cpu_seconds,
    publish_confirmed,
    run_cleanups,
)

QUEUE = "bench.selfcheck"


def publisher_alone(url: str, n: int, *, pipelined_confirms: bool) -> dict[str, float]:
    declare_quorum_queues(url, QUEUE)
    messages = filler_like(make_alerts(1)[0][1], n)
    own0, meter = own_cpu_seconds(), CpuMeter([])
    if pipelined_confirms:
        seconds = pipelined.publish_pipelined(
            url, messages, exchange="", routing_key=QUEUE, stamps={}
        )
    else:
        seconds = publish_confirmed(url, messages, exchange="", routing_key=QUEUE, stamps={})
    return {
        "rate": n / seconds,
        "bench_cpu_pct": 100 * (own_cpu_seconds() - own0) / seconds,
        "broker_cpu_ms_per_msg": 1000 * meter.read()["broker"] / n,
    }


def bundle_like(size: int) -> bytes:
    """A JSON Bundle of about `size` bytes (the trust parses it and reads its id)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "entry": []}
    while len(json.dumps(bundle)) < size:
        bundle["entry"].append(
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {"resourceType": "Basic"}}
        )
    return json.dumps(bundle).encode()


def post_many(target: str, body: bytes, count: int, threads: int, out: Any) -> None:
    """`count` POSTs from `threads` threads, each with its own keep-alive httpx client; puts
    (seconds, errors) on `out`. Runs in a child process, so the trust has this one to itself."""
    errors: list[int] = []

    def loop() -> None:
        with httpx.Client(timeout=10) as client:
            for _ in range(count // threads):
                response = client.post(
                    target,
                    content=body,
                    headers={
                        "Content-Type": "application/fhir+json",
                        "X-Request-Id": str(uuid.uuid4()),
                        "X-Correlation-Id": str(uuid.uuid4()),
                    },
                )
                if response.status_code != 200:
                    errors.append(response.status_code)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((time.perf_counter() - started, len(errors)))


def trust_alone(n: int, *, threads: int, bundle_bytes: int) -> dict[str, float]:
    trust = TimedTrust(services={ENDPOINT: SERVICE}, hub_base_url=None, replies=None).start()
    body = bundle_like(bundle_bytes)
    count = n // threads * threads
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(
        target=post_many,
        args=(trust.url(ENDPOINT) + "/$process-message", body, count, threads, out),
    )
    own0 = own_cpu_seconds()
    try:
        child.start()
        seconds, errors = out.get(timeout=600)
        child.join(30)
        own = own_cpu_seconds() - own0
    finally:
        trust.stop()
    return {
        "rate": count / seconds,
        "threads": threads,
        "bundle_bytes": len(body),
        "errors": errors,
        "received": len(trust.received),
        # the trust's process, with the clients in another one
        "trust_cpu_pct": 100 * own / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=5000, help="publishes per publisher run")
    ap.add_argument("--posts", type=int, default=5000, help="POSTs to the trust")
    ap.add_argument("--threads", type=int, default=4, help="posting threads (max_in_flight)")
    ap.add_argument(
        "--bundle-bytes", type=int, default=7200, help="body size (a Bundle is about 7.2 kB)"
    )
    ap.add_argument("--amqp-url", default=None, help="default: a fresh vhost, deleted after")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    cleanups: list[Any] = []
    try:
        url = args.amqp_url or new_vhost(cleanups)
        figures = {
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
            "publisher_sync": publisher_alone(url, args.messages, pipelined_confirms=False),
            "publisher_pipelined": publisher_alone(url, args.messages, pipelined_confirms=True),
            "trust": trust_alone(args.posts, threads=args.threads, bundle_bytes=args.bundle_bytes),
        }
    finally:
        run_cleanups(cleanups)
    sync, piped, trust = (
        figures["publisher_sync"],
        figures["publisher_pipelined"],
        figures["trust"],
    )
    print(f"cpus={figures['cpus']}  load={figures['load_1min']:.1f}")
    for name, f in (("one confirm at a time", sync), ("200 confirms in flight", piped)):
        print(
            f"publisher alone, {name}: {f['rate']:.0f} publishes/s "
            f"(benchmark CPU {f['bench_cpu_pct']:.0f}% of a core, "
            f"broker {f['broker_cpu_ms_per_msg']:.2f} ms CPU per message)"
        )
    print(
        f"FakeTrust alone: {trust['rate']:.0f} POSTs/s of {trust['bundle_bytes']} B from "
        f"{trust['threads']} keep-alive clients in another process ({trust['errors']} errors, "
        f"{trust['received']} received; the trust's process at "
        f"{trust['trust_cpu_pct']:.0f}% of a core)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
