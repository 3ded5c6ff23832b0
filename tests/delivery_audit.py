"""A stream of alerts published at a steady rate, and the count at the FakeTrust that says
whether each was delivered once in effect (by X-Request-Id and Bundle id), as
tests/e2e/test_crash_recovery.py counts it. Shared by the cluster and database-restart tests."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.security.ids import IdKey
from hub.testing.fake_trust import FakeTrust
from hub.transforms.referral_ids import referral_ids
from tests.conftest import ID_KEY
from tests.fixtures.alerts import custody_alert

# By the default routes in conftest: no substance/alcohol misuse → default [wy-ld];
# substance_misuse → rule `substance` → [leeds-dat, wy-ld].
ONE_ENDPOINT = [{"type": "mental_health", "detail": "Reports low mood and hearing voices."}]
TWO_ENDPOINTS = [
    *ONE_ENDPOINT,
    {"type": "substance_misuse", "detail": "Daily heroin use, on no script."},
]
DLQ_QUEUES = ("hub.dlq.intake", "hub.dlq.deliver", "hub.dlq.outcome", "hub.unrouted")


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def routing_key(alert: dict[str, Any]) -> str:
    return f"custody.{alert['source']['organisation']['code']}.identification"


# The key the tests' hubs run with (tests.conftest.ID_KEY): the receiver's ids are keyed by it.
TEST_ID_KEY = IdKey.of(ID_KEY)


@dataclass
class AlertStream:
    """`n` alerts, every other one for two services; `expected` maps each referral's Bundle id
    to its X-Request-Id."""

    n: int
    alerts: list[dict[str, Any]] = field(init=False)
    expected: dict[str, str] = field(init=False)
    confirmed: int = 0
    publish_retries: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.alerts = [
            custody_alert(
                sent_at=_now_iso(), vulnerabilities=TWO_ENDPOINTS if i % 2 else ONE_ENDPOINT
            )
            for i in range(self.n)
        ]
        self.expected = {}
        for i, alert in enumerate(self.alerts):
            for endpoint in ("leeds-dat", "wy-ld") if i % 2 else ("wy-ld",):
                ids = referral_ids(TEST_ID_KEY, alert["alert_id"], endpoint)
                self.expected[ids.bundle_id] = ids.request_id

    def publish_steadily(
        self, publish: Callable[[dict[str, Any]], None], *, seconds: float
    ) -> threading.Thread:
        """Publish every alert, alert i at i * seconds / n, in a thread. `publish` returns once
        the broker confirmed; when it raises, the same alert is published again (a publisher
        keeps a message until it is confirmed)."""

        def run() -> None:
            begin = time.monotonic()
            try:
                for i, alert in enumerate(self.alerts):
                    pause = begin + i * seconds / self.n - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    for _ in range(20):
                        try:
                            publish(alert)
                            break
                        except Exception:  # noqa: BLE001 - retried, as a publisher would
                            self.publish_retries += 1
                            time.sleep(0.5)
                    else:
                        raise AssertionError(f"alert {i} was never confirmed")
                    self.confirmed += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                self.errors.append(exc)

        thread = threading.Thread(target=run, name="justice-publisher", daemon=True)
        thread.start()
        return thread

    def all_delivered(self, trust: FakeTrust) -> bool:
        return {r.bundle_id for r in trust.delivered()} >= set(self.expected)

    def audit(self, trust: FakeTrust) -> int:
        """Asserts every referral reached the trust once in effect; returns the repeats (POSTs
        the trust answered 409 duplicate: absorbed, not acted on twice)."""
        delivered = trust.delivered()
        received = list(trust.received)
        assert {r.bundle_id for r in delivered} == set(self.expected), "lost referrals"
        request_ids = [r.request_id for r in delivered]
        assert len(request_ids) == len(set(request_ids)), "a request id was answered 200 twice"
        assert len(delivered) == len(self.expected), "a referral was acted on twice"
        by_bundle: dict[str, set[str]] = defaultdict(set)
        for r in received:
            by_bundle[r.bundle_id].add(r.request_id)
        assert {b: ids for b, ids in by_bundle.items() if len(ids) > 1} == {}
        assert {b: next(iter(ids)) for b, ids in by_bundle.items()} == self.expected
        first_body = {r.request_id: r.body for r in delivered}
        repeats = [r for r in received if r.duplicate]
        changed = [r.bundle_id for r in repeats if r.body != first_body[r.request_id]]
        assert not changed, f"a redelivered Bundle differs from the first: {changed[:5]}"
        return len(repeats)
