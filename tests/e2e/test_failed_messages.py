"""Failed messages on the real broker and PostgreSQL: a permanent delivery failure is parked in
the failed-message store (and drained from hub.dlq.deliver), a replay after the endpoint is fixed
delivers it exactly once, a discard is audited, and `hub trace` finds the referral by any id.

The store lives in the shared test database, so each test looks only at its own alert's rows.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.cli.main import main
from hub.operations.failed import discard, replay
from hub.operations.trace import trace
from hub.records import FailedMessage, FailedState
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e

BAD_REQUEST = json.dumps(
    {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "invalid", "diagnostics": "REC_BAD_REQUEST"}],
    }
).encode()


class Outage:
    """Answers 400 for one endpoint until `fix()`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.broken = threading.Event()
        self.broken.set()

    def fix(self) -> None:
        self.broken.clear()

    def __call__(self, endpoint: str, bundle: dict[str, Any]) -> Any:
        if endpoint == self.endpoint and self.broken.is_set():
            return 400, {}, BAD_REQUEST
        return None


@pytest.fixture
def parked(rig_factory: Any) -> Iterator[tuple[HubRig, Outage, SqlFailedStore, dict[str, Any]]]:
    """A hub whose wy-ld endpoint rejects everything, and one alert whose referral failed."""
    outage = Outage("wy-ld")
    rig: HubRig = rig_factory(behaviour=outage, replies=None, park_dead_letters=True)
    store = SqlFailedStore(rig.db_url)
    alert = fresh_custody(source={"reference": f"WY-26-{uuid.uuid4().int % 10**6:06d}"})
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(store.list(alert_id=alert["alert_id"])) == 1, what="the parked row")
    yield rig, outage, store, alert
    store.close()


def only_row(store: SqlFailedStore, alert_id: str) -> FailedMessage:
    (row,) = store.list(alert_id=alert_id)
    return row


def now() -> datetime:
    return datetime.now(UTC)


def test_a_permanent_delivery_failure_is_parked_and_drained_from_the_dlq(parked: Any) -> None:
    rig, _, store, alert = parked

    row = only_row(store, alert["alert_id"])

    assert row.state is FailedState.FAILED
    assert (row.failure.stage, row.failure.endpoint, row.failure.http_status) == (
        "deliver",
        "wy-ld",
        400,
    )
    assert row.failure.original_queue == "hub.deliver.wy-ld"
    assert "REC_BAD_REQUEST" in (row.failure.operation_outcome or "")
    assert json.loads(row.failure.body)["resourceType"] == "Bundle"
    wait_until(lambda: rig.justice.queue_depth("hub.dlq.deliver") == 0, what="an empty DLQ")


def test_a_replay_after_the_fix_delivers_exactly_once(parked: Any) -> None:
    rig, outage, store, alert = parked
    row = only_row(store, alert["alert_id"])
    outage.fix()
    publisher = rig.publisher()

    try:
        result = replay(store, publisher, [row.id], by="alice", reason="trust fixed it", now=now())
        again = replay(store, publisher, [row.id], by="alice", reason="twice", now=now())
    finally:
        publisher.close()

    assert result.done == [row.id] and again.skipped == {row.id: "already replayed"}
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the replayed referral")
    # A later referral to the same endpoint (one consumer, first in first out) reaches the
    # trust only after whatever was queued before it: a second copy of the replay would have.
    marker = fresh_custody()
    rig.justice.publish(marker, routing_key=key_for(marker))
    wait_until(lambda: len(rig.trust.received) >= 2, what="the marker referral")
    assert [r.correlation_id for r in rig.trust.received] == [alert["alert_id"], marker["alert_id"]]
    assert rig.trust.received[0].bundle_id == row.failure.message_id
    assert rig.hub.ledger is not None
    (referral,) = rig.hub.ledger.referrals_for(alert["alert_id"])
    assert str(referral.state) == "delivered"
    replayed = store.get(row.id)
    assert replayed is not None and replayed.state is FailedState.REPLAYED
    assert [(a.action, a.by, a.reason) for a in store.audit_log(row.id)] == [
        ("replay", "alice", "trust fixed it")
    ]


def test_a_discard_is_audited_with_who_and_why(parked: Any) -> None:
    _, _, store, alert = parked
    row = only_row(store, alert["alert_id"])

    result = discard(store, [row.id], by="bob", reason="duplicate of a phoned referral", now=now())

    assert result.done == [row.id]
    entry = store.audit_log(row.id)[-1]
    assert (entry.action, entry.by, entry.reason) == (
        "discard",
        "bob",
        "duplicate of a phoned referral",
    )
    assert only_row(store, alert["alert_id"]).state is FailedState.DISCARDED


def test_trace_finds_the_referral_by_alert_id_reference_bundle_id_and_request_id(
    parked: Any,
) -> None:
    rig, _, store, alert = parked
    ledger = rig.hub.ledger
    (referral,) = ledger.referrals_for(alert["alert_id"])

    for any_id in (
        alert["alert_id"],
        alert["source"]["reference"],
        referral.bundle_id,
        referral.request_id,
    ):
        (journey,) = trace(ledger, any_id, store=store)
        assert journey["alert_id"] == alert["alert_id"], any_id

    (journey,) = trace(ledger, alert["alert_id"], store=store)
    events = [e["event"] for e in journey["events"]]
    assert events[:2] == ["alert_validated", "referral_routed"]
    assert "referral_dead_lettered" in events
    assert journey["rules"]
    (attempted,) = journey["referrals"]
    assert attempted["state"] == "failed"
    assert [(a["result"], a["http_status"]) for a in attempted["attempt_log"]] == [
        ("permanent", 400)
    ]
    assert journey["failed_messages"][0]["state"] == "failed"
    assert "wy-ld failed" in journey["current"]
    assert trace(ledger, f"no-such-{uuid.uuid4()}", store=store) == []


# -- the CLI --------------------------------------------------------------------------------


def run_cli(rig: HubRig, *args: str, operator: str | None = None) -> Any:
    env: dict[str, str | None] = {**rig.env, "HUB_DB_URL": rig.db_url, "HUB_OPERATOR": operator}
    env["HUB_AMQP_URL"] = rig.amqp_url
    result = CliRunner().invoke(main, [*args, "--config", str(rig.config_dir)], env=env)
    return result


def test_cli_lists_and_shows_masked_and_a_reveal_is_audited(parked: Any) -> None:
    rig, _, store, alert = parked
    row = only_row(store, alert["alert_id"])
    family = alert["person"]["name"]["family"]

    listed = run_cli(rig, "failed", "list", "--endpoint", "wy-ld")
    shown = run_cli(rig, "failed", "show", str(row.id))

    assert listed.exit_code == 0, listed.output
    assert f"#{row.id} " in listed.output and alert["alert_id"] in listed.output
    assert shown.exit_code == 0, shown.output
    assert family not in shown.output and alert["person"]["nhs_number"] not in shown.output
    assert "******" + alert["person"]["nhs_number"][-3:] in shown.output
    assert store.audit_log(row.id) == []

    refused = run_cli(rig, "failed", "show", str(row.id), "--reveal")
    revealed = run_cli(rig, "failed", "show", str(row.id), "--reveal", operator="carol")

    assert refused.exit_code != 0
    assert revealed.exit_code == 0, revealed.output
    assert family in revealed.output
    assert [(a.action, a.by) for a in store.audit_log(row.id)] == [("reveal", "carol")]


def test_cli_replay_with_yes_delivers_once(parked: Any) -> None:
    rig, outage, store, alert = parked
    row = only_row(store, alert["alert_id"])
    outage.fix()

    result = run_cli(
        rig, "failed", "replay", str(row.id), "--yes", "--as", "dave", "--reason", "fixed"
    )

    assert result.exit_code == 0, result.output
    assert "replayed 1 message(s)" in result.output
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the replayed referral")
    assert store.audit_log(row.id)[-1].by == "dave"


def test_cli_bulk_replay_by_group_asks_first(parked: Any) -> None:
    rig, _, store, alert = parked
    row = only_row(store, alert["alert_id"])

    declined = CliRunner().invoke(
        main,
        ["failed", "discard", "--group", row.failure.group_key, "--as", "erin"]
        + ["--reason", "no", "--config", str(rig.config_dir)],
        env={**rig.env, "HUB_DB_URL": rig.db_url, "HUB_AMQP_URL": rig.amqp_url},
        input="n\n",
    )

    assert declined.exit_code == 0, declined.output
    assert "go ahead?" in declined.output and "nothing done" in declined.output
    assert only_row(store, alert["alert_id"]).state is FailedState.FAILED


def test_cli_trace_prints_the_journey(parked: Any) -> None:
    rig, _, _, alert = parked

    text = run_cli(rig, "trace", alert["source"]["reference"])
    as_json = run_cli(rig, "trace", alert["alert_id"], "--json")

    assert text.exit_code == 0, text.output
    assert alert["alert_id"] in text.output and "permanent" in text.output
    assert json.loads(as_json.stdout)[0]["alert_id"] == alert["alert_id"]
