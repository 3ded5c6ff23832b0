"""The failed-message store on SQLite and on the real PostgreSQL (a schema of its own per run):
a dead letter is stored once however often it arrives, one outage is one group, the audit log
only grows, and what an operator sees is masked unless revealed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.adapters.failed_store import SqlFailedStore
from hub.adapters.rabbitmq import Disposition
from hub.dead_letters import DeadLetterIngester, failure_from_envelope, normalise_error
from hub.errors import TransientError
from hub.masking import mask_document
from hub.operations import OperationRefused, discard, show
from hub.ports import Envelope, FailedState, NewFailure
from tests.fixtures.alerts import custody_alert, to_body

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A schema of this test's own: counts and groups see only what the test stored."""
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"hub_failed_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Any]]:
    opened: list[SqlFailedStore] = []

    def make() -> SqlFailedStore:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'hub.db'}"
        else:
            url = request.getfixturevalue("pg_schema_url")
        store = SqlFailedStore(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Callable[[], SqlFailedStore]) -> SqlFailedStore:
    return open_store()


def dead_letter(
    *,
    endpoint: str = "wy-ld",
    error: str | None = None,
    error_class: str = "PermanentError",
    body: bytes | None = None,
    last_failure: datetime = T0,
    stage: str = "deliver",
) -> Envelope:
    bundle_id = str(uuid.uuid4())
    headers = {
        "x-hub-alert-id": str(uuid.uuid4()),
        "x-hub-bundle-id": bundle_id,
        "x-hub-endpoint": endpoint,
        "x-hub-attempts": 1,
        "x-hub-first-failure": last_failure.isoformat(),
        "x-hub-last-failure": last_failure.isoformat(),
        "x-hub-error-class": error_class,
        "x-hub-error": error or f"HTTP 400 for bundle {bundle_id}: request {uuid.uuid4().hex}",
        "x-hub-stage": stage,
        "x-hub-http-status": 400,
        "x-hub-original-exchange": "hub.work",
        "x-hub-original-routing-key": f"hub.deliver.{endpoint}",
        "x-hub-original-queue": f"hub.deliver.{endpoint}",
    }
    return Envelope(
        body=body if body is not None else b'{"resourceType": "Bundle"}',
        queue=f"hub.dlq.{stage}",
        exchange="hub.dlq",
        routing_key=stage,
        headers=headers,
        message_id=bundle_id,
        user_id=None,
        content_type="application/fhir+json",
    )


def failure(envelope: Envelope) -> NewFailure:
    return failure_from_envelope(envelope, stage="deliver", now=T0)


def test_a_redelivered_dead_letter_is_stored_once(store: SqlFailedStore) -> None:
    envelope = dead_letter()

    first = store.add(failure(envelope), at=T0)
    again = store.add(failure(envelope), at=T0 + timedelta(seconds=5))

    assert first[0] is True and again == (False, first[1])
    assert store.count() == 1


def test_a_stored_dead_letter_keeps_its_reasons_body_and_headers(store: SqlFailedStore) -> None:
    envelope = dead_letter(body=b'{"resourceType": "Bundle", "id": "b"}')

    _, failed_id = store.add(failure(envelope), at=T0)
    stored = store.get(failed_id)

    assert stored is not None and stored.state is FailedState.FAILED
    f = stored.failure
    assert (f.stage, f.endpoint, f.error_class, f.http_status) == (
        "deliver",
        "wy-ld",
        "PermanentError",
        400,
    )
    assert f.body == envelope.body
    assert f.headers == dict(envelope.headers)
    assert f.original_queue == "hub.deliver.wy-ld"
    assert f.first_failure == T0 and f.last_failure.tzinfo is not None
    assert f.alert_id == envelope.headers["x-hub-alert-id"]


def test_one_outage_is_one_group_whatever_ids_its_errors_quote(store: SqlFailedStore) -> None:
    outage = [store.add(failure(dead_letter()), at=T0)[1] for _ in range(3)]
    other = store.add(failure(dead_letter(endpoint="leeds-dat")), at=T0)[1]

    keys = {store.get(i).failure.group_key for i in outage}  # type: ignore[union-attr]
    assert len(keys) == 1
    assert store.get(other).failure.group_key not in keys  # type: ignore[union-attr]
    groups = {g.group_key: g for g in store.groups()}
    (key,) = keys
    assert groups[key].count == 3 and groups[key].total == 3
    assert [m.id for m in store.list(group=key[:10])] == outage


def test_errors_are_normalised_for_grouping() -> None:
    a = normalise_error("timeout after 10 s on 3f2a9c1e77 for a1b2c3d4-0000-4000-8000-00000000abcd")
    b = normalise_error("timeout after 9 s on 77c1d0ee42 for 11111111-2222-4333-8444-555555555555")
    assert a == b == "timeout after <n> s on <hex> for <uuid>"


def test_list_filters_by_stage_endpoint_and_time(store: SqlFailedStore) -> None:
    old = store.add(failure(dead_letter(last_failure=T0 - timedelta(days=2))), at=T0)[1]
    new = store.add(failure(dead_letter(endpoint="leeds-dat")), at=T0)[1]

    assert [m.id for m in store.list(since=T0 - timedelta(hours=1))] == [new]
    assert [m.id for m in store.list(endpoint="wy-ld")] == [old]
    assert store.list(stage="intake") == []


def test_discarding_records_who_and_why_and_the_audit_log_only_grows(
    store: SqlFailedStore,
) -> None:
    failed_id = store.add(failure(dead_letter()), at=T0)[1]

    done = discard(store, [failed_id], by="alice", reason="trust retired the service", now=T0)
    again = discard(store, [failed_id], by="bob", reason="second try", now=T0)

    assert done.done == [failed_id]
    assert again.done == [] and again.skipped == {failed_id: "already discarded"}
    stored = store.get(failed_id)
    assert stored is not None and stored.state is FailedState.DISCARDED
    assert (stored.state_by, stored.state_reason) == ("alice", "trust retired the service")
    log = store.audit_log(failed_id)
    assert [(e.action, e.by, e.reason) for e in log] == [
        ("discard", "alice", "trust retired the service")
    ]
    assert not [
        name for name in dir(store) if "audit" in name and ("delete" in name or "update" in name)
    ]


def test_discard_without_a_reason_is_refused(store: SqlFailedStore) -> None:
    failed_id = store.add(failure(dead_letter()), at=T0)[1]

    with pytest.raises(OperationRefused):
        discard(store, [failed_id], by="alice", reason=" ", now=T0)
    assert store.get(failed_id).state is FailedState.FAILED  # type: ignore[union-attr]


def test_replayed_rows_are_marked_once(store: SqlFailedStore) -> None:
    failed_id = store.add(failure(dead_letter()), at=T0)[1]

    assert store.mark_replayed([failed_id], by="alice", reason="fixed", at=T0) == [failed_id]
    assert store.mark_replayed([failed_id], by="alice", reason="fixed", at=T0) == []
    assert store.count(FailedState.FAILED) == 0


def test_two_stores_on_one_database_create_tables_idempotently(
    open_store: Callable[[], SqlFailedStore],
) -> None:
    first, second = open_store(), open_store()
    failed_id = first.add(failure(dead_letter()), at=T0)[1]
    assert second.get(failed_id) is not None


def test_show_masks_an_alert_unless_revealed_and_a_reveal_is_audited(
    store: SqlFailedStore,
) -> None:
    alert = custody_alert()
    envelope = dead_letter(body=to_body(alert), stage="intake")
    failed_id = store.add(failure_from_envelope(envelope, stage="intake", now=T0), at=T0)[1]

    masked = show(store, failed_id, now=T0)
    text = json.dumps(masked)
    person = masked["body"]["person"]
    assert person["name"] == "J. T."
    assert person["nhs_number"] == "******026"
    assert person["date_of_birth"] == person["address"] == person["pnc_id"] == "[hidden]"
    assert all(v["detail"] == "[hidden]" for v in masked["body"]["vulnerabilities"])
    for secret in ("Testperson", "1991-04-17", "9990000026", "LS11", "hearing voices"):
        assert secret not in text
    assert store.audit_log(failed_id) == []

    revealed = show(store, failed_id, reveal=True, by="alice", now=T0)

    assert revealed["body"] == alert
    assert [(e.action, e.by) for e in store.audit_log(failed_id)] == [("reveal", "alice")]
    with pytest.raises(OperationRefused):
        show(store, failed_id, reveal=True, by=None, now=T0)


def test_a_fhir_bundle_is_masked_like_an_alert() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"given": ["Jordan"], "family": "Testperson"}],
                    "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000026"},
                        {"system": "https://example.org/pnc", "value": "2019/0448213B"},
                    ],
                    "birthDate": "1991-04-17",
                    "address": [{"postalCode": "LS11 5ZZ"}],
                }
            },
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "note": [{"text": "Mental health: hearing voices"}],
                }
            },
        ],
    }

    masked = mask_document(bundle)

    patient, request = (e["resource"] for e in masked["entry"])
    assert patient["name"] == [{"text": "J. T."}]
    assert [i["value"] for i in patient["identifier"]] == ["******026", "[hidden]"]
    assert patient["birthDate"] == patient["address"] == request["note"] == "[hidden]"
    assert request["status"] == "active"


def test_the_ingester_leaves_a_dead_letter_queued_while_the_store_is_away() -> None:
    class AwayStore:
        def add(self, failure: NewFailure, *, at: datetime) -> tuple[bool, int]:
            raise TransientError("database away")

    ingester = DeadLetterIngester(AwayStore(), stage="deliver")  # type: ignore[arg-type]

    assert ingester(dead_letter()) is Disposition.REQUEUE


def test_an_unreachable_database_is_a_transient_error() -> None:
    with pytest.raises(TransientError):
        SqlFailedStore("postgresql://postgres@127.0.0.1:1/nowhere", timeout=1)
