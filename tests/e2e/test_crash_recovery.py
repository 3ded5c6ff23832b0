"""The real hub, run as the `hub run` process, SIGKILLed in the middle of a stream of alerts and
started again: every referral still reaches the trust, in effect once (repeats are answered
409 duplicate under the same X-Request-Id), and the justice side hears `received` for each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub.security.ids import IdKey
from hub.testing.fake_trust import FakeTrust
from hub.transforms.referral_ids import referral_ids
from tests.conftest import ID_KEY, SERVICES, Justice, free_port, wait_until, write_config
from tests.fixtures.alerts import custody_alert

KEY = IdKey.of(ID_KEY)  # the hub process is started with HUB_ID_KEY=ID_KEY

pytestmark = pytest.mark.e2e

N_ALERTS = 200
PUBLISH_SECONDS = 10.0  # a steady 20 alerts a second
KILL_AFTER_FRACTION = 0.25
READY_TIMEOUT = 30.0
DRAIN_TIMEOUT = 60.0
DLQ_QUEUES = ("hub.dlq.intake", "hub.dlq.deliver", "hub.dlq.outcome", "hub.unrouted")

# By the default routes in conftest: no substance/alcohol misuse → default [wy-ld];
# substance_misuse → rule `substance` → [leeds-dat, wy-ld].
ONE_ENDPOINT = [{"type": "mental_health", "detail": "Reports low mood and hearing voices."}]
TWO_ENDPOINTS = [
    *ONE_ENDPOINT,
    {"type": "substance_misuse", "detail": "Daily heroin use, on no script."},
]


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def routing_key(alert: dict[str, Any]) -> str:
    return f"custody.{alert['source']['organisation']['code']}.identification"


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class HubProcess:
    """`python -m hub run --config DIR` as a child process, its output appended to one log."""

    def __init__(self, config_dir: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.command = [sys.executable, "-m", "hub", "run", "--config", str(config_dir)]
        self.env = env
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== hub start #{self.starts} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd()
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.proc is not None
        url = f"http://127.0.0.1:{self.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the hub exited with {self.proc.returncode} before it was ready; "
                    f"log tail:\n{log_tail(self.log)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        pytest.fail(
            f"the hub was not ready within {READY_TIMEOUT:g}s; log tail:\n{log_tail(self.log)}"
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def trust() -> Iterator[FakeTrust]:
    trust = FakeTrust(services=SERVICES).start()
    yield trust
    trust.stop()


def test_hub_killed_mid_stream_delivers_every_alert_once_in_effect(
    amqp_url: str,
    pg_url: str,
    tmp_path: Path,
    trust: FakeTrust,
    request: pytest.FixtureRequest,
) -> None:
    started = time.monotonic()
    port = free_port()
    config = write_config(tmp_path / "config", trust=trust, api_port=port)
    env = {**os.environ, "HUB_AMQP_URL": amqp_url, "HUB_DB_URL": pg_url, "HUB_API_PORT": str(port)}
    env["HUB_ID_KEY"] = ID_KEY
    hub = HubProcess(config, env, port, tmp_path / "hub.log")

    alerts = [
        custody_alert(sent_at=now_iso(), vulnerabilities=TWO_ENDPOINTS if i % 2 else ONE_ENDPOINT)
        for i in range(N_ALERTS)
    ]
    expected_pairs = {
        (a["alert_id"], endpoint)
        for i, a in enumerate(alerts)
        for endpoint in (("leeds-dat", "wy-ld") if i % 2 else ("wy-ld",))
    }
    expected_ids = {
        referral_ids(KEY, alert_id, endpoint).bundle_id: (alert_id, endpoint)
        for alert_id, endpoint in expected_pairs
    }
    expected_request_ids = {
        referral_ids(KEY, alert_id, endpoint).bundle_id: referral_ids(
            KEY, alert_id, endpoint
        ).request_id
        for alert_id, endpoint in expected_pairs
    }
    expected = len(expected_pairs)
    assert expected == N_ALERTS // 2 * 3

    justice: Justice | None = None
    publisher_errors: list[BaseException] = []
    published = 0
    try:
        hub.start()  # declares the topology the justice side publishes to and reads from
        justice = Justice(amqp_url)

        def publish_all() -> None:
            nonlocal published
            assert justice is not None
            begin = time.monotonic()
            try:
                for i, alert in enumerate(alerts):
                    # Steady pace: alert i goes out at i * interval (no bursts after a stall).
                    pause = begin + i * PUBLISH_SECONDS / N_ALERTS - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    justice.publish(alert, routing_key=routing_key(alert))  # confirmed
                    published += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                publisher_errors.append(exc)

        publisher = threading.Thread(target=publish_all, name="justice-publisher", daemon=True)
        publisher.start()

        kill_at = int(expected * KILL_AFTER_FRACTION)
        wait_until(
            lambda: len(trust.delivered()) >= kill_at,
            timeout=30,
            what=f"{kill_at} referrals at the trust before the kill",
        )
        delivered_before_kill = len(trust.delivered())
        published_before_kill = published
        hub.kill()
        assert publisher.is_alive(), "the kill must land mid-stream, while alerts still arrive"
        hub.start()

        publisher.join(timeout=PUBLISH_SECONDS + 20)
        assert not publisher.is_alive(), "the publisher did not finish"
        assert not publisher_errors, f"publishing failed: {publisher_errors!r}"
        assert published == N_ALERTS

        wait_until(
            lambda: {r.bundle_id for r in trust.delivered()} >= set(expected_ids),
            timeout=DRAIN_TIMEOUT,
            what="every expected referral at the trust",
        )
        time.sleep(0.5)  # let a late repeat (if any) land before counting

        delivered = trust.delivered()
        received = list(trust.received)
        repeats = [r for r in received if r.duplicate]

        # Every referral acted on exactly once, under the ids the hub derives from the alert.
        assert {r.bundle_id for r in delivered} == set(expected_ids)
        assert {(r.correlation_id, r.endpoint) for r in delivered} == expected_pairs
        request_ids = [r.request_id for r in delivered]
        assert len(request_ids) == len(set(request_ids)), "a request id was answered 200 twice"
        assert len(delivered) == expected
        # One X-Request-Id per Bundle, stable across redelivery; repeats carry identical bytes.
        by_bundle: dict[str, set[str]] = defaultdict(set)
        by_request: dict[str, set[str]] = defaultdict(set)
        for r in received:
            by_bundle[r.bundle_id].add(r.request_id)
            by_request[r.request_id].add(r.bundle_id)
        assert all(len(ids) == 1 for ids in by_bundle.values()), {
            b: ids for b, ids in by_bundle.items() if len(ids) > 1
        }
        assert all(len(ids) == 1 for ids in by_request.values())
        assert {b: next(iter(ids)) for b, ids in by_bundle.items()} == expected_request_ids
        first_body = {r.request_id: r.body for r in delivered}
        # Repeats: the same referral again, answered 409 duplicate (the trust answers every
        # seen X-Request-Id so); the hub took 409 duplicate as delivered, so nothing is parked.
        assert all(r.request_id in first_body for r in repeats)
        changed = [r.bundle_id for r in repeats if r.body != first_body[r.request_id]]
        assert not changed, f"a redelivered Bundle differs from the first: {changed[:5]}"

        for queue in DLQ_QUEUES:
            assert justice.queue_depth(queue) == 0, f"{queue} is not empty"

        # The justice side heard `received` for every referral.
        repeated_outcomes = assert_received_once_per_referral(
            justice, expected_pairs, expected, timeout=20
        )

        elapsed = time.monotonic() - started
        summary = (
            f"crash recovery: {N_ALERTS} alerts, {expected} referrals; killed after "
            f"{delivered_before_kill} delivered / {published_before_kill} published; "
            f"{len(repeats)} repeat POSTs answered 409 duplicate; "
            f"{repeated_outcomes} repeated received outcomes; {elapsed:.1f}s"
        )
        print(summary)
        request.node.user_properties.append(("duplicates_409", len(repeats)))
        request.node.user_properties.append(("repeated_outcomes", repeated_outcomes))
    except BaseException:
        print(f"hub log tail ({hub.log}):\n{log_tail(hub.log)}")
        raise
    finally:
        hub.terminate()
        if justice is not None:
            justice.close()


def assert_received_once_per_referral(
    justice: Any, expected_pairs: set[tuple[str, str]], expected: int, *, timeout: float
) -> int:
    """The justice side heard `received` for every referral (outcome ids are stable, so a
    repeat de-duplicates on outcome_id) and nothing else; returns how many were repeats."""
    codes = {endpoint: ods for endpoint, (ods, _) in SERVICES.items()}
    want = {(alert_id, codes[endpoint]) for alert_id, endpoint in expected_pairs}

    def received_outcomes(got: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {o["outcome_id"]: o for o in got if o["status"] == "received"}

    justice.wait_for(lambda got: len(received_outcomes(got)) >= expected, timeout=timeout)
    outcomes = received_outcomes(justice.outcomes)
    assert len(outcomes) == expected
    assert {(o["alert_id"], o["service"]["code"]) for o in outcomes.values()} == want
    assert {o["status"] for o in justice.outcomes} == {"received"}
    return len(justice.outcomes) - len(outcomes)
