"""The fast validator (fastjsonschema, hub.contracts.schemas.is_valid) says yes exactly when the
jsonschema validator finds no error, on every packaged justice schema: valid documents and
documents mutated at random (a field dropped, a value of any JSON type put anywhere, an unknown
field added). A yes from the fast one skips the jsonschema pass, so a difference would let an
invalid message in, or answer a valid one with no problem to show."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.contracts.schemas import _validator, is_valid
from hub.messages import OutcomeStatus, Problem, ReferralOutcome, ServiceRef, SourceKind
from tests.fixtures.alerts import (
    cancellation_of,
    consent_update_of,
    court_alert,
    custody_alert,
    update_of,
)

pytestmark = pytest.mark.unit

SENT = "2026-11-23T09:30:30Z"


def documents() -> list[tuple[str, dict[str, Any]]]:
    alert = custody_alert()
    return [
        ("ld.identification-alert.1", alert),
        ("ld.identification-alert.1", court_alert()),
        ("ld.alert-update.1", update_of(alert, sent_at=SENT)),
        ("ld.alert-cancellation.1", cancellation_of(alert, sent_at=SENT)),
        (
            "ld.consent-update.1",
            consent_update_of(alert, status="refused", share_with_justice=False, sent_at=SENT),
        ),
        ("ld.referral-outcome.1", outcome(reasons=(Problem("urgency", "required field missing"),))),
        (
            "ld.referral-outcome.1",
            outcome(
                status=OutcomeStatus.RECEIVED,
                service=ServiceRef(code="wy-ld", name="West Yorkshire L&D"),
                detail={"referred_to": "community mental health team", "note": "seen"},
            ),
        ),
    ]


def outcome(**changes: Any) -> dict[str, Any]:
    """An outcome as the hub returns it (hub.contracts.outcome checks it before it leaves)."""
    fields: dict[str, Any] = {
        "outcome_id": "6f1e1c1a-0b1e-4f4e-9a53-2a7d9c1f0e11",
        "alert_id": "0d427606-a1ec-4d20-8c16-7825b541284e",
        "reference": "WY-26-004517",
        "source_kind": SourceKind.CUSTODY,
        "organisation_code": "WYP",
        "status": OutcomeStatus.REJECTED,
        "at": datetime(2026, 11, 23, 9, 31, tzinfo=UTC),
        **changes,
    }
    return ReferralOutcome(**fields).to_json_dict()


EDGE_VALUES: list[Any] = [
    "",
    "2026-11-23",
    "2026-02-30",
    "2026-11-23T09:30:30Z",
    "2026-11-23T09:30:30",
    "not-a-date",
    "0d427606-a1ec-4d20-8c16-7825b541284e",
    "0d427606-a1ec-4d20-8c16-7825b541284",
    "custody",
    "court",
    "adult",
    "youth",
    "routine",
    "urgent",
    "4010232137",
    "LS1 4AP",
    "٠١٢٣",
    "a\nb",
    True,
    0,
    1,
    -1,
    1.5,
    None,
    [],
    {},
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(EDGE_VALUES),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=6,
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def mutate(document: dict[str, Any], path: tuple[Any, ...], how: str, value: Any) -> Any:
    mutated = copy.deepcopy(document)
    if not path:
        return value if how == "replace" else mutated
    parent: Any = mutated
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "drop":
        del parent[last]
    elif how == "replace":
        parent[last] = value
    elif isinstance(parent[last], dict):
        parent[last]["zz_unknown"] = value
    elif isinstance(parent[last], list):
        parent[last].append(value)
    else:
        parent[last] = [parent[last], value]
    return mutated


def jsonschema_says_valid(name: str, document: Any) -> bool:
    return not any(True for _ in _validator(name).iter_errors(document))


@pytest.mark.parametrize(("name", "document"), documents())
def test_the_fast_validator_accepts_the_valid_documents(name: str, document: Any) -> None:
    assert jsonschema_says_valid(name, document)
    assert is_valid(name, document)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(min_value=0, max_value=len(documents()) - 1),
    pick=st.integers(min_value=0),
    how=st.sampled_from(["drop", "replace", "add"]),
    value=json_values,
)
def test_the_fast_validator_agrees_with_jsonschema_on_mutated_documents(
    which: int, pick: int, how: str, value: Any
) -> None:
    name, document = documents()[which]
    candidates = paths(document)
    mutated = mutate(document, candidates[pick % len(candidates)], how, value)

    assert is_valid(name, mutated) == jsonschema_says_valid(name, mutated)


@pytest.mark.parametrize(("name", "document"), documents())
def test_the_fast_validator_agrees_with_jsonschema_on_every_field_given_each_edge_value(
    name: str, document: Any
) -> None:
    disagreements = []
    for path in paths(document)[1:]:
        for value in EDGE_VALUES:
            mutated = mutate(document, path, "replace", value)
            if is_valid(name, mutated) != jsonschema_says_valid(name, mutated):
                disagreements.append((path, value))
    assert disagreements == []


def test_a_schema_with_a_keyword_the_fast_validator_is_not_held_to_is_refused() -> None:
    from hub.contracts import schemas

    assert "uniqueItems" not in schemas._DRAFT7_KEYWORDS
    assert schemas._keywords({"properties": {"a": {"uniqueItems": True}}}) >= {"uniqueItems"}
