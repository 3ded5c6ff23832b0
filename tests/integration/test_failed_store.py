"""The failed-message store contract, written once and run against MemoryFailedStore,
SqlFailedStore on SQLite and SqlFailedStore on the real PostgreSQL (a schema of each test's own,
so ids, counts and groups see only what the test stored): a dead letter is stored once however
often it arrives, one outage is one group, only still-failed rows move, and the audit log only
grows. If PostgreSQL is down these tests fail, they do not skip.

What operators do with the store (masking, replay, trace) is tested on the fake in
tests/unit/test_operations.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from threading import Barrier
from typing import Protocol

import pytest

from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.errors import TransientError
from hub.operations.failed import discard
from hub.ports import FailedStore
from hub.records import FailedState
from hub.stages.dead_letters import DeadLetterIngester
from hub.wire import Disposition, Envelope
from tests.fixtures.dead_letters import PROVENANCE, T0, dead_letter, failure
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration


class CheckedStore(FailedStore, Protocol):
    """The FailedStore port plus the readiness check both implementations add."""

    def ping(self) -> None: ...


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], CheckedStore]]:
    """Opens stores on one database of the test's own, as the hub's workers and the CLI would
    (for the in-memory fake, the one shared instance is the database)."""
    shared = MemoryFailedStore()
    url: list[str] = []
    opened: list[CheckedStore] = []

    def make() -> CheckedStore:
        store: CheckedStore
        if request.param == "memory":
            store = shared
        else:
            if not url and request.param == "sqlite":
                url.append(f"sqlite:///{tmp_path / 'hub.db'}")
            elif not url:
                url.append(request.getfixturevalue("new_pg_schema")())
            store = SqlFailedStore(url[0])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], CheckedStore]) -> CheckedStore:
    return open_store()


def stored(
    store: CheckedStore,
    endpoint: str = "wy-ld",
    *,
    error: str | None = None,
    last_failure: datetime = T0,
) -> int:
    envelope = dead_letter(endpoint=endpoint, error=error, last_failure=last_failure)
    return store.add(failure(envelope), at=T0)[1]


# -- storing ----------------------------------------------------------------------------------


def test_a_redelivered_dead_letter_is_stored_once(store: CheckedStore) -> None:
    envelope = dead_letter()

    first = store.add(failure(envelope), at=T0)
    again = store.add(failure(envelope), at=T0 + timedelta(seconds=5))

    assert first[0] is True and again == (False, first[1])
    assert store.count() == 1
    assert store.get(first[1]).received_at == T0  # type: ignore[union-attr]


def test_ids_count_up_from_one_in_the_order_messages_are_stored(store: CheckedStore) -> None:
    ids = [stored(store) for _ in range(3)]

    assert ids == [1, 2, 3]
    assert [m.id for m in store.list()] == [1, 2, 3]
    assert store.get(4) is None


def test_a_stored_dead_letter_keeps_its_reasons_body_and_headers(store: CheckedStore) -> None:
    envelope = dead_letter(body=b'{"resourceType": "Bundle", "id": "b"}')

    _, failed_id = store.add(failure(envelope), at=T0)
    stored = store.get(failed_id)

    assert stored is not None and stored.state is FailedState.FAILED
    assert (stored.state_by, stored.state_reason, stored.state_at) == (None, None, None)
    f = stored.failure
    assert (f.stage, f.endpoint, f.error_class, f.http_status) == (
        "deliver",
        "wy-ld",
        "PermanentError",
        400,
    )
    assert f.body == envelope.body and isinstance(f.body, bytes)
    assert f.headers == dict(envelope.headers)
    assert f.original_queue == "hub.deliver.wy-ld"
    assert f.first_failure == T0 and f.last_failure.tzinfo is not None
    assert f.alert_id == envelope.headers["x-hub-alert-id"]
    assert f.message_id == envelope.message_id
    assert f.content_type == "application/fhir+json"


def test_times_come_back_in_utc_and_naive_times_are_refused(store: CheckedStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    envelope = dead_letter(last_failure=T0.astimezone(plus_two))

    failed_id = store.add(failure(envelope), at=T0.astimezone(plus_two))[1]

    message = store.get(failed_id)
    assert message is not None
    assert message.received_at == T0 and message.received_at.utcoffset() == timedelta(0)
    assert message.failure.last_failure.utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        store.add(failure(dead_letter()), at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError):
        store.mark_discarded([failed_id], by="a", reason="r", at=T0.replace(tzinfo=None))
    assert store.count() == 1


def test_headers_come_back_as_json_and_changing_them_changes_nothing_stored(
    store: CheckedStore,
) -> None:
    new = failure(dead_letter())
    headers = {**new.headers, "x-death": ({"count": 2, "queue": "hub.deliver.wy-ld"},)}
    failed_id = store.add(replace(new, headers=headers), at=T0)[1]

    first = store.get(failed_id)
    assert first is not None
    assert first.failure.headers["x-death"] == [{"count": 2, "queue": "hub.deliver.wy-ld"}]
    first.failure.headers["x-hub-error"] = "changed"  # type: ignore[index]

    again = store.get(failed_id)
    assert again is not None and again.failure.headers["x-hub-error"] != "changed"


def test_eight_workers_storing_one_dead_letter_store_it_once(
    open_store: Callable[[], CheckedStore],
) -> None:
    stores = [open_store() for _ in range(8)]  # as redelivered copies on competing consumers
    new = failure(dead_letter())
    barrier = Barrier(len(stores))

    def add(store: CheckedStore) -> tuple[bool, int]:
        barrier.wait()
        return store.add(new, at=T0)

    with ThreadPoolExecutor(len(stores)) as pool:
        results = list(pool.map(add, stores))

    assert [new for new, _ in results].count(True) == 1
    assert len({failed_id for _, failed_id in results}) == 1
    assert stores[0].count() == 1


def test_two_stores_on_one_database_see_each_others_rows(
    open_store: Callable[[], CheckedStore],
) -> None:
    first, second = open_store(), open_store()
    failed_id = stored(first)

    assert second.get(failed_id) is not None
    second.ping()


# -- grouping and listing -----------------------------------------------------------------------


def test_one_outage_is_one_group_whatever_ids_its_errors_quote(store: CheckedStore) -> None:
    outage = [stored(store) for _ in range(3)]
    other = stored(store, endpoint="leeds-dat")

    keys = {store.get(i).failure.group_key for i in outage}  # type: ignore[union-attr]
    assert len(keys) == 1
    assert store.get(other).failure.group_key not in keys  # type: ignore[union-attr]
    groups = {g.group_key: g for g in store.groups()}
    (key,) = keys
    assert groups[key].count == 3 and groups[key].total == 3
    assert [m.id for m in store.list(group=key[:10])] == outage


def test_groups_count_still_failed_and_all_rows_most_still_failed_first(
    store: CheckedStore,
) -> None:
    early, late = T0 - timedelta(hours=3), T0 + timedelta(hours=1)
    outage = [
        stored(store, last_failure=early, error="HTTP 400 on 1234"),
        stored(store, last_failure=late, error="HTTP 400 on 99"),
        stored(store, error="HTTP 400 on 5"),
    ]
    for _ in range(2):
        stored(store, endpoint="leeds-dat", error="timeout")
    store.mark_discarded(outage[:2], by="alice", reason="sent by phone", at=T0)

    groups = store.groups()

    assert [(g.endpoint, g.count, g.total) for g in groups] == [
        ("leeds-dat", 2, 2),
        ("wy-ld", 1, 3),
    ]
    wy = groups[1]
    assert (wy.stage, wy.error_class) == ("deliver", "PermanentError")
    assert wy.sample_error == "HTTP 400 on 1234"  # the smallest message, by code point
    assert (wy.first_failure, wy.last_failure) == (early, late)
    assert wy.first_failure.utcoffset() == timedelta(0)


def test_groups_with_equal_counts_are_ordered_by_key(store: CheckedStore) -> None:
    for endpoint in ("a-ld", "b-ld", "c-ld"):
        stored(store, endpoint=endpoint)

    keys = [g.group_key for g in store.groups()]

    assert keys == sorted(keys) and len(keys) == 3


def test_list_filters_by_stage_endpoint_time_alert_and_state_in_id_order(
    store: CheckedStore,
) -> None:
    old = stored(store, last_failure=T0 - timedelta(days=2))
    new = stored(store, endpoint="leeds-dat")
    intake = store.add(failure(dead_letter(stage="intake"), stage="intake"), at=T0)[1]
    store.mark_replayed([new], by="alice", reason="fixed", at=T0)
    alert_id = store.get(old).failure.alert_id  # type: ignore[union-attr]

    assert [m.id for m in store.list()] == [old, new, intake]
    assert [m.id for m in store.list(since=T0 - timedelta(hours=1))] == [new, intake]
    assert [m.id for m in store.list(endpoint="wy-ld")] == [old, intake]
    assert [m.id for m in store.list(stage="intake")] == [intake]
    assert [m.id for m in store.list(alert_id=alert_id)] == [old]
    assert [m.id for m in store.list(state=FailedState.REPLAYED)] == [new]
    assert [m.id for m in store.list(state=FailedState.FAILED, endpoint="wy-ld")] == [old, intake]
    assert store.list(stage="outcome") == []
    assert store.list(group="0" * 64) == []


# -- operators' actions and the audit log -------------------------------------------------------


def test_discarding_records_who_and_why_and_the_audit_log_only_grows(store: CheckedStore) -> None:
    failed_id = stored(store)

    done = discard(store, [failed_id], by="alice", reason="trust retired the service", now=T0)
    again = discard(store, [failed_id], by="bob", reason="second try", now=T0)

    assert done.done == [failed_id]
    assert again.done == [] and again.skipped == {failed_id: "already discarded"}
    message = store.get(failed_id)
    assert message is not None and message.state is FailedState.DISCARDED
    assert (message.state_by, message.state_reason) == ("alice", "trust retired the service")
    assert message.state_at == T0
    log = store.audit_log(failed_id)
    assert [(e.action, e.by, e.reason) for e in log] == [
        ("discard", "alice", "trust retired the service")
    ]
    assert not [
        name for name in dir(store) if "audit" in name and ("delete" in name or "update" in name)
    ]


def test_only_still_failed_rows_move_once_each_in_id_order(store: CheckedStore) -> None:
    a, b, c = (stored(store) for _ in range(3))
    store.mark_discarded([c], by="bob", reason="duplicate", at=T0)

    moved = store.mark_replayed([b, a, b, c, 404], by="alice", reason="fixed", at=T0)

    assert moved == [a, b]
    assert store.mark_replayed([a, b], by="alice", reason="fixed", at=T0) == []
    assert store.count(FailedState.FAILED) == 0
    assert store.count(FailedState.REPLAYED) == 2 and store.count(FailedState.DISCARDED) == 1
    assert [(e.action, e.failed_id) for e in store.audit_log()] == [
        ("discard", c),
        ("replay", a),
        ("replay", b),
    ]


def test_a_move_without_who_or_why_changes_nothing(store: CheckedStore) -> None:
    failed_id = stored(store)

    with pytest.raises(ValueError):
        store.mark_discarded([failed_id], by="alice", reason=" ", at=T0)
    with pytest.raises(ValueError):
        store.mark_replayed([failed_id], by="", reason="fixed", at=T0)

    assert store.get(failed_id).state is FailedState.FAILED  # type: ignore[union-attr]
    assert store.audit_log() == []
    assert store.mark_discarded([], by="", reason="", at=T0) == []  # nothing to move, no check


def test_the_audit_log_is_in_time_order_and_can_be_read_per_message(store: CheckedStore) -> None:
    a, b = stored(store), stored(store)
    store.audit("reveal", [a], by="carol", reason="incident 7", at=T0 + timedelta(minutes=5))
    store.audit("reveal", [a, b], by="dave", reason="incident 8", at=T0)
    store.audit("reveal", [], by="erin", reason="nothing", at=T0)

    log = store.audit_log()

    assert [(e.by, e.failed_id) for e in log] == [("dave", a), ("dave", b), ("carol", a)]
    assert [e.by for e in store.audit_log(a)] == ["dave", "carol"]
    assert log[0].at == T0 and log[0].at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError):
        store.audit("delete", [a], by="mallory", reason="cover tracks", at=T0)
    with pytest.raises(ValueError):
        store.audit("reveal", [a], by=" ", reason="why not", at=T0)
    assert len(store.audit_log()) == 3


def test_counts_by_state(store: CheckedStore) -> None:
    ids = [stored(store) for _ in range(3)]
    store.mark_discarded(ids[:1], by="alice", reason="duplicate", at=T0)

    assert store.count() == 3
    assert store.count(FailedState.FAILED) == 2
    assert store.count(FailedState.DISCARDED) == 1
    assert store.count(FailedState.REPLAYED) == 0


# -- the SQL store only -------------------------------------------------------------------------


def test_an_unreachable_database_is_a_transient_error() -> None:
    with pytest.raises(TransientError):
        SqlFailedStore("postgresql://postgres@127.0.0.1:1/nowhere", timeout=1)


def hostile_dead_letters() -> list[Envelope]:
    """Dead letters whose every field is what a hostile or broken publisher could make."""
    plain = dead_letter(stage="intake")
    no_alert_header = {k: v for k, v in plain.headers.items() if k != "x-hub-alert-id"}
    return [
        replace(plain, body=b"[" * 50_000, headers=no_alert_header, message_id=None),
        replace(
            plain,
            body=json.dumps({"alert_id": "a" * 300}).encode(),
            headers=no_alert_header,
            message_id="m" * 255,
        ),
        replace(
            plain,
            headers={
                **plain.headers,
                "x-hub-alert-id": "x" * 500,
                "x-hub-endpoint": "e" * 500,
                "x-hub-error": "boom\x00\ud800" * 5000,
                "x-hub-http-status": 10**12,
                "x-hub-attempts": 2**40,
                "x-hub-first-failure": "0001-01-01T00:00:00+05:00",
                "x-odd\x00": {"nested": [b"\xff\x00", float("nan"), "\udfff"]},
            },
            message_id="\udcff\x00",
            content_type="c" * 300,
        ),
    ]


def test_hostile_dead_letters_are_each_stored_by_the_ingester(store: CheckedStore) -> None:
    ingester = DeadLetterIngester(store, stage="intake", provenance=PROVENANCE, clock=lambda: T0)
    envelopes = hostile_dead_letters()

    assert [ingester(envelope) for envelope in envelopes] == [Disposition.ACK] * len(envelopes)

    rows = store.list(stage="intake")
    assert sorted(r.failure.body for r in rows) == sorted(e.body for e in envelopes)
    assert all(r.failure.error_class != "Unreadable" for r in rows)
