"""The ledger contract, written once and run against MemoryLedger, SqlLedger on SQLite and
SqlLedger on the real PostgreSQL, so the fake cannot drift from the real thing.

PostgreSQL: `HUB_TEST_PG_URL` (default postgresql+psycopg://postgres@127.0.0.1:5432/test). Each
run works in its own schema, dropped at the end. If PostgreSQL is down these tests fail, they do
not skip.

The events.detail JSON column is meant for ids, codes and counts only; that is a property of what
the pipeline writes, so the pipeline's tests assert it, not this suite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from threading import Barrier
from typing import Protocol

import pytest
import sqlalchemy as sa

from hub.adapters.memory.ledger import MemoryLedger
from hub.adapters.sql.ledger import SqlLedger
from hub.errors import TransientError
from hub.messages import Problem
from hub.ports_ledger import Ledger
from hub.records import (
    AlertFacts,
    AlertState,
    AttemptRecord,
    ChangeFacts,
    ChangeState,
    ConsentFacts,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
    Seen,
)

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
T0 = datetime(2025, 3, 4, 9, 30, 15, 123456, tzinfo=UTC)
HUB_TABLES = {
    "hub_alerts",
    "hub_alert_vulnerabilities",
    "hub_rejections",
    "hub_referrals",
    "hub_attempts",
    "hub_outcomes",
    "hub_events",
    "hub_changes",
    # the pathway report's summary (hub.adapters.sql.report_summary): codes, flags, times
    "hub_report_alerts",
    "hub_report_referrals",
    "hub_report_refreshes",
}


class CheckedLedger(Ledger, Protocol):
    """The Ledger port plus what both implementations add: the readiness check and the
    operators' read side (hub.ports_ledger.LedgerReader)."""

    def ping(self) -> None: ...

    def find_alert_ids(self, any_id: str) -> list[str]: ...

    def attempts_for(self, bundle_id: str) -> list[AttemptRecord]: ...

    def outcomes_for(self, alert_id: str) -> list[OutcomeRecord]: ...


# -- backends ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_pg_schema() -> Iterator[Callable[[], str]]:
    """Makes schemas of this run's own and returns URLs whose search_path is one of them;
    they are all dropped at the end."""
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    reason = None
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).splitlines()[0]
    if reason is not None:  # failed outside the except block: the chained traceback is noise
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {engine.url.render_as_string(hide_password=True)} "
            f"({reason}). Start it with:\n    {START_PG}\n"
            "or point HUB_TEST_PG_URL at a running server.",
            pytrace=False,
        )
    schemas: list[str] = []

    def new_schema() -> str:
        schema = f"hub_test_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        schemas.append(schema)
        sep = "&" if "?" in PG_URL else "?"
        return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"

    yield new_schema
    with engine.begin() as conn:
        for schema in schemas:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_schema_url(new_pg_schema: Callable[[], str]) -> str:
    """The schema the contract tests share (their ids are uuid4, so they never collide)."""
    return new_pg_schema()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], CheckedLedger]]:
    """Opens ledgers on one database, as competing workers would (for the in-memory fake, the
    one shared instance is the database). Every ledger opened is closed after the test."""
    shared = MemoryLedger()
    opened: list[CheckedLedger] = []

    def open_ledger() -> CheckedLedger:
        ledger: CheckedLedger
        if request.param == "memory":
            ledger = shared
        elif request.param == "sqlite":
            ledger = SqlLedger(sqlite_url(tmp_path))
        else:
            ledger = SqlLedger(request.getfixturevalue("pg_schema_url"))
        opened.append(ledger)
        return ledger

    yield open_ledger
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(backend: Callable[[], CheckedLedger]) -> CheckedLedger:
    return backend()


# -- builders ---------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def facts(alert_id: str | None = None, *, body_sha256: str = "a" * 64) -> AlertFacts:
    return AlertFacts(
        alert_id=alert_id or new_id("alert"),
        body_sha256=body_sha256,
        source_kind="custody",
        organisation_code="RYJ",
        reference=new_id("custody-ref"),
        pathway="adult",
        urgency="urgent",
        consent_status="given",
        share_with_justice=True,
        received_at=T0,
    )


def test_an_alerts_vulnerability_types_are_kept_as_codes_and_come_back_with_it(
    ledger: CheckedLedger,
) -> None:
    alert = replace(facts(), vulnerability_types=("autism", "mental_health"))
    plain = facts()

    ledger.record_alert(alert)
    ledger.record_alert(plain)

    stored = ledger.get_alert(alert.alert_id)
    assert stored is not None
    assert stored.facts.vulnerability_types == ("autism", "mental_health")
    stored_plain = ledger.get_alert(plain.alert_id)
    assert stored_plain is not None and stored_plain.facts.vulnerability_types == ()


def routed_alert(ledger: CheckedLedger, endpoints: tuple[str, ...] = ("leeds-ld",)) -> str:
    alert = facts()
    ledger.record_alert(alert)
    ledger.mark_routed(
        alert.alert_id,
        rule="adult-leeds",
        referrals=[referral(alert.alert_id, endpoint) for endpoint in endpoints],
        at=T0 + timedelta(seconds=1),
    )
    return alert.alert_id


def referral(alert_id: str, endpoint: str = "leeds-ld") -> ReferralRecord:
    return ReferralRecord(
        bundle_id=new_id("bundle"),
        alert_id=alert_id,
        endpoint=endpoint,
        request_id=new_id("request"),
    )


def attempt(
    ledger: CheckedLedger, bundle_id: str, result: str, *, seconds: int = 2
) -> ReferralRecord:
    return ledger.record_attempt(
        bundle_id,
        at=T0 + timedelta(seconds=seconds),
        result=result,
        http_status={"delivered": 200, "transient": 503, "permanent": 422}.get(result),
        detail=f"http_{result}",
        duration_ms=12.5,
    )


# -- the contract -----------------------------------------------------------------------------


def test_a_new_alert_is_recorded_as_received(ledger: CheckedLedger) -> None:
    alert = facts()

    seen, record = ledger.record_alert(alert)

    assert seen is Seen.NEW
    assert record.facts == alert
    assert record.state is AlertState.RECEIVED
    assert record.rule is None
    assert ledger.get_alert(alert.alert_id) == record


def test_a_received_alert_the_hub_could_not_process_is_marked_parked_once(
    ledger: CheckedLedger,
) -> None:
    alert = facts()
    ledger.record_alert(alert)

    first = ledger.mark_parked(alert.alert_id, at=T0 + timedelta(seconds=1))
    again = ledger.mark_parked(alert.alert_id, at=T0 + timedelta(seconds=2))

    assert (first, again) == (True, False)
    stored = ledger.get_alert(alert.alert_id)
    assert stored is not None and stored.state is AlertState.PARKED
    assert ledger.referrals_for(alert.alert_id) == []


def test_a_routed_alert_is_never_marked_parked(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)

    assert ledger.mark_parked(alert_id, at=T0 + timedelta(seconds=5)) is False
    stored = ledger.get_alert(alert_id)
    assert stored is not None and stored.state is AlertState.ROUTED


def test_an_unknown_alert_is_not_created_by_marking_it_parked(ledger: CheckedLedger) -> None:
    alert_id = new_id("alert")

    assert ledger.mark_parked(alert_id, at=T0) is False
    assert ledger.get_alert(alert_id) is None


def test_a_parked_alert_replayed_and_routed_is_routed(ledger: CheckedLedger) -> None:
    alert = facts()
    ledger.record_alert(alert)
    ledger.mark_parked(alert.alert_id, at=T0)

    ledger.mark_routed(
        alert.alert_id, rule="r", referrals=[referral(alert.alert_id)], at=T0 + timedelta(1)
    )

    stored = ledger.get_alert(alert.alert_id)
    assert stored is not None and stored.state is AlertState.ROUTED


def test_the_same_body_again_is_a_duplicate_returning_the_first_record(
    ledger: CheckedLedger,
) -> None:
    alert = facts()
    ledger.record_alert(alert)

    seen, record = ledger.record_alert(alert)

    assert seen is Seen.DUPLICATE
    assert record.facts == alert


def test_a_different_body_under_a_known_id_is_a_conflict(ledger: CheckedLedger) -> None:
    first = facts()
    ledger.record_alert(first)

    seen, record = ledger.record_alert(facts(first.alert_id, body_sha256="b" * 64))

    assert seen is Seen.CONFLICT
    assert record.facts == first


def test_an_unknown_alert_is_none(ledger: CheckedLedger) -> None:
    assert ledger.get_alert(new_id("alert")) is None
    assert ledger.get_referral(new_id("bundle")) is None
    assert ledger.referrals_for(new_id("alert")) == []
    assert ledger.journey(new_id("alert")) == []


def test_eight_threads_recording_one_alert_yield_exactly_one_new(
    backend: Callable[[], CheckedLedger],
) -> None:
    ledgers = [backend() for _ in range(8)]  # as competing consumers: a connection each
    alert = facts()
    barrier = Barrier(len(ledgers))

    def record(ledger: CheckedLedger) -> Seen:
        barrier.wait()
        return ledger.record_alert(alert)[0]

    with ThreadPoolExecutor(len(ledgers)) as pool:
        seen = list(pool.map(record, ledgers))

    assert seen.count(Seen.NEW) == 1
    assert seen.count(Seen.DUPLICATE) == 7


def test_mark_routed_stores_referrals_and_is_idempotent(ledger: CheckedLedger) -> None:
    alert = facts()
    ledger.record_alert(alert)
    wanted = [referral(alert.alert_id, "leeds-ld"), referral(alert.alert_id, "bradford-ld")]

    ledger.mark_routed(alert.alert_id, rule="adult-west-yorks", referrals=wanted, at=T0)
    ledger.mark_routed(alert.alert_id, rule="adult-west-yorks", referrals=wanted, at=T0)

    stored = ledger.get_alert(alert.alert_id)
    assert stored is not None
    assert stored.state is AlertState.ROUTED
    assert stored.rule == "adult-west-yorks"
    stored_referrals = [replace(r, created_at=T0) for r in wanted]
    assert ledger.referrals_for(alert.alert_id) == sorted(
        stored_referrals, key=lambda r: r.endpoint
    )
    assert ledger.get_referral(wanted[0].bundle_id) == stored_referrals[0]


def test_mark_routed_keeps_a_referral_already_stored(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)
    [first] = ledger.referrals_for(alert_id)
    attempt(ledger, first.bundle_id, "delivered")
    extra = referral(alert_id, "wakefield-ld")

    ledger.mark_routed(alert_id, rule="adult-leeds", referrals=[first, extra], at=T0)

    stored = {r.bundle_id: r for r in ledger.referrals_for(alert_id)}
    assert stored[first.bundle_id].state is ReferralState.DELIVERED
    assert stored[extra.bundle_id] == replace(extra, created_at=T0)


def test_mark_routed_of_an_unknown_alert_raises_key_error(ledger: CheckedLedger) -> None:
    alert_id = new_id("alert")

    with pytest.raises(KeyError):
        ledger.mark_routed(alert_id, rule="r", referrals=[referral(alert_id)], at=T0)

    assert ledger.referrals_for(alert_id) == []


def test_record_attempt_counts_and_moves_states(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger, ("a-ld", "b-ld"))
    first, second = ledger.referrals_for(alert_id)

    after_transient = attempt(ledger, first.bundle_id, "transient", seconds=2)
    after_delivered = attempt(ledger, first.bundle_id, "delivered", seconds=3)
    after_late_failure = attempt(ledger, first.bundle_id, "permanent", seconds=4)
    failed = attempt(ledger, second.bundle_id, "permanent", seconds=5)

    assert (after_transient.state, after_transient.attempts) == (ReferralState.QUEUED, 1)
    assert after_transient.delivered_at is None
    assert (after_delivered.state, after_delivered.attempts) == (ReferralState.DELIVERED, 2)
    assert after_delivered.delivered_at == T0 + timedelta(seconds=3)
    assert after_late_failure == replace_attempts(after_delivered, 3)  # delivered is final
    assert (failed.state, failed.attempts, failed.delivered_at) == (ReferralState.FAILED, 1, None)
    assert ledger.get_referral(second.bundle_id) == failed


def replace_attempts(record: ReferralRecord, attempts: int) -> ReferralRecord:
    return replace(record, attempts=attempts)


def test_record_attempt_of_an_unknown_bundle_raises_key_error(ledger: CheckedLedger) -> None:
    with pytest.raises(KeyError):
        attempt(ledger, new_id("bundle"), "transient")


def test_eight_threads_recording_attempts_at_once_count_eight(
    backend: Callable[[], CheckedLedger],
) -> None:
    ledgers = [backend() for _ in range(8)]
    alert_id = routed_alert(ledgers[0])
    [target] = ledgers[0].referrals_for(alert_id)
    barrier = Barrier(len(ledgers))

    def record(ledger: CheckedLedger) -> int:
        barrier.wait()
        return attempt(ledger, target.bundle_id, "transient").attempts

    with ThreadPoolExecutor(len(ledgers)) as pool:
        counts = sorted(pool.map(record, ledgers))

    assert counts == list(range(1, 9))
    stored = ledgers[0].get_referral(target.bundle_id)
    assert stored is not None
    assert (stored.attempts, stored.state) == (8, ReferralState.QUEUED)


def test_record_outcome_returns_false_on_repeat(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)
    [target] = ledger.referrals_for(alert_id)
    outcome_id = new_id("outcome")

    def record() -> bool:
        return ledger.record_outcome(
            outcome_id=outcome_id,
            alert_id=alert_id,
            bundle_id=target.bundle_id,
            status="accepted",
            at=T0,
        )

    assert record() is True
    assert record() is False


def test_an_outcome_may_answer_an_alert_the_ledger_never_accepted(ledger: CheckedLedger) -> None:
    alert_id = new_id("alert")
    ledger.record_rejection(
        alert_id=alert_id,
        source_kind="court",
        organisation_code="C01",
        reference=None,
        problems=[Problem("person.date_of_birth", "required")],
        at=T0,
    )

    recorded = ledger.record_outcome(
        outcome_id=new_id("outcome"), alert_id=alert_id, bundle_id=None, status="rejected", at=T0
    )

    assert recorded is True
    assert ledger.get_alert(alert_id) is None


def test_journey_returns_events_in_time_order_with_detail_preserved(ledger: CheckedLedger) -> None:
    alert_id = new_id("alert")
    bundle_id = new_id("bundle")
    late = JourneyEvent(
        alert_id,
        T0 + timedelta(seconds=5),
        "deliver",
        "referral_delivered",
        endpoint="leeds-ld",
        detail={"bundle_id": bundle_id, "http_status": 200, "attempt": 2, "codes": ["a", "b"]},
    )
    early = JourneyEvent(alert_id, T0, "intake", "alert_received", detail={"schema": "v1"})
    same_time_second = JourneyEvent(alert_id, T0, "route", "alert_routed", detail={"count": 1})
    other_alert = JourneyEvent(new_id("alert"), T0, "intake", "alert_received")

    for event in (late, early, same_time_second, other_alert):
        ledger.add_event(event)

    assert ledger.journey(alert_id) == [early, same_time_second, late]


def test_an_alert_is_found_by_any_of_its_ids(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)
    (stored,) = ledger.referrals_for(alert_id)
    reference = ledger.get_alert(alert_id).facts.reference  # type: ignore[union-attr]
    ledger.record_outcome(
        outcome_id=new_id("outcome"),
        alert_id=alert_id,
        bundle_id=stored.bundle_id,
        status="accepted",
        at=T0 + timedelta(seconds=5),
    )

    for any_id in (alert_id, reference, stored.bundle_id, stored.request_id):
        assert ledger.find_alert_ids(any_id) == [alert_id], any_id
    assert ledger.find_alert_ids(new_id("nothing")) == []


def test_attempts_and_outcomes_are_read_back_in_order(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)
    (stored,) = ledger.referrals_for(alert_id)
    attempt(ledger, stored.bundle_id, "transient", seconds=2)
    attempt(ledger, stored.bundle_id, "delivered", seconds=3)
    outcome_id = new_id("outcome")
    ledger.record_outcome(
        outcome_id=outcome_id,
        alert_id=alert_id,
        bundle_id=stored.bundle_id,
        status="accepted",
        at=T0 + timedelta(seconds=5),
    )

    attempts = ledger.attempts_for(stored.bundle_id)
    outcomes = ledger.outcomes_for(alert_id)

    assert [(a.result, a.http_status) for a in attempts] == [("transient", 503), ("delivered", 200)]
    assert [(o.outcome_id, o.status) for o in outcomes] == [(outcome_id, "accepted")]


def test_times_come_back_tz_aware_utc(ledger: CheckedLedger) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2025, 6, 1, 12, 0, 0, 654321, tzinfo=plus_two)
    alert = AlertFacts(**{**_fields(facts()), "received_at": local})  # type: ignore[arg-type]
    ledger.record_alert(alert)
    ledger.mark_routed(alert.alert_id, rule="r", referrals=[referral(alert.alert_id)], at=local)
    [target] = ledger.referrals_for(alert.alert_id)
    ledger.record_attempt(
        target.bundle_id, at=local, result="delivered", http_status=200, detail="", duration_ms=1
    )
    ledger.add_event(JourneyEvent(alert.alert_id, local, "intake", "alert_received"))

    stored = ledger.get_alert(alert.alert_id)
    delivered = ledger.get_referral(target.bundle_id)
    [event] = ledger.journey(alert.alert_id)

    assert stored is not None and delivered is not None
    for moment in (stored.facts.received_at, delivered.delivered_at, event.at):
        assert moment is not None
        assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
        assert moment == local


def test_a_naive_datetime_is_refused(ledger: CheckedLedger) -> None:
    naive = AlertFacts(**{**_fields(facts()), "received_at": datetime(2025, 1, 1)})  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="naive"):
        ledger.record_alert(naive)


def _fields(alert: AlertFacts) -> dict[str, object]:
    return {name: getattr(alert, name) for name in AlertFacts.__dataclass_fields__}


def test_ping_succeeds_on_a_reachable_ledger(ledger: CheckedLedger) -> None:
    ledger.ping()


# -- the SQL ledger only ----------------------------------------------------------------------


def test_a_ledger_on_an_unreachable_postgresql_raises_transient_error() -> None:
    with pytest.raises(TransientError) as raised:
        SqlLedger("postgresql://postgres@127.0.0.1:1/test", timeout=2)

    message = str(raised.value)
    assert "ledger unavailable" in message
    assert "127.0.0.1:1" in message
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eight_workers_opening_a_fresh_database_together_all_get_a_ledger(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path) if kind == "sqlite" else request.getfixturevalue("new_pg_schema")()
    barrier = Barrier(8)

    def open_and_ping(_: int) -> None:
        barrier.wait()
        ledger = SqlLedger(url)
        try:
            ledger.ping()
        finally:
            ledger.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(open_and_ping, range(8)))


PERSONAL = ("name", "dob", "birth", "address", "postcode", "nhs", "pnc", "sex", "gender")
FREE_TEXT = ("text", "note", "comment", "description", "message", "reason")
JSON_ALLOWED = {("hub_events", "detail"), ("hub_rejections", "problem_paths")}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_no_hub_table_has_a_column_that_could_hold_personal_data(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path) if kind == "sqlite" else request.getfixturevalue("pg_schema_url")
    SqlLedger(url).close()
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables = {t for t in inspector.get_table_names() if t.startswith("hub_")}
        assert tables == HUB_TABLES
        for table in sorted(tables):
            for column in inspector.get_columns(table):
                name, kind_ = column["name"], column["type"]
                where = f"{table}.{name} ({kind_})"
                assert not any(word in name for word in PERSONAL), where
                if isinstance(kind_, sa.JSON):
                    assert (table, name) in JSON_ALLOWED, where
                    continue
                if isinstance(kind_, sa.String):
                    # Short, bounded strings hold ids and codes; free text needs room.
                    assert kind_.length is not None and kind_.length <= 128, where
                    assert not any(word in name for word in FREE_TEXT) or name == "reason_code"
                    assert not isinstance(kind_, sa.Text), where
    finally:
        engine.dispose()


def test_oldest_undelivered_is_the_oldest_queued_referral_per_endpoint(
    ledger: CheckedLedger,
) -> None:
    endpoint = new_id("ep")[:40]
    alert_id = routed_alert(ledger, (endpoint,))
    assert ledger.oldest_undelivered()[endpoint] == T0

    bundle_id = ledger.referrals_for(alert_id)[0].bundle_id
    attempt(ledger, bundle_id, "delivered")
    assert endpoint not in ledger.oldest_undelivered()


# -- follow-ups: updates, cancellations, consent updates ------------------------------------


def change(alert_id: str, kind: str = "consent", *, body_sha256: str = "c" * 64) -> ChangeFacts:
    return ChangeFacts(
        change_id=new_id("change"),
        alert_id=alert_id,
        kind=kind,
        body_sha256=body_sha256,
        received_at=T0 + timedelta(minutes=5),
    )


def consent_at(minutes: int, *, status: str = "refused", share: bool = False) -> ConsentFacts:
    return ConsentFacts(
        status=status, share_with_justice=share, recorded_at=T0 + timedelta(minutes=minutes)
    )


def test_a_change_is_recorded_once_and_a_different_body_under_its_id_conflicts(
    ledger: CheckedLedger,
) -> None:
    alert_id = routed_alert(ledger)
    first = change(alert_id)

    seen, stored = ledger.record_change(first)
    again, _ = ledger.record_change(first)
    clash, kept = ledger.record_change(replace(first, body_sha256="d" * 64))

    assert (seen, again, clash) == (Seen.NEW, Seen.DUPLICATE, Seen.CONFLICT)
    assert stored.state is ChangeState.RECEIVED
    assert kept.facts == first


def test_a_change_for_an_unknown_alert_raises_key_error(ledger: CheckedLedger) -> None:
    with pytest.raises(KeyError):
        ledger.record_change(change(new_id("alert")))


def test_apply_change_stores_its_messages_and_applies_consent_and_cancellation(
    ledger: CheckedLedger,
) -> None:
    alert_id = routed_alert(ledger)
    consent_change = change(alert_id)
    ledger.record_change(consent_change)
    message = replace(referral(alert_id), kind="consent", change_id=consent_change.change_id)

    ledger.apply_change(
        consent_change.change_id,
        referrals=[message],
        at=T0 + timedelta(minutes=6),
        consent=consent_at(4),
        applied=False,
    )
    ledger.apply_change(
        consent_change.change_id,
        referrals=[message],
        at=T0 + timedelta(minutes=6),
        consent=consent_at(4),
    )

    alert = ledger.get_alert(alert_id)
    assert alert is not None
    assert (alert.facts.consent_status, alert.facts.share_with_justice) == ("refused", False)
    assert alert.facts.consent_recorded_at == T0 + timedelta(minutes=4)
    assert alert.cancelled is None
    stored = [r for r in ledger.referrals_for(alert_id) if r.kind == "consent"]
    assert stored == [replace(message, created_at=T0 + timedelta(minutes=6))]
    assert ledger.record_change(consent_change)[1].state is ChangeState.APPLIED

    cancel = change(alert_id, "cancellation")
    ledger.record_change(cancel)
    ledger.apply_change(cancel.change_id, referrals=[], at=T0, cancelled="entered-in-error")
    ledger.apply_change(cancel.change_id, referrals=[], at=T0, cancelled="revoked")
    cancelled = ledger.get_alert(alert_id)
    assert cancelled is not None and cancelled.cancelled == "entered-in-error"  # kept once


def test_an_older_consent_never_replaces_a_newer_one(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger)
    newer, older = change(alert_id), change(alert_id)
    for c in (newer, older):
        ledger.record_change(c)

    ledger.apply_change(newer.change_id, referrals=[], at=T0, consent=consent_at(10))
    ledger.apply_change(
        older.change_id,
        referrals=[],
        at=T0,
        consent=consent_at(8, status="given", share=True),
    )

    alert = ledger.get_alert(alert_id)
    assert alert is not None
    assert (alert.facts.consent_status, alert.facts.share_with_justice) == ("refused", False)


def apply_consents(
    ledger: CheckedLedger, *consents: ConsentFacts
) -> tuple[list[ConsentFacts | None], ConsentFacts]:
    """Apply each consent as its own change of one routed alert, in the order given: what each
    apply_change returned, and the consent the ledger then holds."""
    alert_id = routed_alert(ledger)
    returned = []
    for consent in consents:
        c = change(alert_id)
        ledger.record_change(c)
        returned.append(ledger.apply_change(c.change_id, referrals=[], at=T0, consent=consent))
    alert = ledger.get_alert(alert_id)
    assert alert is not None and alert.facts.consent_recorded_at is not None
    stored = ConsentFacts(
        status=alert.facts.consent_status,
        share_with_justice=alert.facts.share_with_justice,
        recorded_at=alert.facts.consent_recorded_at,
    )
    return returned, stored


def test_a_withdrawal_received_later_wins_over_a_grant_recorded_ahead_of_it(
    ledger: CheckedLedger,
) -> None:
    # A grant dated minutes ahead (a fast clock, within the allowed skew), then the person
    # withdraws and the withdrawal is recorded "now": earlier by its timestamp, later in fact.
    grant = consent_at(10, status="given", share=True)
    withdrawal = consent_at(4, status="refused", share=False)

    returned, stored = apply_consents(ledger, grant, withdrawal)

    assert returned == [grant, withdrawal]
    assert stored == withdrawal


def test_any_consent_that_shares_less_wins_when_received_later(ledger: CheckedLedger) -> None:
    full = consent_at(10, status="given", share=True)
    not_with_justice = consent_at(2, status="given", share=False)
    lacks_capacity = consent_at(3, status="lacks_capacity", share=True)
    not_asked = consent_at(1, status="not_asked", share=False)

    assert apply_consents(ledger, full, not_with_justice)[1] == not_with_justice
    assert apply_consents(ledger, full, lacks_capacity)[1] == lacks_capacity
    assert apply_consents(ledger, lacks_capacity, not_asked)[1] == not_asked


def test_a_grant_replaces_a_withdrawal_only_when_recorded_strictly_later(
    ledger: CheckedLedger,
) -> None:
    withdrawal = consent_at(4, status="refused", share=False)
    same_moment = consent_at(4, status="given", share=True)
    earlier = consent_at(3, status="given", share=True)
    later = consent_at(5, status="given", share=True)

    assert apply_consents(ledger, withdrawal, same_moment) == ([withdrawal] * 2, withdrawal)
    assert apply_consents(ledger, withdrawal, earlier) == ([withdrawal] * 2, withdrawal)
    assert apply_consents(ledger, withdrawal, later) == ([withdrawal, later], later)


def test_a_grant_received_after_a_refusal_dated_ahead_changes_nothing(
    ledger: CheckedLedger,
) -> None:
    # The mirror case: what apply_change returns is what the services are told, so it must be
    # the refusal the ledger keeps, not the grant that lost.
    refusal = consent_at(10, status="refused", share=False)
    grant = consent_at(4, status="given", share=True)

    assert apply_consents(ledger, refusal, grant) == ([refusal, refusal], refusal)


def test_the_same_consent_again_changes_nothing_and_a_change_without_one_returns_none(
    ledger: CheckedLedger,
) -> None:
    withdrawal = consent_at(4, status="refused", share=False)
    alert_id = routed_alert(ledger)
    c = change(alert_id)
    ledger.record_change(c)
    first = ledger.apply_change(c.change_id, referrals=[], at=T0, consent=withdrawal, applied=False)
    again = ledger.apply_change(c.change_id, referrals=[], at=T0, consent=withdrawal)
    cancel = change(alert_id, "cancellation")
    ledger.record_change(cancel)
    none = ledger.apply_change(cancel.change_id, referrals=[], at=T0, cancelled="revoked")

    assert (first, again, none) == (withdrawal, withdrawal, None)
    alert = ledger.get_alert(alert_id)
    assert alert is not None
    assert (alert.facts.consent_status, alert.facts.consent_recorded_at) == (
        "refused",
        withdrawal.recorded_at,
    )


def test_withheld_is_final_like_failed_and_never_undoes_delivered(ledger: CheckedLedger) -> None:
    alert_id = routed_alert(ledger, ("leeds-ld", "wakefield-ld"))
    first, second = ledger.referrals_for(alert_id)

    withheld = attempt(ledger, first.bundle_id, "withheld")
    attempt(ledger, second.bundle_id, "delivered")
    still_delivered = attempt(ledger, second.bundle_id, "withheld")

    assert withheld.state is ReferralState.WITHHELD
    assert still_delivered.state is ReferralState.DELIVERED


# -- overdue referrals ---------------------------------------------------------------------


def due_alert(ledger: CheckedLedger, *, due_in: timedelta = timedelta(hours=4)) -> ReferralRecord:
    alert = facts()
    ledger.record_alert(alert)
    wanted = replace(referral(alert.alert_id), due_at=T0 + due_in)
    ledger.mark_routed(alert.alert_id, rule="adult-leeds", referrals=[wanted], at=T0)
    [stored] = ledger.referrals_for(alert.alert_id)
    return stored


def due_ids(ledger: CheckedLedger, at: datetime) -> list[str]:
    return [r.bundle_id for r in ledger.overdue_due(at)]


def test_a_referral_is_due_once_past_its_service_level_and_reported_once(
    ledger: CheckedLedger,
) -> None:
    r = due_alert(ledger)
    assert r.due_at == T0 + timedelta(hours=4)

    assert r.bundle_id not in due_ids(ledger, T0 + timedelta(hours=3, minutes=59))
    assert r.bundle_id in due_ids(ledger, T0 + timedelta(hours=4))
    assert ledger.mark_overdue(r.bundle_id, at=T0 + timedelta(hours=4)) is True
    assert ledger.mark_overdue(r.bundle_id, at=T0 + timedelta(hours=5)) is False
    assert r.bundle_id not in due_ids(ledger, T0 + timedelta(hours=9))
    assert ledger.count_overdue() >= 1


def test_an_outcome_from_the_service_keeps_a_referral_from_falling_due(
    ledger: CheckedLedger,
) -> None:
    answered, received_only = due_alert(ledger), due_alert(ledger)
    for r, status in ((answered, "accepted"), (received_only, "received")):
        ledger.record_outcome(
            outcome_id=new_id("outcome"),
            alert_id=r.alert_id,
            bundle_id=r.bundle_id,
            status=status,
            at=T0,
        )

    due = due_ids(ledger, T0 + timedelta(days=1))
    assert answered.bundle_id not in due
    assert received_only.bundle_id in due  # `received` is the hub's receipt, not an answer


def test_a_cancelled_or_withheld_referral_never_falls_due(ledger: CheckedLedger) -> None:
    cancelled, withheld = due_alert(ledger), due_alert(ledger)
    cancel = change(cancelled.alert_id, "cancellation")
    ledger.record_change(cancel)
    ledger.apply_change(cancel.change_id, referrals=[], at=T0, cancelled="revoked")
    attempt(ledger, withheld.bundle_id, "withheld")

    due = due_ids(ledger, T0 + timedelta(days=1))
    assert cancelled.bundle_id not in due
    assert withheld.bundle_id not in due


def test_an_overdue_referral_is_resolved_once(ledger: CheckedLedger) -> None:
    r = due_alert(ledger)
    before = ledger.count_overdue()
    assert ledger.resolve_overdue(r.alert_id, r.endpoint, at=T0) is None  # not overdue yet
    ledger.mark_overdue(r.bundle_id, at=T0 + timedelta(hours=4))

    resolved = ledger.resolve_overdue(r.alert_id, r.endpoint, at=T0 + timedelta(hours=5))
    again = ledger.resolve_overdue(r.alert_id, r.endpoint, at=T0 + timedelta(hours=6))

    assert resolved is not None and resolved.overdue_resolved_at == T0 + timedelta(hours=5)
    assert again is None
    assert ledger.count_overdue() == before
