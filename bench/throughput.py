"""Throughput and latency of the hub against a raw-broker baseline, in one run.

    .venv/bin/python bench/throughput.py                       # N=1000, PostgreSQL ledger
    .venv/bin/python bench/throughput.py --alerts 300 --db sqlite
    .venv/bin/python bench/throughput.py --workers 2           # two hub processes
    .venv/bin/python bench/throughput.py --hub-mode inprocess  # Hub() in this process instead

What it does (see docs/benchmarks.md for how to read the figures):

1. Baseline: on two quorum queues in the benchmark's vhost, publish N messages the size of an
   alert body with pika and publisher confirms (one confirm waited for per publish, as the
   justice side does), while a pika consumer takes each one, republishes it to the second
   quorum queue on a confirmed channel and acks it. Latency = publish timestamp (a header) to
   the moment the republish is confirmed.
2. broker_limit: the same hop pipelined (bench/pipelined.py, py-amqp): publisher and
   republisher each keep up to 200 confirms in flight, and the consumer acks (multiple=True)
   only what has its republish confirmed. The broker's own limit on this machine.
3. The hub: a FakeTrust in this process (no replies, keep-alive) and the hub (by default as
   --workers subprocesses, `python -m hub run`, as it runs in production, competing on the
   same queues and ledger) with routes that send every alert to exactly one endpoint. N
   alerts are published to justice.alerts with pika + confirms; latency = the trust's receipt
   time of the Bundle (matched by X-Correlation-Id = alert_id) - publish time.
4. A table of all three, the ratios hub/baseline and hub/broker_limit, each hub process's peak
   RSS (VmHWM), CPU per alert of the hub processes, the broker (beam.smp) and PostgreSQL, and
   PostgreSQL's commits per alert (pg_stat_database).

A measurement, not a test: nothing is asserted. Needs RabbitMQ (rabbitmqctl on PATH, for the
vhost) and, for --db postgres, PostgreSQL; a fresh vhost and a fresh database are created and
dropped again. bench/replay.py drains a queued backlog; bench/self_check.py measures the
benchmark's own publisher and trust alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pika  # noqa: E402

from bench import pipelined  # noqa: E402
from hub.testing.fake_trust import FakeTrust  # noqa: E402
from tests.fixtures.alerts import custody_alert, to_body  # noqa: E402

AMQP_HOST = os.environ.get("HUB_TEST_AMQP_HOST", "127.0.0.1")
PG_ADMIN_URL = os.environ.get("HUB_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
ENDPOINT = "wy-ld"
SERVICE = ("XWY10", "West Yorkshire Liaison and Diversion Service")
ROUTING_KEY = "custody.WYP.identification"  # <kind>.<organisation>.<type>; the alerts are WYP
H_PUBLISHED = "x-bench-published-ns"


# ---------------------------------------------------------------------------------------------
# helpers


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def make_alerts(n: int) -> list[tuple[str, bytes]]:
    """(alert_id, body) pairs; sent_at is now (parse_alert refuses > 5 min in the future)."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    out = []
    for _ in range(n):
        alert = custody_alert(sent_at=now)
        out.append((alert["alert_id"], to_body(alert)))
    return out


@dataclass
class Result:
    name: str
    n: int
    seconds: float  # first publish -> last message done
    publish_seconds: float  # first publish -> last publish confirmed
    latencies_ms: list[float]
    missing: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("nan")

    @property
    def publish_rate(self) -> float:
        return self.n / self.publish_seconds if self.publish_seconds > 0 else float("nan")

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def publish_confirmed(
    url: str,
    messages: list[tuple[str, bytes]],
    *,
    exchange: str,
    routing_key: str,
    stamps: dict[str, int],
    headers: Callable[[int], dict[str, Any]] | None = None,
    rate: float = 0.0,
) -> float:
    """Publish each message and wait for its confirm (pika BlockingChannel, as the justice
    side does), at most `rate` a second when given. Records time.time_ns() just before each
    publish; returns seconds taken."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()
    started = time.perf_counter()
    try:
        for i, (message_id, body) in enumerate(messages):
            if rate > 0:
                wait = started + i / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            now = time.time_ns()
            stamps[message_id] = now
            ch.basic_publish(
                exchange,
                routing_key,
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=message_id,
                    headers=headers(now) if headers else None,
                ),
                mandatory=True,
            )
        return time.perf_counter() - started
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# 1. raw broker baseline


def run_baseline(
    url: str, messages: list[tuple[str, bytes]], *, prefetch: int, rate: float = 0.0
) -> Result:
    params = pika.URLParameters(url)
    q_in, q_out = "bench.baseline.in", "bench.baseline.out"
    declare_quorum_queues(url, q_in, q_out)

    n = len(messages)
    done: dict[str, int] = {}
    latencies: list[float] = []
    ready = threading.Event()
    finished = threading.Event()

    def consume() -> None:
        cconn = pika.BlockingConnection(params)
        pconn = pika.BlockingConnection(params)  # own connection, like the hub's publisher
        cch, pch = cconn.channel(), pconn.channel()
        pch.confirm_delivery()
        cch.basic_qos(prefetch_count=prefetch)

        def on_message(chan: Any, method: Any, props: Any, body: bytes) -> None:
            pch.basic_publish(
                "",
                q_out,
                body,
                pika.BasicProperties(
                    content_type=props.content_type,
                    delivery_mode=2,
                    message_id=props.message_id,
                    headers=props.headers,
                ),
                mandatory=True,
            )  # returns once confirmed
            now = time.time_ns()
            latencies.append((now - int(props.headers[H_PUBLISHED])) / 1e6)
            done[props.message_id] = now
            chan.basic_ack(method.delivery_tag)
            if len(done) >= n:
                chan.stop_consuming()

        cch.basic_consume(q_in, on_message)
        ready.set()
        try:
            cch.start_consuming()
        finally:
            finished.set()
            for c in (cconn, pconn):
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - teardown
                    pass

    thread = threading.Thread(target=consume, name="baseline-consumer", daemon=True)
    thread.start()
    ready.wait(15)
    stamps: dict[str, int] = {}
    pub_seconds = publish_confirmed(
        url,
        messages,
        exchange="",
        routing_key=q_in,
        stamps=stamps,
        headers=lambda ns: {H_PUBLISHED: ns},
        rate=rate,
    )
    finished.wait(timeout=max(60.0, n * 0.1))
    first = min(stamps.values())
    last = max(done.values()) if done else time.time_ns()
    return Result(
        "baseline", n, (last - first) / 1e9, pub_seconds, latencies, missing=n - len(done)
    )


# ---------------------------------------------------------------------------------------------
# 1b. the broker's own limit: the same hop, pipelined


def declare_quorum_queues(url: str, *names: str) -> None:
    """Durable quorum queues, declared and emptied."""
    setup = pika.BlockingConnection(pika.URLParameters(url))
    ch = setup.channel()
    for q in names:
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_purge(q)
    setup.close()


def run_broker_limit(
    url: str, messages: list[tuple[str, bytes]], *, window: int = pipelined.WINDOW
) -> Result:
    """The baseline's hop with up to `window` confirms in flight on both the publisher and
    the republishing consumer, which acks each message only once its republish (and every
    earlier one) is confirmed."""
    q_in, q_out = "bench.limit.in", "bench.limit.out"
    declare_quorum_queues(url, q_in, q_out)
    n = len(messages)
    ready = threading.Event()
    out: list[pipelined.HopResult] = []

    def consume() -> None:
        out.append(
            pipelined.pipelined_hop(
                url,
                queue_in=q_in,
                queue_out=q_out,
                n=n,
                published_header=H_PUBLISHED,
                ready=ready.set,
                window=window,
                timeout=max(60.0, n * 0.1),
            )
        )

    thread = threading.Thread(target=consume, name="limit-consumer", daemon=True)
    thread.start()
    ready.wait(15)
    stamps: dict[str, int] = {}
    own0, meter, wall0 = own_cpu_seconds(), CpuMeter([]), time.perf_counter()
    pub_seconds = pipelined.publish_pipelined(
        url,
        messages,
        exchange="",
        routing_key=q_in,
        stamps=stamps,
        headers=lambda ns: {H_PUBLISHED: ns},
        window=window,
    )
    thread.join(timeout=max(60.0, n * 0.1) + 5)
    own, broker = own_cpu_seconds() - own0, meter.read()["broker"]
    wall = time.perf_counter() - wall0
    hop = out[0] if out else pipelined.HopResult()
    first = min(stamps.values())
    last = max(hop.done.values()) if hop.done else time.time_ns()
    return Result(
        "broker_limit",
        n,
        (last - first) / 1e9,
        pub_seconds,
        hop.latencies_ms,
        missing=n - len(hop.done),
        extra={
            "window": window,
            "nacked": hop.nacked,
            # publisher and hop share this process: under 100 % of a core, the GIL is no limit
            "bench_cpu_pct": 100 * own / wall,
            "broker_cpu_ms_per_msg": round(1000 * broker / n, 3),
        },
    )


# ---------------------------------------------------------------------------------------------
# 2. the hub


class TimedTrust(FakeTrust):
    """FakeTrust that notes when each Bundle arrived, by X-Correlation-Id (= alert_id), and
    keeps connections alive (HTTP/1.1), as a real receiver would: with http.server's HTTP/1.0
    default every POST costs a new TCP connection and a new server thread."""

    def start(self) -> TimedTrust:
        self.arrivals: dict[str, int] = {}
        self.order: list[str] = []  # correlation ids in order of first arrival
        self.arrived = threading.Condition()
        super().start()
        assert self._server is not None
        handler = self._server.RequestHandlerClass  # set before any request arrives
        handler.protocol_version = "HTTP/1.1"
        # It writes the head and the body of an answer apart: without TCP_NODELAY, Nagle and
        # the client's delayed ACK hold each answer on a kept-alive connection for ~40 ms.
        handler.disable_nagle_algorithm = True
        return self

    def _handle(self, request: Any) -> None:
        now = time.time_ns()
        correlation_id = request.headers.get("X-Correlation-Id", "")
        super()._handle(request)
        with self.arrived:
            if correlation_id not in self.arrivals:
                self.arrivals[correlation_id] = now
                self.order.append(correlation_id)
            self.arrived.notify_all()

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        """Until every id in `ids` has arrived (True) or `timeout` seconds passed (False).
        Looks at each arrival once, so a 100,000-alert wait costs the hub no CPU."""
        deadline = time.monotonic() + timeout
        missing = set(ids)
        seen = 0
        with self.arrived:
            while True:
                missing.difference_update(self.order[seen:])
                seen = len(self.order)
                if not missing:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(min(left, 1.0))


def write_hub_config(
    directory: Path,
    *,
    trust: FakeTrust,
    api_port: int,
    max_in_flight: int,
    prefetch: int,
    log_level: str,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hub.yaml").write_text(
        "hub: {ods_code: X26HUB, name: L&D Integration Hub, "
        f"endpoint: 'http://127.0.0.1:{api_port}/fhir'}}\n"
        f"amqp: {{prefetch: {prefetch}}}\n"
        f"api: {{host: 127.0.0.1, port: {api_port}}}\n"
        f"logging: {{level: {log_level}}}\n"
        "endpoints:\n"
        f"  {ENDPOINT}:\n    kind: fhir-rest\n    url: {trust.url(ENDPOINT)}\n"
        f"    ods_code: {SERVICE[0]}\n    organisation_name: {SERVICE[1]}\n"
        f"    timeout_seconds: 10\n    max_in_flight: {max_in_flight}\n"
    )
    # No rules: every alert goes to the default, i.e. exactly one referral per alert.
    (directory / "routes.yaml").write_text(f"default: [{ENDPOINT}]\n")
    return directory


def peak_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class HubProcess:
    """`python -m hub run --config DIR` as a child process, log to a file."""

    def __init__(
        self, config: Path, env: dict[str, str], log_path: Path, api_port: int, profile: Path | None
    ) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "run", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid
        self.api_port = api_port
        self.profile = profile
        self.spy: subprocess.Popen[bytes] | None = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"hub exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.api_port}/readyz", timeout=2
                ) as resp:
                    if json.loads(resp.read()).get("ready"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"hub not ready after {timeout:.0f}s; see {self.log_path}")

    def start_profile(self) -> None:
        if self.profile:
            spy = os.environ.get("PY_SPY", "py-spy")
            self.spy = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(self.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--output",
                    str(self.profile),
                    "--nonblocking",
                    "--threads",
                    # --gil: only the thread holding the GIL (the hub's own CPU);
                    # --idle: every thread, waiting ones too
                    os.environ.get("PY_SPY_SAMPLES", "--idle"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop_profile(self) -> None:
        if self.spy:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(timeout=60)

    def peak_rss_kib(self) -> int | None:
        return peak_rss_kib(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class HubInProcess:
    """`Hub(settings).start()` in this process (shares the GIL with the publisher and trust)."""

    def __init__(self, config: Path, env: dict[str, str], log_path: Path) -> None:
        from hub.bootstrap import Hub
        from hub.log import configure_logging
        from hub.pipeline import RetryPolicy
        from hub.settings.load import load_settings

        settings = load_settings(config, env=env)
        self.log = log_path.open("w")
        configure_logging(level=settings.log_level, stream=self.log)
        self.hub = Hub(settings, retry=RetryPolicy())
        self.pid = os.getpid()
        self.log_path = log_path

    def wait_ready(self) -> None:
        self.hub.start()

    def start_profile(self) -> None:
        pass

    def stop_profile(self) -> None:
        pass

    def peak_rss_kib(self) -> int | None:
        return peak_rss_kib(self.pid)  # includes the benchmark's own memory

    def stop(self) -> None:
        self.hub.stop()
        self.log.close()


def hub_env(url: str, db_url: str, log_level: str) -> dict[str, str]:
    env = {**os.environ, "HUB_AMQP_URL": url, "HUB_DB_URL": db_url, "HUB_LOG_LEVEL": log_level}
    env.setdefault("HUB_ID_KEY", secrets.token_urlsafe(32))  # `hub run` needs one
    return env


def start_hubs(
    config: Path,
    env: dict[str, str],
    *,
    workdir: Path,
    workers: int,
    mode: str,
    profile: Path | None = None,
) -> list[HubProcess | HubInProcess]:
    """`workers` hubs on the same config, queues and ledger (competing consumers), each with
    its own API port (HUB_API_PORT overrides hub.yaml's api.port). The first is ready (its
    topology declared, its ledger migrated) before the others start. Stops what it started
    if one fails to start."""
    if mode != "subprocess" and workers != 1:
        raise SystemExit("--workers > 1 needs --hub-mode subprocess")
    hubs: list[HubProcess | HubInProcess] = []
    try:
        for i in range(workers):
            log_path = workdir / f"hub-{i}.log"
            if mode == "subprocess":
                port = free_port()
                worker_env = {**env, "HUB_API_PORT": str(port)}
                hubs.append(
                    HubProcess(config, worker_env, log_path, port, profile if i == 0 else None)
                )
            else:
                hubs.append(HubInProcess(config, env, log_path))
            if i == 0:
                hubs[0].wait_ready()
        for hub in hubs[1:]:
            hub.wait_ready()
    except BaseException:
        for hub in hubs:
            hub.stop()
        raise
    return hubs


def stop_hubs(hubs: list[HubProcess | HubInProcess]) -> None:
    for hub in hubs:
        hub.stop()


def run_hub(
    url: str,
    messages: list[tuple[str, bytes]],
    *,
    db_url: str,
    workdir: Path,
    mode: str,
    max_in_flight: int,
    prefetch: int,
    log_level: str,
    warmup: int,
    profile: Path | None,
    rate: float = 0.0,
    db_stats: Callable[[], dict[str, int]] | None = None,
    workers: int = 1,
    publisher: str = "sync",
) -> Result:
    trust = TimedTrust(services={ENDPOINT: SERVICE}, hub_base_url=None, replies=None).start()
    config = write_hub_config(
        workdir / "config",
        trust=trust,
        api_port=free_port(),
        max_in_flight=max_in_flight,
        prefetch=prefetch,
        log_level=log_level,
    )
    env = hub_env(url, db_url, log_level)
    n = len(messages)
    hubs: list[HubProcess | HubInProcess] = []
    try:
        hubs = start_hubs(config, env, workdir=workdir, workers=workers, mode=mode, profile=profile)
        if warmup:  # first alerts pay for connections, SQL compilation, imports
            warm = make_alerts(warmup)
            publish_confirmed(
                url, warm, exchange="justice.alerts", routing_key=ROUTING_KEY, stamps={}
            )
            if not trust.wait_for({a for a, _ in warm}, timeout=60):
                print(f"warning: warm-up alerts not all delivered; see {workdir}", file=sys.stderr)
        for hub in hubs:
            hub.start_profile()
        stamps: dict[str, int] = {}
        meter = CpuMeter(
            [h.pid for h in hubs] if mode == "subprocess" else [], database=database_name(db_url)
        )
        machine0, wall0, own0 = machine_busy(), time.perf_counter(), own_cpu_seconds()
        if publisher == "pipelined" and rate <= 0:
            pub_seconds = pipelined.publish_pipelined(
                url, messages, exchange="justice.alerts", routing_key=ROUTING_KEY, stamps=stamps
            )
        else:
            pub_seconds = publish_confirmed(
                url,
                messages,
                exchange="justice.alerts",
                routing_key=ROUTING_KEY,
                stamps=stamps,
                rate=rate,
            )
        ids = {a for a, _ in messages}
        trust.wait_for(ids, timeout=max(120.0, n * 0.5))
        cpu = meter.read()
        if mode == "subprocess":  # the publisher and the trust: work a real hub is spared
            cpu["benchmark"] = own_cpu_seconds() - own0
        machine1, wall1 = machine_busy(), time.perf_counter()
        for hub in hubs:
            hub.stop_profile()
        rss = [hub.peak_rss_kib() for hub in hubs]
    finally:
        stop_hubs(hubs)
        trust.stop()
    extra: dict[str, Any] = {
        "workers": workers,
        "publisher": publisher,
        "hub_cpu_pct": 100 * cpu["hub"] / (wall1 - wall0),
        "machine_busy_pct": 100 * (machine1[0] - machine0[0]) / max(1, machine1[1] - machine0[1]),
        "cpu_ms_per_alert": {k: round(1000 * v / n, 3) for k, v in cpu.items()},
    }
    if db_stats:  # read after the hubs closed their connections, so their backends flushed
        time.sleep(0.5)  # their stats (a live backend's lag); so the warm-up counts too
        extra["db_per_alert"] = {k: round(v / (n + warmup), 1) for k, v in db_stats().items()}
    arrivals = {a: trust.arrivals[a] for a in ids if a in trust.arrivals}
    latencies = [(arrivals[a] - stamps[a]) / 1e6 for a in arrivals]
    first = min(stamps.values())
    last = max(arrivals.values()) if arrivals else time.time_ns()
    duplicates = len([r for r in trust.received if r.duplicate])
    sizes = sorted(len(r.body) for r in trust.received)
    return Result(
        "hub",
        n,
        (last - first) / 1e9,
        pub_seconds,
        latencies,
        missing=n - len(arrivals),
        extra={
            **extra,
            "peak_rss_kib": max((r for r in rss if r), default=None),
            "peak_rss_kib_each": rss,
            "duplicates": duplicates,
            "bundle_bytes": sizes[len(sizes) // 2] if sizes else None,
            "log": str(workdir / "hub-0.log"),
        },
    )


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """user + system CPU seconds of a process (all its threads); with `children`, also those
    of its children that it has waited for (PostgreSQL's postmaster reaps its backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pids_named(*names: str) -> list[int]:
    """Processes on this machine whose command name (/proc/PID/comm) is one of `names`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
            except OSError:
                pass  # gone meanwhile
    return found


class CpuMeter:
    """CPU seconds used since it was made by the hub processes, the broker (beam.smp) and
    PostgreSQL (every postgres process, plus the exited backends the postmaster reaped), and
    of those the backends serving `database` (by their process title). The broker and the
    server are shared: anything else using them meanwhile counts too, except in
    `postgres_db` (the hub's pooled backends live through the window; one that exits in it
    is counted in `postgres` alone)."""

    def __init__(self, hub_pids: list[int], *, database: str | None = None) -> None:
        self.hub_pids = hub_pids
        self.database = database
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        def total(pids: list[int], *, children: bool = False) -> float:
            seconds = 0.0
            for pid in pids:
                try:
                    seconds += cpu_seconds(pid, children=children)
                except OSError:
                    pass  # a backend that exited: counted in the postmaster's children
            return seconds

        postgres = pids_named("postgres", "postmaster")
        now = {
            "hub": total(self.hub_pids),
            "broker": total(pids_named("beam.smp")),
            "postgres": total(postgres, children=True),
        }
        if self.database:
            now["postgres_db"] = total([p for p in postgres if self._serves(p)])
        return now

    def _serves(self, pid: int) -> bool:
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return f" {self.database} ".encode() in title.replace(b"\0", b" ") + b" "

    def read(self) -> dict[str, float]:
        now = self._now()
        return {k: now[k] - self.start.get(k, 0.0) for k in now}


def database_name(db_url: str) -> str | None:
    """The PostgreSQL database of a ledger URL (None for SQLite)."""
    return db_url.rsplit("/", 1)[1] if db_url.startswith("postgresql") else None


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# ---------------------------------------------------------------------------------------------
# databases


def postgres_database() -> tuple[str, Callable[[], None], Callable[[], dict[str, int]]]:
    """A fresh database on the local server: its URL, a function dropping it, and one reading
    its transaction and row counters (pg_stat_database)."""
    import psycopg

    name = f"ldbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stats() -> dict[str, int]:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_returned "
                "FROM pg_stat_database WHERE datname = %s",
                (name,),
            ).fetchone()
        keys = ("commits", "rollbacks", "rows_inserted", "rows_updated", "rows_returned")
        return dict(zip(keys, row or (0,) * 5, strict=True))

    return f"{base}/{name}", drop, stats


# ---------------------------------------------------------------------------------------------


def ratio(a: Result, b: Result) -> float:
    return a.rate / b.rate if b.rate else float("nan")


def print_table(
    runs: list[Result],
    hub: Result,
    *,
    n: int,
    db: str,
    mode: str,
    max_in_flight: int,
    rate: float,
) -> None:
    def row(name: str, r: Result) -> str:
        return (
            f"| {name:<12} | {r.rate:>9.1f} | {r.publish_rate:>9.1f} | {r.p(50):>8.1f} | "
            f"{r.p(99):>8.1f} | {max(r.latencies_ms, default=float('nan')):>8.1f} | "
            f"{r.missing:>7} |"
        )

    print()
    print(
        f"N={n}  db={db}  hub={mode}  workers={hub.extra['workers']}  "
        f"max_in_flight={max_in_flight}  publisher={hub.extra['publisher']}  "
        f"rate={'max' if rate <= 0 else f'{rate:g}/s'}  "
        f"cpus={os.cpu_count()}  load={os.getloadavg()[0]:.1f}  "
        f"python={platform.python_version()}  "
        f"host={platform.node()}  at={datetime.now(UTC).isoformat(timespec='seconds')}"
    )
    print("| run          |   msgs/s  | publish/s |  p50 ms  |  p99 ms  |  max ms  | missing |")
    print("|--------------|-----------|-----------|----------|----------|----------|---------|")
    for r in [*runs, hub]:
        print(row(r.name, r))
    for r in runs:
        print(
            f"ratio hub/{r.name} throughput: {ratio(hub, r):.3f}  "
            f"(p50 x{hub.p(50) / r.p(50):.1f}, p99 x{hub.p(99) / r.p(99):.1f})"
        )
    rss = hub.extra.get("peak_rss_kib_each") or []
    if any(rss):
        what = "each hub process" if mode == "subprocess" else "whole benchmark process"
        print(f"peak RSS ({what}): " + ", ".join(f"{r / 1024:.1f} MiB" for r in rss if r))
    print(
        f"during the hub run: hub process(es) CPU {hub.extra['hub_cpu_pct']:.0f}% of one core, "
        f"machine {hub.extra['machine_busy_pct']:.0f}% busy ({os.cpu_count()} cores)"
    )
    for r in runs:
        if "bench_cpu_pct" in r.extra:
            print(
                f"during {r.name}: benchmark process (publisher + hop) CPU "
                f"{r.extra['bench_cpu_pct']:.0f}% of one core, "
                f"broker {r.extra['broker_cpu_ms_per_msg']:.2f} ms per message"
            )
    cpu = hub.extra["cpu_ms_per_alert"]
    print(
        f"CPU ms per alert: hub {cpu['hub']:.2f}, broker {cpu['broker']:.2f}, "
        f"PostgreSQL {cpu['postgres']:.2f}"
        + (f" (its backends {cpu['postgres_db']:.2f})" if "postgres_db" in cpu else "")
        + (
            f", the benchmark's publisher and trust {cpu['benchmark']:.2f}"
            if "benchmark" in cpu
            else ""
        )
        + ("" if mode == "subprocess" else " (hub in this process: not separated)")
    )
    if "db_per_alert" in hub.extra:
        print(
            "PostgreSQL per alert: "
            + ", ".join(f"{k} {v:g}" for k, v in hub.extra["db_per_alert"].items())
        )
    if hub.extra.get("duplicates"):
        print(f"duplicate deliveries seen by the trust: {hub.extra['duplicates']}")
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"benchmark process: peak RSS {own.ru_maxrss / 1024:.1f} MiB, "
        f"CPU {own.ru_utime + own.ru_stime:.1f}s; hub log: {hub.extra.get('log')}"
    )


def result_json(r: Result) -> dict[str, Any]:
    return {
        "rate": r.rate,
        "publish_rate": r.publish_rate,
        "p50_ms": r.p(50),
        "p99_ms": r.p(99),
        "missing": r.missing,
        **r.extra,
    }


def new_vhost(cleanups: list[Callable[[], None]]) -> str:
    """A fresh vhost for guest (deleted by the cleanups); its URL."""
    vhost = f"ldbench-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    cleanups.append(lambda: rabbitmqctl("delete_vhost", vhost))
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{AMQP_HOST}:5672/{vhost}"


def ledger_url(
    db: str, workdir: Path, cleanups: list[Callable[[], None]]
) -> tuple[str, Callable[[], dict[str, int]] | None]:
    """A fresh ledger database (dropped by the cleanups) and, for PostgreSQL, its counters."""
    if db == "postgres":
        db_url, drop, db_stats = postgres_database()
        cleanups.append(drop)
        return db_url, db_stats
    return f"sqlite:///{workdir / 'hub.db'}", None


def run_cleanups(cleanups: list[Callable[[], None]]) -> None:
    for cleanup in reversed(cleanups):
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - report and go on cleaning
            print(f"cleanup failed: {exc}", file=sys.stderr)


def filler_like(body: bytes, n: int) -> list[tuple[str, bytes]]:
    """`n` messages of `body`'s size (random hex), each with its own id."""
    size = len(body)
    return [(str(uuid.uuid4()), os.urandom(size // 2 + 1).hex().encode()[:size]) for _ in range(n)]


def add_hub_arguments(ap: argparse.ArgumentParser) -> None:
    """The options that shape the hub under test (shared with replay.py)."""
    ap.add_argument("--alerts", type=int, default=1000, help="N messages/alerts per run")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    ap.add_argument(
        "--amqp-url",
        default=None,
        help="broker URL incl. vhost (default: a fresh vhost, deleted at the end)",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="hub processes on the same queues and ledger (competing consumers)",
    )
    ap.add_argument(
        "--max-in-flight",
        type=int,
        default=4,
        help="the endpoint's max_in_flight (delivery consumers); 4 as shipped",
    )
    ap.add_argument(
        "--prefetch",
        type=int,
        default=10,
        help="amqp.prefetch of the hub, and the baseline consumer's prefetch",
    )
    ap.add_argument("--log-level", default="INFO", help="the hub's log level (INFO as shipped)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_hub_arguments(ap)
    ap.add_argument(
        "--hub-mode",
        choices=("subprocess", "inprocess"),
        default="subprocess",
        help="run the hub as `python -m hub run` (default) or Hub() in this process",
    )
    ap.add_argument(
        "--warmup", type=int, default=20, help="alerts through the hub first, unmeasured"
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy raw (collapsed) stacks of the hub during the measured run "
        "(subprocess mode; py-spy on PATH or $PY_SPY)",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publish at most this many a second (default 0: as fast as confirms "
        "allow, i.e. a backlog; a low rate shows latency without queueing)",
    )
    ap.add_argument(
        "--publisher",
        choices=("sync", "pipelined"),
        default="sync",
        help="how the alerts reach the hub: one confirm waited for per publish (default, "
        f"as a custody system does) or up to {pipelined.WINDOW} in flight (flat out only)",
    )
    ap.add_argument(
        "--window",
        type=int,
        default=pipelined.WINDOW,
        help="confirms in flight in the broker_limit run",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    cleanups: list[Callable[[], None]] = []
    workdir = Path(tempfile.mkdtemp(prefix="ldbench-"))
    try:
        url = args.amqp_url or new_vhost(cleanups)
        db_url, db_stats = ledger_url(args.db, workdir, cleanups)
        alerts = make_alerts(args.alerts)
        size = len(alerts[0][1])
        print(f"baseline: {args.alerts} x {size} B through two quorum queues ...", flush=True)
        base = run_baseline(
            url, filler_like(alerts[0][1], args.alerts), prefetch=args.prefetch, rate=args.rate
        )
        print(f"broker_limit: the same, {args.window} confirms in flight ...", flush=True)
        limit = run_broker_limit(url, filler_like(alerts[0][1], args.alerts), window=args.window)
        print(
            f"hub ({args.hub_mode} x{args.workers}, {args.db}): {args.alerts} alerts ...",
            flush=True,
        )
        hub = run_hub(
            url,
            alerts,
            db_url=db_url,
            workdir=workdir,
            mode=args.hub_mode,
            max_in_flight=args.max_in_flight,
            prefetch=args.prefetch,
            log_level=args.log_level,
            warmup=args.warmup,
            profile=args.profile,
            rate=args.rate,
            db_stats=db_stats,
            workers=args.workers,
            publisher=args.publisher,
        )
        print_table(
            [base, limit],
            hub,
            n=args.alerts,
            db=args.db,
            mode=args.hub_mode,
            max_in_flight=args.max_in_flight,
            rate=args.rate,
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "n": args.alerts,
                        "db": args.db,
                        "cpus": os.cpu_count(),
                        "load_1min": os.getloadavg()[0],
                        "body_bytes": size,
                        "hub_mode": args.hub_mode,
                        "workers": args.workers,
                        "max_in_flight": args.max_in_flight,
                        **{r.name: result_json(r) for r in (base, limit, hub)},
                        "ratios": {
                            "hub/baseline": ratio(hub, base),
                            "hub/broker_limit": ratio(hub, limit),
                        },
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        run_cleanups(cleanups)


if __name__ == "__main__":
    sys.exit(main())
