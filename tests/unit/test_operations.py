"""What operators do with parked failures (hub.operations), on the in-memory failed-message store
and ledger: show masks personal data unless revealed (and a reveal is audited), replay republishes
exactly what failed to the queue it failed on, discard and replay need who and why, and trace
joins the ledger's journey with the parked rows. The stores' own contract is
tests/integration/test_failed_store.py."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.adapters.memory.ledger import MemoryLedger
from hub.adapters.memory.publisher import MemoryPublisher
from hub.operations.failed import OperationRefused, discard, parse_since, replay, select_ids, show
from hub.operations.trace import trace
from hub.records import AlertFacts, FailedState, ReferralRecord
from hub.security.masking import mask_document
from hub.wire import H_REPLAYED_FROM, WORK_EXCHANGE
from tests.fixtures.alerts import custody_alert, to_body
from tests.fixtures.dead_letters import T0, dead_letter, failure

pytestmark = pytest.mark.unit


@pytest.fixture
def store() -> MemoryFailedStore:
    return MemoryFailedStore()


def parked(store: MemoryFailedStore, **options: Any) -> int:
    return store.add(failure(dead_letter(**options)), at=T0)[1]


# -- show ---------------------------------------------------------------------------------------


def test_show_masks_an_alert_unless_revealed_and_a_reveal_is_audited(
    store: MemoryFailedStore,
) -> None:
    alert = custody_alert()
    envelope = dead_letter(body=to_body(alert), stage="intake")
    failed_id = store.add(failure(envelope, stage="intake"), at=T0)[1]

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


def test_showing_an_unknown_id_is_refused(store: MemoryFailedStore) -> None:
    with pytest.raises(OperationRefused, match="no failed message with id 7"):
        show(store, 7, now=T0)


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


# -- replay and discard -------------------------------------------------------------------------


def test_replay_republishes_the_original_to_the_queue_it_failed_on(
    store: MemoryFailedStore,
) -> None:
    envelope = dead_letter(body=b'{"resourceType": "Bundle", "id": "b-1"}')
    failed_id = store.add(failure(envelope), at=T0)[1]
    publisher = MemoryPublisher()

    result = replay(store, publisher, [failed_id], by="alice", reason="endpoint fixed", now=T0)

    assert result.done == [failed_id] and result.skipped == {}
    (sent,) = publisher.published
    assert (sent.exchange, sent.routing_key) == (WORK_EXCHANGE, "hub.deliver.wy-ld")
    assert sent.body == envelope.body
    assert sent.message_id == envelope.message_id
    assert sent.correlation_id == envelope.headers["x-hub-alert-id"]
    assert sent.content_type == "application/fhir+json"
    headers = sent.headers
    assert headers["x-hub-attempts"] == 0 and headers[H_REPLAYED_FROM] == str(failed_id)
    assert "x-hub-error" not in headers and "x-hub-first-failure" not in headers
    assert headers["x-hub-original-queue"] == "hub.deliver.wy-ld"
    message = store.get(failed_id)
    assert message is not None and message.state is FailedState.REPLAYED
    assert [(e.action, e.by, e.reason) for e in store.audit_log(failed_id)] == [
        ("replay", "alice", "endpoint fixed")
    ]


def test_replay_skips_what_is_not_still_failed_and_says_why(store: MemoryFailedStore) -> None:
    replayed, discarded = parked(store), parked(store)
    store.mark_replayed([replayed], by="alice", reason="fixed", at=T0)
    store.mark_discarded([discarded], by="alice", reason="duplicate", at=T0)
    publisher = MemoryPublisher()

    result = replay(store, publisher, [replayed, discarded, 99], by="bob", reason="again", now=T0)

    assert result.done == [] and publisher.published == []
    assert result.skipped == {
        replayed: "already replayed",
        discarded: "already discarded",
        99: "unknown id",
    }


def test_replay_and_discard_need_who_and_why(store: MemoryFailedStore) -> None:
    failed_id = parked(store)

    with pytest.raises(OperationRefused, match="reason"):
        discard(store, [failed_id], by="alice", reason=" ", now=T0)
    with pytest.raises(OperationRefused, match="operator"):
        replay(store, MemoryPublisher(), [failed_id], by="", reason="fixed", now=T0)

    assert store.get(failed_id).state is FailedState.FAILED  # type: ignore[union-attr]
    assert store.audit_log() == []


def forged_row(store: MemoryFailedStore, **fields: Any) -> int:
    """A row whose origin fields say what a forged header once made them say (rows stored
    before the hub sealed its headers): replay checks them again, whatever the row says."""
    return store.add(dataclasses.replace(failure(dead_letter()), **fields), at=T0)[1]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        (  # the incident: an alert parked under the outcome queue
            {"stage": "intake", "original_queue": "hub.outcomes.inbound", "endpoint": "wy-ld"},
            "a intake failure cannot be replayed to hub.outcomes.inbound",
        ),
        (
            {"stage": "deliver", "original_queue": "hub.outcomes.inbound"},
            "a deliver failure cannot be replayed to hub.outcomes.inbound",
        ),
        (
            {"stage": "deliver", "original_queue": "hub.deliver.leeds-dat", "endpoint": "wy-ld"},
            "a delivery to wy-ld cannot go to hub.deliver.leeds-dat",
        ),
        (
            {"stage": "outcome", "original_queue": "hub.alerts.custody"},
            "a outcome failure cannot be replayed to hub.alerts.custody",
        ),
        (
            {
                "stage": "intake",
                "original_queue": "hub.alerts.custody",
                "original_exchange": "justice.alerts",
                "original_routing_key": "court.LMC01.identification",
            },
            "the routing key it was published under is not known",
        ),
        (
            {"stage": "intake", "original_queue": "hub.alerts.custody", "original_exchange": None},
            "the routing key it was published under is not known",
        ),
        ({"original_queue": None}, "the queue it came from is not known"),
    ],
)
def test_replay_goes_only_to_the_queue_the_stage_reads_and_says_why_not(
    store: MemoryFailedStore, fields: dict[str, Any], why: str
) -> None:
    failed_id = forged_row(store, **fields)
    publisher = MemoryPublisher()

    result = replay(store, publisher, [failed_id], by="alice", reason="fixed", now=T0)

    assert result.skipped == {failed_id: why} and publisher.published == []
    assert store.get(failed_id).state is FailedState.FAILED  # type: ignore[union-attr]


def test_an_alert_replays_to_its_alert_queue_with_the_hubs_record_of_who_sent_it(
    store: MemoryFailedStore,
) -> None:
    failed_id = forged_row(
        store,
        stage="intake",
        endpoint=None,
        original_queue="hub.alerts.custody",
        original_exchange="justice.alerts",
        original_routing_key="custody.WYP01.identification",
        headers={
            "x-hub-seal": "…",  # stored from a dead letter the hub had sealed
            "x-hub-original-user-id": "wyp-custody",
            "x-hub-original-queue": "hub.outcomes.inbound",  # what a stored header claimed
            "x-hub-original-routing-key": "court.LMC01.identification",
            "x-hub-endpoint": "wy-ld",
            "x-hub-stage": "outcome",
            "x-death": [{"queue": "hub.outcomes.inbound"}],
            "x-anything": "else",
        },
    )
    publisher = MemoryPublisher()

    replay(store, publisher, [failed_id], by="alice", reason="fixed", now=T0)

    (sent,) = publisher.published
    assert sent.routing_key == "hub.alerts.custody"
    assert sent.headers == {
        "x-hub-original-user-id": "wyp-custody",
        "x-hub-original-queue": "hub.alerts.custody",
        "x-hub-original-exchange": "justice.alerts",
        "x-hub-original-routing-key": "custody.WYP01.identification",
        "x-hub-attempts": 0,
        H_REPLAYED_FROM: str(failed_id),
    }


def test_an_alert_parked_before_the_hub_sealed_its_headers_is_not_replayed(
    store: MemoryFailedStore,
) -> None:
    """A row stored before this release: its x-hub-original-* headers may be a publisher's."""
    failed_id = forged_row(
        store,
        stage="intake",
        endpoint=None,
        original_queue="hub.alerts.custody",
        original_exchange="justice.alerts",
        original_routing_key="custody.OTHER.identification",
        headers={"x-hub-original-routing-key": "custody.OTHER.identification"},
    )
    publisher = MemoryPublisher()

    result = replay(store, publisher, [failed_id], by="alice", reason="fixed", now=T0)

    assert result.skipped == {
        failed_id: "parked before the hub sealed its headers: who sent it is not known"
    }
    assert publisher.published == []


def test_a_group_selects_its_still_failed_messages_and_unknown_ids_are_refused(
    store: MemoryFailedStore,
) -> None:
    outage = [parked(store) for _ in range(3)]
    parked(store, endpoint="leeds-dat")
    store.mark_discarded(outage[:1], by="alice", reason="duplicate", at=T0)
    key = store.get(outage[0]).failure.group_key  # type: ignore[union-attr]

    assert select_ids(store, group=key[:12]) == outage[1:]
    assert select_ids(store, ids=[outage[2], outage[1], outage[2]]) == [outage[2], outage[1]]
    with pytest.raises(OperationRefused, match="no failed message with id 42"):
        select_ids(store, ids=[outage[0], 42])
    with pytest.raises(OperationRefused):
        select_ids(store, ids=[outage[0]], group=key)
    with pytest.raises(OperationRefused):
        select_ids(store)


def test_since_takes_an_age_or_an_iso_time() -> None:
    assert parse_since("6h", now=T0) == T0 - timedelta(hours=6)
    assert parse_since("30m", now=T0) == T0 - timedelta(minutes=30)
    assert parse_since("2026-11-23T08:00Z", now=T0) == T0 - timedelta(hours=1, minutes=30)
    assert parse_since("2026-11-23T08:00", now=T0) == T0 - timedelta(hours=1, minutes=30)
    with pytest.raises(OperationRefused):
        parse_since("yesterday", now=T0)


# -- trace --------------------------------------------------------------------------------------


def test_trace_shows_the_parked_failure_of_a_referral(store: MemoryFailedStore) -> None:
    ledger = MemoryLedger()
    envelope = dead_letter()
    alert_id = str(envelope.headers["x-hub-alert-id"])
    ledger.record_alert(
        AlertFacts(
            alert_id=alert_id,
            body_sha256="a" * 64,
            source_kind="custody",
            organisation_code="WYP",
            reference="WY-26-000001",
            pathway="adult",
            urgency="urgent",
            consent_status="given",
            share_with_justice=True,
            received_at=T0,
        )
    )
    bundle_id = str(envelope.message_id)
    referral = ReferralRecord(bundle_id, alert_id, "wy-ld", request_id="req-1")
    ledger.mark_routed(alert_id, rule="default", referrals=[referral], at=T0)
    failed_id = store.add(failure(envelope), at=T0)[1]

    (found,) = trace(ledger, "WY-26-000001", store=store)

    assert found["alert_id"] == alert_id
    assert found["failed_messages"] == [
        {
            "id": failed_id,
            "stage": "deliver",
            "endpoint": "wy-ld",
            "error_class": "PermanentError",
            "state": "failed",
        }
    ]
    assert found["current"] == f"routed: wy-ld queued; parked as #{failed_id}"
    assert trace(ledger, "WY-26-999999", store=store) == []


def test_masking_hides_free_text_anywhere_in_a_fhir_resource_but_keeps_initials() -> None:
    from hub.security.mask_spec import HIDDEN
    from hub.security.masking import mask_document

    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "CarePlan",
                    "description": "Plan after disclosure of abuse",
                    "activity": [{"detail": {"description": "Weekly sessions", "kind": "Task"}}],
                    "note": [{"text": "Lives with partner"}],
                }
            },
            {"resource": {"resourceType": "Appointment", "comment": "Bring methadone script"}},
            {
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"given": ["Jordan"], "family": "Testperson"}],
                }
            },
        ],
    }

    masked = mask_document(bundle)

    care_plan, appointment, patient = (e["resource"] for e in masked["entry"])
    assert care_plan["description"] == HIDDEN
    assert care_plan["activity"] == HIDDEN  # not on the allowlist: hidden whole
    assert care_plan["note"] == HIDDEN
    assert appointment["comment"] == HIDDEN
    assert patient["name"] == [{"text": "J. T."}]
    for secret in ("abuse", "Weekly", "partner", "methadone", "Jordan", "Testperson"):
        assert secret not in repr(masked)
