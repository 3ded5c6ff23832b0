"""The ledger's unit of work (hub.ports_ledger.UnitOfWork): many calls made as one transaction. Run
on the ledger contract's backends (MemoryLedger, SqlLedger on SQLite and on the real PostgreSQL):
what a unit writes is all there once it ends, and an expected collision inside it (a duplicate
alert or outcome) undoes nothing else. On PostgreSQL the unit is one transaction: a unit that
raises leaves nothing, another connection sees nothing of it until it ends, and a unit inside
a unit joins the outer one. (On SQLite and in memory each call commits on its own.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from hub.adapters.sql.ledger import SqlLedger
from hub.messages import Problem
from hub.records import (
    AlertState,
    DeliveredAttempt,
    JourneyEvent,
    OutcomeRecord,
    ReferralState,
    Seen,
)
from tests.integration.test_ledger_contract import (  # noqa: F401 - fixtures among them
    T0,
    CheckedLedger,
    backend,
    facts,
    new_id,
    new_pg_schema,
    pg_schema_url,
    referral,
)

pytestmark = pytest.mark.integration


class Boom(Exception):
    """What a stage's code raises in the middle of a unit of work."""


@pytest.fixture
def pg_ledgers(pg_schema_url: str) -> Iterator[Callable[[], SqlLedger]]:  # noqa: F811
    """Opens SqlLedgers on the contract's PostgreSQL schema, each with its own connections (as
    two workers of the hub would); all closed after the test."""
    opened: list[SqlLedger] = []

    def open_ledger() -> SqlLedger:
        opened.append(SqlLedger(pg_schema_url))
        return opened[-1]

    yield open_ledger
    for one in opened:
        one.close()


def write_a_routed_alert(ledger: CheckedLedger) -> str:
    """Everything intake and delivery write for one alert: the alert, two referrals, a delivery
    attempt, an outcome sent to the justice side and a journey event. Returns the alert id."""
    alert = facts()
    assert ledger.record_alert(alert)[0] is Seen.NEW
    first, second = referral(alert.alert_id, "leeds-ld"), referral(alert.alert_id, "wy-ld")
    ledger.mark_routed(alert.alert_id, rule="adult", referrals=[first, second], at=T0)
    ledger.record_attempt(
        first.bundle_id,
        at=T0 + timedelta(seconds=1),
        result="delivered",
        http_status=200,
        detail="http_delivered",
        duration_ms=3.0,
    )
    assert ledger.record_outcome(
        outcome_id=new_id("outcome"),
        alert_id=alert.alert_id,
        bundle_id=first.bundle_id,
        status="received",
        at=T0 + timedelta(seconds=2),
    )
    ledger.add_event(JourneyEvent(alert.alert_id, T0, "intake", "alert_received"))
    return alert.alert_id


def assert_fully_stored(ledger: CheckedLedger, alert_id: str) -> None:
    stored = ledger.get_alert(alert_id)
    assert stored is not None and stored.state is AlertState.ROUTED
    referrals = {r.endpoint: r for r in ledger.referrals_for(alert_id)}
    assert set(referrals) == {"leeds-ld", "wy-ld"}
    assert referrals["leeds-ld"].state is ReferralState.DELIVERED
    assert referrals["wy-ld"].state is ReferralState.QUEUED
    assert [a.result for a in ledger.attempts_for(referrals["leeds-ld"].bundle_id)] == ["delivered"]
    assert [o.status for o in ledger.outcomes_for(alert_id)] == ["received"]
    assert [e.event for e in ledger.journey(alert_id)] == ["alert_received"]


def assert_nothing_stored(ledger: CheckedLedger, alert_id: str) -> None:
    assert ledger.get_alert(alert_id) is None
    assert ledger.referrals_for(alert_id) == []
    assert ledger.outcomes_for(alert_id) == []
    assert ledger.journey(alert_id) == []


# -- every backend ------------------------------------------------------------------------------


def test_writes_made_inside_a_unit_of_work_are_all_stored_after_it_ends(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger, other = backend(), backend()  # `other`: another worker's ledger, its own connection

    with ledger.unit_of_work():
        alert_ids = [write_a_routed_alert(ledger) for _ in range(3)]
        rejected = new_id("alert")
        ledger.record_rejection(
            alert_id=rejected,
            source_kind="custody",
            organisation_code="RYJ",
            reference=None,
            problems=[Problem("person.date_of_birth", "required")],
            at=T0,
        )
        # Inside the unit, its own reads see what it wrote.
        assert_fully_stored(ledger, alert_ids[0])

    for alert_id in alert_ids:
        assert_fully_stored(other, alert_id)
        assert_fully_stored(ledger, alert_id)
    # A rejection leaves no alert, but is found by its id.
    assert other.find_alert_ids(rejected) == [rejected]


def test_a_duplicate_alert_inside_a_unit_of_work_is_a_duplicate_and_undoes_none_of_its_other_writes(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger, competitor = backend(), backend()
    known = facts()
    known_outcome = new_id("outcome")
    competitor.record_alert(known)  # a competing worker took the same alert first
    competitor.record_outcome(
        outcome_id=known_outcome, alert_id=known.alert_id, bundle_id=None, status="received", at=T0
    )

    with ledger.unit_of_work():
        before = write_a_routed_alert(ledger)
        seen, record = ledger.record_alert(known)
        clash, _ = ledger.record_alert(facts(known.alert_id, body_sha256="b" * 64))
        outcome_again = ledger.record_outcome(
            outcome_id=known_outcome,
            alert_id=known.alert_id,
            bundle_id=None,
            status="received",
            at=T0,
        )
        after = write_a_routed_alert(ledger)

    assert (seen, clash, outcome_again) == (Seen.DUPLICATE, Seen.CONFLICT, False)
    assert record.facts.alert_id == known.alert_id
    assert_fully_stored(competitor, before)
    assert_fully_stored(competitor, after)
    stored = competitor.get_alert(known.alert_id)
    assert stored is not None and stored.facts.body_sha256 == known.body_sha256


def test_a_unit_of_work_inside_another_is_stored_with_the_outer_one(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger, other = backend(), backend()

    with ledger.unit_of_work():
        outer = write_a_routed_alert(ledger)
        with ledger.unit_of_work():
            inner = write_a_routed_alert(ledger)
        assert_fully_stored(ledger, inner)  # the inner block's end left the unit usable
        last = write_a_routed_alert(ledger)

    for alert_id in (outer, inner, last):
        assert_fully_stored(other, alert_id)


# -- PostgreSQL: one transaction --------------------------------------------------------------


def test_on_postgresql_a_unit_of_work_that_raises_leaves_none_of_its_writes(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger, other = pg_ledgers(), pg_ledgers()
    alert_ids: list[str] = []

    with pytest.raises(Boom), ledger.unit_of_work():
        alert_ids += [write_a_routed_alert(ledger) for _ in range(2)]
        assert_fully_stored(ledger, alert_ids[0])  # the writes were made, inside the unit
        raise Boom

    for alert_id in alert_ids:
        assert_nothing_stored(other, alert_id)
        assert_nothing_stored(ledger, alert_id)
    # The ledger is usable afterwards: a unit that commits stores what it writes.
    with ledger.unit_of_work():
        again = write_a_routed_alert(ledger)
    assert_fully_stored(other, again)


def test_on_postgresql_another_ledger_sees_nothing_of_an_open_unit_of_work_until_it_ends(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger, other = pg_ledgers(), pg_ledgers()

    with ledger.unit_of_work():
        alert_id = write_a_routed_alert(ledger)
        assert_fully_stored(ledger, alert_id)
        assert_nothing_stored(other, alert_id)
        assert other.find_alert_ids(alert_id) == []

    assert_fully_stored(other, alert_id)


def test_on_postgresql_a_nested_unit_of_work_is_invisible_to_others_until_the_outer_one_ends(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger, other = pg_ledgers(), pg_ledgers()

    with ledger.unit_of_work():
        with ledger.unit_of_work():
            inner = write_a_routed_alert(ledger)
        assert_fully_stored(ledger, inner)
        assert_nothing_stored(other, inner)  # the inner block's end committed nothing

    assert_fully_stored(other, inner)


def test_on_postgresql_an_outer_unit_of_work_that_raises_undoes_a_nested_one_that_ended(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger, other = pg_ledgers(), pg_ledgers()
    inner: list[str] = []

    with pytest.raises(Boom), ledger.unit_of_work():
        with ledger.unit_of_work():
            inner.append(write_a_routed_alert(ledger))
        assert_fully_stored(ledger, inner[0])
        raise Boom

    assert_nothing_stored(other, inner[0])
    assert_nothing_stored(ledger, inner[0])


def test_on_postgresql_a_unit_of_work_holds_only_the_calls_of_the_thread_that_opened_it(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger, other = pg_ledgers(), pg_ledgers()
    from_another_thread: list[str] = []

    with ledger.unit_of_work():
        mine = write_a_routed_alert(ledger)
        # The same ledger object, used by another consumer thread meanwhile: its own commit.
        worker = threading.Thread(
            target=lambda: from_another_thread.append(write_a_routed_alert(ledger))
        )
        worker.start()
        worker.join(timeout=30)
        assert from_another_thread, "the other thread's writes did not finish"
        assert_fully_stored(other, from_another_thread[0])
        assert_nothing_stored(other, mine)

    assert_fully_stored(other, mine)


def test_marking_a_batch_routed_marks_exactly_those_alerts(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    queued = [facts() for _ in range(3)]
    for alert in queued:
        ledger.record_alert(alert)
        ledger.mark_routed(
            alert.alert_id,
            rule="adult",
            referrals=[referral(alert.alert_id, "leeds-ld")],
            at=T0,
            routed=False,
        )

    with ledger.unit_of_work():
        ledger.mark_all_routed([a.alert_id for a in queued[:2]], at=T0 + timedelta(seconds=1))

    states = [ledger.get_alert(a.alert_id).state for a in queued]  # type: ignore[union-attr]
    assert states == [AlertState.ROUTED, AlertState.ROUTED, AlertState.RECEIVED]
    assert [len(ledger.referrals_for(a.alert_id)) for a in queued] == [1, 1, 1]


def test_events_added_in_a_unit_are_stored_in_order_when_it_ends(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    alert = facts()
    ledger.record_alert(alert)
    names = [f"step_{n}" for n in range(5)]

    with ledger.unit_of_work():
        for name in names:
            ledger.add_event(JourneyEvent(alert.alert_id, T0, "intake", name))

    assert [e.event for e in ledger.journey(alert.alert_id)] == names


def test_events_of_a_unit_that_raises_are_not_stored_on_postgresql(
    pg_ledgers: Callable[[], SqlLedger],
) -> None:
    ledger = pg_ledgers()
    alert = facts()
    ledger.record_alert(alert)

    with pytest.raises(Boom), ledger.unit_of_work():
        ledger.add_event(JourneyEvent(alert.alert_id, T0, "intake", "never_stored"))
        raise Boom

    ledger.add_event(JourneyEvent(alert.alert_id, T0, "intake", "stored"))
    assert [e.event for e in ledger.journey(alert.alert_id)] == ["stored"]


def test_recording_many_alerts_answers_each_as_recording_it_alone_would(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger, competitor = backend(), backend()
    known, changed = facts(), facts()
    competitor.record_alert(known)
    competitor.record_alert(changed)
    fresh = replace(facts(), vulnerability_types=("autism", "mental_health"))
    plain = facts()

    with ledger.unit_of_work():
        answers = ledger.record_alerts(
            [fresh, known, replace(changed, body_sha256="b" * 64), plain]
        )

    assert [seen for seen, _ in answers] == [Seen.NEW, Seen.DUPLICATE, Seen.CONFLICT, Seen.NEW]
    assert answers[0][1].facts.alert_id == fresh.alert_id
    assert answers[2][1].facts.body_sha256 == "a" * 64  # the one stored first
    stored = competitor.get_alert(fresh.alert_id)
    assert stored is not None and stored.facts.vulnerability_types == ("autism", "mental_health")
    assert competitor.get_alert(plain.alert_id) is not None


def test_queueing_many_alerts_stores_their_referrals_and_rules_not_yet_routed(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    alerts = [facts() for _ in range(3)]
    for alert in alerts:
        ledger.record_alert(alert)
    queued = [
        (a.alert_id, f"rule-{n}", [referral(a.alert_id, "leeds-ld"), referral(a.alert_id, "wy-ld")])
        for n, a in enumerate(alerts)
    ]

    with ledger.unit_of_work():
        ledger.mark_all_queued(queued, at=T0)
        ledger.mark_all_queued(queued[:1], at=T0)  # a re-driven batch repeats them

    for n, alert in enumerate(alerts):
        stored = ledger.get_alert(alert.alert_id)
        assert stored is not None
        assert (stored.state, stored.rule) == (AlertState.RECEIVED, f"rule-{n}")
        referrals = ledger.referrals_for(alert.alert_id)
        assert [(r.endpoint, r.state) for r in referrals] == [
            ("leeds-ld", ReferralState.QUEUED),
            ("wy-ld", ReferralState.QUEUED),
        ]


def test_queueing_an_alert_the_ledger_does_not_hold_is_a_key_error(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    unknown = new_id("alert")

    with pytest.raises(KeyError):
        ledger.mark_all_queued([(unknown, "adult", [referral(unknown, "leeds-ld")])], at=T0)


def test_reading_many_alerts_and_referrals_gives_those_it_knows_by_id(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    alerts = [replace(facts(), vulnerability_types=("autism",)), facts()]
    refs = []
    for alert in alerts:
        ledger.record_alert(alert)
        refs.append(referral(alert.alert_id, "leeds-ld"))
        ledger.mark_routed(alert.alert_id, rule="adult", referrals=refs[-1:], at=T0)
    unknown = new_id("alert")

    found_alerts = ledger.get_alerts([a.alert_id for a in alerts] + [unknown])
    found_referrals = ledger.get_referrals([r.bundle_id for r in refs] + [unknown])

    assert found_alerts == {a.alert_id: ledger.get_alert(a.alert_id) for a in alerts}
    assert found_alerts[alerts[0].alert_id].facts.vulnerability_types == ("autism",)
    assert found_referrals == {r.bundle_id: ledger.get_referral(r.bundle_id) for r in refs}
    assert ledger.get_alerts([]) == {} and ledger.get_referrals([]) == {}


def test_recording_many_deliveries_and_outcomes_answers_as_one_at_a_time(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger, alone = backend(), backend()
    alert = facts()
    ledger.record_alert(alert)
    refs = [referral(alert.alert_id, e) for e in ("leeds-ld", "wy-ld", "yot")]
    ledger.mark_routed(alert.alert_id, rule="adult", referrals=refs, at=T0)
    at = T0 + timedelta(seconds=3)

    with ledger.unit_of_work():
        updated = ledger.record_deliveries(
            [DeliveredAttempt(r.bundle_id, at, 200, "http_delivered", 4.0) for r in refs]
        )
    known = new_id("outcome")
    ledger.record_outcome(
        outcome_id=known, alert_id=alert.alert_id, bundle_id=refs[0].bundle_id,
        status="received", at=at,
    )  # fmt: skip
    outcomes = [
        OutcomeRecord(known, alert.alert_id, refs[0].bundle_id, "received", at),
        OutcomeRecord(new_id("outcome"), alert.alert_id, refs[1].bundle_id, "received", at),
        OutcomeRecord(new_id("outcome"), alert.alert_id, refs[2].bundle_id, "received", at),
    ]
    with ledger.unit_of_work():
        first_time = ledger.record_outcomes(outcomes)

    assert [u.bundle_id for u in updated] == [r.bundle_id for r in refs]
    for u in updated:
        assert (u.state, u.attempts, u.delivered_at) == (ReferralState.DELIVERED, 1, at)
        assert alone.get_referral(u.bundle_id) == u
        assert [a.result for a in alone.attempts_for(u.bundle_id)] == ["delivered"]
    assert first_time == [False, True, True]
    assert len(alone.outcomes_for(alert.alert_id)) == 3


def test_recording_a_delivery_of_a_referral_the_ledger_does_not_hold_is_a_key_error(
    backend: Callable[[], CheckedLedger],  # noqa: F811
) -> None:
    ledger = backend()
    alert = facts()
    ledger.record_alert(alert)
    known = referral(alert.alert_id, "leeds-ld")
    ledger.mark_routed(alert.alert_id, rule="adult", referrals=[known], at=T0)

    with pytest.raises(KeyError):
        ledger.record_deliveries(
            [
                DeliveredAttempt(known.bundle_id, T0, 200, "http_delivered", 1.0),
                DeliveredAttempt(new_id("bundle"), T0, 200, "http_delivered", 1.0),
            ]
        )
