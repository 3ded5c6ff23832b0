"""Nothing a message contains stops a consumer, on the real broker and PostgreSQL: each message
that once killed a consumer thread (or left the ledger saying referrals were queued) is parked
and answered, the hub stays ready, and every consumer is still consuming afterwards. A thread
that dies anyway is named on /readyz, restarted by the supervisor and counted."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for

pytestmark = pytest.mark.e2e


def readyz(rig: HubRig) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{rig.api_port}/readyz", timeout=15)


def assert_all_consuming(rig: HubRig) -> None:
    """Ready, no thread down, no thread ever restarted."""
    response = readyz(rig)
    assert response.status_code == 200, response.json()
    assert response.json()["down"] == []
    assert all(thread.is_alive() for _, thread in rig.hub._workers)
    assert b"hub_thread_restarts_total{" not in rig.hub._metrics.exposition()[0]


def parked_bodies(rig: HubRig, stage: str) -> list[bytes]:
    store = SqlFailedStore(rig.db_url)
    try:
        return [row.failure.body for row in store.list(stage=stage)]
    finally:
        store.close()


def rejected(outcomes: list[dict[str, Any]], alert_id: str) -> list[dict[str, Any]]:
    return [o for o in outcomes if o["alert_id"] == alert_id and o["status"] == "rejected"]


def test_deeply_nested_json_is_rejected_parked_and_the_dlq_consumer_lives_on(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(park_dead_letters=True)
    body = b"[" * 50_000 + uuid.uuid4().hex.encode()  # unique: the store is shared

    rig.justice.publish(body, routing_key="custody.WYP.identification", message_id=None)

    wait_until(lambda: body in parked_bodies(rig, "intake"), what="the nested body parked")
    wait_until(lambda: rig.justice.queue_depth("hub.dlq.intake") == 0, what="hub.dlq.intake empty")
    assert_all_consuming(rig)


def test_an_alert_id_longer_than_the_store_keeps_is_parked_without_it(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(park_dead_letters=True)
    alert = fresh_custody()
    alert["alert_id"] = "a" * 150 + uuid.uuid4().hex  # over the columns' 128

    rig.justice.publish(
        json.dumps(alert).encode(), routing_key=key_for(alert), message_id="m" * 250
    )

    body = json.dumps(alert).encode()
    wait_until(lambda: body in parked_bodies(rig, "intake"), what="the alert parked")
    rig.justice.wait_for(lambda outcomes: rejected(outcomes, "unknown") != [])
    assert_all_consuming(rig)


def test_an_unreadable_body_with_a_250_character_message_id_is_answered(rig: HubRig) -> None:
    message_id = "x" * 250

    rig.justice.publish(
        b"\xff\xfe not json", routing_key="court.LMC.identification", message_id=message_id
    )

    outcomes = rig.justice.wait_for(lambda o: rejected(o, "unknown") != [])
    (outcome,) = rejected(outcomes, "unknown")
    assert outcome["reasons"][0]["path"] == "$"
    rig.justice.get_one("hub.dlq.intake")
    assert_all_consuming(rig)


def test_a_message_id_and_content_type_that_are_not_utf8_do_not_kill_the_consumer(
    rig: HubRig,
) -> None:
    rig.justice.publish(
        b"{}",
        routing_key="custody.WYP.identification",
        message_id=b"\xff\xfe",
        content_type=b"\xc3",
    )
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))  # the next one still flows

    rig.justice.get_one("hub.dlq.intake")  # the first, parked: no properties could be read
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the next alert delivered")
    assert_all_consuming(rig)


def test_a_lone_surrogate_or_a_nul_in_a_name_is_rejected_never_sent(rig: HubRig) -> None:
    surrogate = fresh_custody()
    surrogate["person"]["name"]["family"] = "Test\ud800"
    nul = fresh_custody()
    nul["person"]["name"]["family"] = "Test\u0000person"
    nul["vulnerabilities"][0]["detail"] = "\x1b[2Jcleared"

    for alert in (surrogate, nul):
        rig.justice.publish(
            json.dumps(alert).encode(), routing_key=key_for(alert), message_id=alert["alert_id"]
        )

    outcomes = rig.justice.wait_for(
        lambda o: all(rejected(o, a["alert_id"]) for a in (surrogate, nul))
    )
    paths = {
        a["alert_id"]: {r["path"] for r in rejected(outcomes, a["alert_id"])[0]["reasons"]}
        for a in (surrogate, nul)
    }
    assert paths[surrogate["alert_id"]] == {"person.name.family"}
    assert paths[nul["alert_id"]] == {"person.name.family", "vulnerabilities[0].detail"}
    assert [o for o in outcomes if o["status"] != "rejected"] == []
    assert rig.trust.delivered() == []
    ledger = SqlLedger(rig.db_url)
    try:
        assert all(ledger.get_alert(a["alert_id"]) is None for a in (surrogate, nul))
    finally:
        ledger.close()
    assert_all_consuming(rig)


class Killed(BaseException):
    """Gets past every `except Exception`: what a thread dying of a bug looks like."""


def die_once(killed: list[str], process: Callable[[Any], None], envelope: Any) -> None:
    if not killed:
        killed.append(threading.current_thread().name)
        raise Killed
    process(envelope)


def test_a_consumer_thread_that_dies_is_named_restarted_and_counted(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(supervise_seconds=3600)  # the test runs the supervisor's round itself
    killed: list[str] = []
    for worker, thread in rig.hub._workers:
        if thread.name.startswith("intake-custody-"):
            stage = worker.handler.stage  # type: ignore[attr-defined]
            stage.process = partial(die_once, killed, stage.process)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: killed != [], what="a consumer to take the message")
    wait_until(lambda: readyz(rig).status_code == 503, what="/readyz to say so")
    assert readyz(rig).json()["down"] == killed
    assert readyz(rig).json()["checks"]["consumers"] is False

    assert rig.hub._supervisor is not None
    assert rig.hub._supervisor.check_once() == killed

    wait_until(lambda: readyz(rig).status_code == 200, what="ready again")
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the alert delivered after all")
    exposition = rig.hub._metrics.exposition()[0].decode()
    assert f'hub_thread_restarts_total{{thread="{killed[0]}"}} 1.0' in exposition


def test_the_supervisor_restarts_a_dead_watcher_on_its_own(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(supervise_seconds=0.2, overdue_check_seconds=0.05)
    watch = rig.hub._overdue_watch
    assert watch is not None
    check = watch.check
    died: list[int] = []

    def die_once() -> int:
        if not died:
            died.append(1)
            raise Killed
        return check()

    watch.check = die_once  # type: ignore[method-assign]

    wait_until(lambda: died != [] and watch.is_alive() and readyz(rig).status_code == 200)
    exposition = rig.hub._metrics.exposition()[0].decode()
    assert 'hub_thread_restarts_total{thread="overdue-watch"} 1.0' in exposition
