"""alert_to_referral: golden Bundles, stable ids, R4 validity, where free text may go."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.messages import (
    Address,
    Alert,
    Consent,
    ConsentStatus,
    Hearing,
    HubIdentity,
    Organisation,
    Pathway,
    Person,
    PersonName,
    Recipient,
    ReportedBy,
    Source,
    SourceKind,
    Urgency,
    Vulnerability,
    VulnerabilityType,
)
from hub.transforms.alert_to_referral import build_referral, bundle_bytes
from hub.transforms.fhir_vocabulary import ALERT_ID_SYSTEM, NHS_NUMBER_SYSTEM
from hub.transforms.referral_ids import referral_ids
from tests.fixtures.ids import ID_KEY

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
HUB = HubIdentity(
    ods_code="X26HUB", name="L&D Hub", endpoint="https://ld-hub.example.nhs.uk/fhir/R4", ids=ID_KEY
)
LEEDS = Recipient(
    endpoint="leeds-ld",
    ods_code="RGD",
    organisation_name="Leeds and York Partnership NHS Foundation Trust",
    service_id="2000011147",
)
YOUTH_SERVICE = Recipient(
    endpoint="yorkshire-youth-ld", ods_code="RXG", organisation_name="South West Yorkshire NHS"
)


def custody_adult_alert() -> Alert:
    return Alert(
        alert_id="3f2b8a9e-4c1d-4e5f-9a6b-7c8d9e0f1a2b",
        sent_at=datetime(2025, 3, 14, 9, 30, 0, tzinfo=UTC),
        source=Source(
            kind=SourceKind.CUSTODY,
            organisation=Organisation(code="WYP01", name="West Yorkshire Police"),
            location="Elland Road Custody Suite",
            reference="CR/2025/004711",
            reported_by=ReportedBy(role="custody sergeant", id="WYP-4471"),
        ),
        person=Person(
            name=PersonName(given=("Alex", "Jordan"), family="Example"),
            date_of_birth=date(1990, 6, 1),
            sex="male",
            nhs_number="9434765919",
            pnc_id="01/23456A",
            address=Address(lines=("1 Example Street", "Leeds"), postcode="LS1 4AP"),
        ),
        pathway=Pathway.ADULT,
        vulnerabilities=(
            Vulnerability(
                type=VulnerabilityType.MENTAL_HEALTH,
                detail="Hearing voices since arrest; previously under CMHT",
            ),
            Vulnerability(
                type=VulnerabilityType.UNSTABLE_ACCOMMODATION,
                detail="Sofa surfing for three months",
            ),
        ),
        urgency=Urgency.URGENT,
        consent=Consent(
            status=ConsentStatus.GIVEN,
            share_with_justice=True,
            recorded_at=datetime(2025, 3, 14, 9, 15, 0, tzinfo=UTC),
            recorded_by="WYP-4471",
        ),
    )


def court_youth_alert() -> Alert:
    return Alert(
        alert_id="9a7c1e22-0b4d-4f6a-8e3c-5d2b1a0f9e8d",
        sent_at=datetime(2025, 4, 2, 13, 5, 30, tzinfo=UTC),
        source=Source(
            kind=SourceKind.COURT,
            organisation=Organisation(code="C1234", name="Leeds Youth Court"),
            location="Leeds Magistrates' Court, cells",
            reference="CASE-2025-0815",
            reported_by=ReportedBy(role="court L&D practitioner", id="LD-88"),
        ),
        person=Person(
            name=PersonName(given=("Sam",), family="Sample"),
            date_of_birth=date(2009, 11, 20),
            sex="female",
        ),
        pathway=Pathway.YOUTH,
        vulnerabilities=(
            Vulnerability(
                type=VulnerabilityType.SELF_HARM_SUICIDE_RISK,
                detail="Fresh cuts to forearm seen by dock officer",
            ),
            Vulnerability(type=VulnerabilityType.AUTISM, detail="Parent reports autism diagnosis"),
            Vulnerability(type=VulnerabilityType.ALCOHOL_MISUSE, detail=""),
        ),
        urgency=Urgency.EMERGENCY,
        consent=Consent(
            status=ConsentStatus.REFUSED,
            share_with_justice=False,
            recorded_at=datetime(2025, 4, 2, 12, 50, 0, tzinfo=UTC),
            recorded_by="LD-88",
        ),
        hearing=Hearing(at=datetime(2025, 4, 3, 10, 0, 0, tzinfo=UTC), court="Leeds Youth Court"),
    )


CASES = {
    "referral_custody_adult_consent_given": (custody_adult_alert, LEEDS),
    "referral_court_youth_consent_refused": (court_youth_alert, YOUTH_SERVICE),
}


def all_bundles() -> Iterator[dict[str, Any]]:
    for make_alert, recipient in CASES.values():
        yield build_referral(make_alert(), recipient=recipient, hub=HUB)
    for status in ConsentStatus:
        alert = custody_adult_alert()
        alert = replace(alert, consent=replace(alert.consent, status=status))
        yield build_referral(alert, recipient=YOUTH_SERVICE, hub=HUB)
    every_type = tuple(Vulnerability(type=t, detail=f"detail {t}") for t in VulnerabilityType)
    yield build_referral(
        replace(court_youth_alert(), vulnerabilities=every_type), recipient=LEEDS, hub=HUB
    )


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type
    ]


def strings(value: object, path: str = "Bundle") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


@pytest.mark.parametrize("name", sorted(CASES))
def test_referral_matches_its_golden_file(name: str) -> None:
    make_alert, recipient = CASES[name]
    bundle = build_referral(make_alert(), recipient=recipient, hub=HUB)
    pretty = json.dumps(bundle, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(pretty, encoding="utf-8")
    assert pretty == golden.read_text(encoding="utf-8")
    assert bundle_bytes(bundle) == bundle_bytes(json.loads(golden.read_bytes()))


def test_the_same_alert_and_endpoint_give_byte_identical_bundles() -> None:
    first = build_referral(custody_adult_alert(), recipient=LEEDS, hub=HUB)
    again = build_referral(custody_adult_alert(), recipient=LEEDS, hub=HUB)

    assert bundle_bytes(first) == bundle_bytes(again)


def test_different_endpoints_give_entirely_different_ids() -> None:
    alert = custody_adult_alert()
    to_leeds = build_referral(alert, recipient=LEEDS, hub=HUB)
    to_youth = build_referral(alert, recipient=YOUTH_SERVICE, hub=HUB)

    def ids(bundle: dict[str, Any]) -> set[str]:
        return {bundle["id"]} | {e["resource"]["id"] for e in bundle["entry"]}

    assert len(ids(to_leeds)) == len(to_leeds["entry"]) + 1
    assert ids(to_leeds).isdisjoint(ids(to_youth))


def test_referral_ids_name_the_bundle_and_service_request_it_builds() -> None:
    alert = custody_adult_alert()
    bundle = build_referral(alert, recipient=LEEDS, hub=HUB)

    ids = referral_ids(ID_KEY, alert.alert_id, LEEDS.endpoint)

    assert ids.bundle_id == bundle["id"]
    assert ids.service_request_id == resources(bundle, "ServiceRequest")[0]["id"]
    assert ids.request_id not in {ids.bundle_id, ids.service_request_id}
    assert ids == referral_ids(ID_KEY, alert.alert_id, LEEDS.endpoint)
    assert ids.request_id != referral_ids(ID_KEY, alert.alert_id, YOUTH_SERVICE.endpoint).request_id


def test_wire_bytes_are_canonical_json() -> None:
    bundle = build_referral(custody_adult_alert(), recipient=LEEDS, hub=HUB)

    wire = bundle_bytes(bundle)

    assert wire == json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode("ascii")
    assert json.loads(wire) == bundle


@pytest.mark.parametrize("bundle", list(all_bundles()), ids=lambda b: b["id"][:8])
def test_every_bundle_validates_as_fhir_r4(bundle: dict[str, Any]) -> None:
    wire = json.loads(json.dumps(bundle))

    Bundle.model_validate(wire)
    for entry in wire["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("bundle", list(all_bundles()), ids=lambda b: b["id"][:8])
def test_every_bundle_is_a_self_contained_message(bundle: dict[str, Any]) -> None:
    full_urls = [e["fullUrl"] for e in bundle["entry"]]
    references = [v for path, v in strings(bundle) if path.endswith(".reference")]

    assert bundle["entry"][0]["resource"]["resourceType"] == "MessageHeader"
    assert full_urls == [f"urn:uuid:{e['resource']['id']}" for e in bundle["entry"]]
    assert set(references) <= set(full_urls)
    assert {e["resource"]["meta"]["lastUpdated"] for e in bundle["entry"]} == {bundle["timestamp"]}


def test_free_text_detail_appears_only_in_service_request_notes() -> None:
    for make_alert, recipient in CASES.values():
        alert = make_alert()
        bundle = build_referral(alert, recipient=recipient, hub=HUB)
        details = [v.detail for v in alert.vulnerabilities if v.detail]
        sr_index = next(
            i
            for i, e in enumerate(bundle["entry"])
            if e["resource"]["resourceType"] == "ServiceRequest"
        )
        note_prefix = f"Bundle.entry[{sr_index}].resource.note["

        places = [path for path, text in strings(bundle) for d in details if d in text]

        assert len(places) == len(details)
        assert all(p.startswith(note_prefix) and p.endswith("].text") for p in places)
        for reason in resources(bundle, "ServiceRequest")[0]["reasonCode"]:
            assert all(d not in reason["text"] for d in details)


def test_vulnerabilities_become_reason_codes_in_order_with_snomed_where_known() -> None:
    bundle = build_referral(court_youth_alert(), recipient=LEEDS, hub=HUB)

    reasons = resources(bundle, "ServiceRequest")[0]["reasonCode"]

    assert [r["text"] for r in reasons] == [
        "Self-harm or suicide risk",
        "Autism",
        "Alcohol misuse",
    ]
    assert [r.get("coding", [{}])[0].get("code") for r in reasons] == [
        "401206008",
        None,
        "415685003",
    ]


def test_service_request_carries_the_alert_id_priority_and_hearing() -> None:
    court = build_referral(court_youth_alert(), recipient=LEEDS, hub=HUB)
    custody = build_referral(custody_adult_alert(), recipient=LEEDS, hub=HUB)

    court_sr = resources(court, "ServiceRequest")[0]
    custody_sr = resources(custody, "ServiceRequest")[0]

    assert court_sr["identifier"] == [
        {"system": ALERT_ID_SYSTEM, "value": court_youth_alert().alert_id}
    ]
    assert (court_sr["priority"], custody_sr["priority"]) == ("stat", "urgent")
    assert court_sr["occurrenceDateTime"] == "2025-04-03T10:00:00Z"
    assert "occurrenceDateTime" not in custody_sr
    assert resources(court, "Encounter")[0]["status"] == "planned"
    assert resources(custody, "Encounter")[0]["status"] == "in-progress"


def test_nhs_number_is_sent_as_present_but_not_traced_and_omitted_when_absent() -> None:
    with_number = resources(
        build_referral(custody_adult_alert(), recipient=LEEDS, hub=HUB), "Patient"
    )[0]
    without = resources(build_referral(court_youth_alert(), recipient=LEEDS, hub=HUB), "Patient")[0]

    nhs = [i for i in with_number["identifier"] if i["system"] == NHS_NUMBER_SYSTEM]
    assert nhs[0]["value"] == "9434765919"
    assert nhs[0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == (
        "number-present-but-not-traced"
    )
    assert "identifier" not in without


@pytest.mark.parametrize(
    ("status", "share", "consent_status", "provision", "justice", "policy"),
    [
        (ConsentStatus.GIVEN, True, "active", "permit", "permit", False),
        (ConsentStatus.GIVEN, False, "active", "permit", "deny", False),
        (ConsentStatus.REFUSED, False, "rejected", "deny", "deny", False),
        (ConsentStatus.NOT_ASKED, False, "proposed", "deny", "deny", False),
        (ConsentStatus.LACKS_CAPACITY, False, "active", "permit", "deny", True),
    ],
)
def test_consent_status_and_provisions_follow_the_alert(
    status: ConsentStatus,
    share: bool,
    consent_status: str,
    provision: str,
    justice: str,
    policy: bool,
) -> None:
    alert = custody_adult_alert()
    alert = replace(alert, consent=replace(alert.consent, status=status, share_with_justice=share))

    consent = resources(build_referral(alert, recipient=LEEDS, hub=HUB), "Consent")[0]

    assert consent["status"] == consent_status
    assert consent["provision"]["type"] == provision
    assert consent["provision"]["provision"][0]["type"] == justice
    assert ("policy" in consent) is policy
    assert consent["dateTime"] == "2025-03-14T09:15:00Z"


def test_a_naive_timestamp_is_refused_rather_than_guessed() -> None:
    alert = replace(custody_adult_alert(), sent_at=datetime(2025, 3, 14, 9, 30))

    with pytest.raises(ValueError, match="time zone"):
        build_referral(alert, recipient=LEEDS, hub=HUB)


_FREE_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(given_name=_FREE_TEXT, family=_FREE_TEXT, location=_FREE_TEXT, street=_FREE_TEXT)
def test_wire_bytes_are_what_the_standard_library_writes_for_any_text(
    given_name: str, family: str, location: str, street: str
) -> None:
    """bundle_bytes (orjson) and json.dumps with the canonical options agree byte for byte on
    any text a person's details can carry: control characters, quotes, backslashes, non-ASCII
    and characters outside the Basic Multilingual Plane."""
    alert = custody_adult_alert()
    alert = replace(
        alert,
        source=replace(alert.source, location=location),
        person=replace(
            alert.person,
            name=PersonName(given=(given_name,), family=family),
            address=Address(lines=(street,), postcode="LS1 4AP"),
        ),
    )
    bundle = build_referral(alert, recipient=LEEDS, hub=HUB)

    wire = bundle_bytes(bundle)

    standard = json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert wire == standard.encode("utf-8")
    assert family in json.loads(wire)["entry"][2]["resource"]["name"][0]["family"]


def test_wire_bytes_refuse_text_that_is_not_unicode() -> None:
    alert = custody_adult_alert()
    alert = replace(
        alert, person=replace(alert.person, name=PersonName(given=("\ud800",), family="X"))
    )

    with pytest.raises(ValueError, match="cannot be serialised"):
        bundle_bytes(build_referral(alert, recipient=LEEDS, hub=HUB))
