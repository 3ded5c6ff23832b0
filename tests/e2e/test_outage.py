"""An outage on the real broker: the endpoint is down while N referrals arrive and comes back
later; every referral is delivered exactly once in effect, none dead-lettered, none lost. The
figures (N, attempts, retries, POSTs the trust saw, time to drain) are printed for the record
(`pytest -s tests/e2e/test_outage.py`)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from hub.pipeline import RetryPolicy
from hub.records import ReferralState
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e

N = 30
OUTAGE_SECONDS = 15.0


class Outage:
    """wy-ld answers 503 while `down`, otherwise the trust behaves; POSTs are counted."""

    def __init__(self) -> None:
        self.down = True
        self.failed_posts = 0
        self.lock = threading.Lock()

    def __call__(self, endpoint: str, bundle: dict[str, Any]) -> Any:
        if endpoint != "wy-ld":
            return None
        with self.lock:
            if self.down:
                self.failed_posts += 1
                return 503, {}, b"{}"
        return None


def test_an_outage_delays_every_referral_but_loses_and_duplicates_none(rig_factory: Any) -> None:
    # given wy-ld down, with short test delays and a 3 s circuit cool-down
    outage = Outage()
    rig: HubRig = rig_factory(
        behaviour=outage,
        replies=None,
        retry=RetryPolicy(delays=(1, 2, 4), deadline=timedelta(minutes=10)),
        endpoint_yaml={"wy-ld": "circuit: {failure_threshold: 5, cooldown_seconds: 3}"},
    )
    alerts = [fresh_custody() for _ in range(N)]

    # when N referrals arrive during the outage
    started = time.monotonic()
    for alert in alerts:
        rig.justice.publish(alert, routing_key=key_for(alert))
    time.sleep(OUTAGE_SECONDS)
    assert rig.trust.delivered() == []

    # and the endpoint comes back
    outage.down = False
    back = time.monotonic()
    wait_until(lambda: len(rig.trust.delivered()) == N, timeout=120, what=f"{N} delivered")
    drained = time.monotonic()

    # then each was delivered once in effect, none dead-lettered, none left on any queue
    delivered = rig.trust.delivered()
    assert sorted(r.correlation_id for r in delivered) == sorted(a["alert_id"] for a in alerts)
    assert len({r.request_id for r in delivered}) == N
    ledger = rig.hub.ledger
    assert ledger is not None
    wait_until(
        lambda: all(
            ledger.referrals_for(a["alert_id"])[0].state is ReferralState.DELIVERED for a in alerts
        ),
        timeout=10,
        what="every referral DELIVERED in the ledger",
    )
    referrals = [ledger.referrals_for(a["alert_id"])[0] for a in alerts]
    assert rig.justice.queue_depth("hub.dlq.deliver") == 0
    for queue in ("hub.deliver.wy-ld", "hub.retry.1s", "hub.retry.2s", "hub.retry.4s"):
        assert rig.justice.queue_depth(queue) == 0, queue

    # Ledger attempts include those the open circuit refused without sending ("not sent").
    attempts = sum(r.attempts for r in referrals)
    duplicates = sum(1 for r in rig.trust.received if r.duplicate)
    print(
        f"\nOUTAGE FIGURES: N={N} outage={OUTAGE_SECONDS:.0f}s "
        f"ledger_attempts={attempts} retries={attempts - N} "
        f"failed_posts_during_outage={outage.failed_posts} "
        f"duplicate_posts_after_recovery={duplicates} "
        f"drain_after_recovery={drained - back:.1f}s total={drained - started:.1f}s "
        f"dead_lettered=0"
    )
