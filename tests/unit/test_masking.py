"""Masking by allowlist (hub.masking): a parked message shows only fields whose meaning and
safety are known, with values of the type listed; malformed messages (names as strings, integer
NHS numbers, unknown keys, objects where lists belong) show nothing of the person."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.operations.failed import show
from hub.records import HttpResult
from hub.security.allowlists import BUNDLE, HEADERS, JUSTICE
from hub.security.mask_spec import HIDDEN, Obj
from hub.security.masking import mask_document, mask_headers
from hub.transforms.http_answer import classify
from tests.fixtures.alerts import custody_alert, to_body
from tests.fixtures.dead_letters import T0, dead_letter, failure

pytestmark = pytest.mark.unit

SECRETS = ("Jordan", "Testperson", "9990000026", "07700 900123", "jordan@example.org")


def malformed_alert() -> dict[str, Any]:
    alert = custody_alert()
    alert["person"]["name"] = "Jordan Testperson"
    alert["person"]["nhs_number"] = 9990000026
    alert["person"]["phone"] = "07700 900123"
    alert["person"]["email"] = "jordan@example.org"
    alert["person"]["aliases"] = [{"given": ["Jordan"], "family": "Testperson"}]
    alert["person"]["forename"] = "Jordan"
    alert["diagnosis"] = "Testperson has schizophrenia"
    alert["vulnerabilities"] = {"type": "mental_health", "detail": "Jordan hears voices"}
    return alert


def test_a_malformed_alert_shows_nothing_of_the_person() -> None:
    masked = mask_document(malformed_alert())

    text = json.dumps(masked)
    for secret in (*SECRETS, "schizophrenia", "hears voices"):
        assert secret not in text
    person = masked["person"]
    assert person["name"] == person["nhs_number"] == HIDDEN
    assert person["phone"] == person["email"] == person["aliases"] == person["forename"] == HIDDEN
    assert masked["diagnosis"] == masked["vulnerabilities"] == HIDDEN
    assert masked["urgency"] == "urgent"  # the known, typed fields are still there


def test_a_well_formed_alert_keeps_initials_last_digits_and_codes() -> None:
    alert = custody_alert()

    masked = mask_document(alert)

    assert masked["person"]["name"] == "J. T."
    assert masked["person"]["nhs_number"] == "******026"
    assert masked["vulnerabilities"][0] == {"type": "mental_health", "detail": HIDDEN}
    assert masked["source"]["reference"] == alert["source"]["reference"]
    assert masked["source"]["location"] == HIDDEN  # free text
    assert masked["consent"]["status"] == "given"


def test_a_key_that_is_not_a_field_name_is_counted_not_shown() -> None:
    masked = mask_document({"alert_id": "x", "person": {"Jordan Testperson": "1991-04-17"}})

    assert masked == {"alert_id": HIDDEN, "person": {"[hidden fields]": 1}}


def test_fhir_free_text_codes_given_as_words_and_unknown_resources_are_hidden() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "code": {"coding": [{"code": "Jordan Testperson", "display": "Jordan"}]},
                    "subject": {"reference": "Patient/1", "display": "Jordan Testperson"},
                    "identifier": {
                        "system": "https://fhir.nhs.uk/Id/nhs-number",
                        "value": 9990000026,
                    },
                }
            },
            {"resource": "Jordan Testperson"},
        ],
    }

    masked = mask_document(bundle)

    assert "Jordan" not in json.dumps(masked) and "9990000026" not in json.dumps(masked)
    request = masked["entry"][0]["resource"]
    assert request["status"] == "active"
    assert request["subject"] == {"reference": "Patient/1", "display": HIDDEN}
    assert request["identifier"]["value"] == HIDDEN
    assert masked["entry"][1]["resource"] == HIDDEN


def test_publisher_headers_are_hidden_and_hub_headers_need_their_type() -> None:
    masked = mask_headers(
        {
            "x-hub-attempts": "Jordan",
            "x-hub-alert-id": "not-a-uuid Jordan",
            "x-hub-endpoint": "wy-ld",
            "x-custody-note": "Jordan Testperson",
            "x-death": [{"queue": "hub.intake"}],
        }
    )

    assert masked == {
        "x-hub-attempts": HIDDEN,
        "x-hub-alert-id": HIDDEN,
        "x-hub-endpoint": "wy-ld",
        "x-custody-note": HIDDEN,
        "x-death": HIDDEN,
    }


def test_show_hides_a_services_error_text_that_quotes_the_person() -> None:
    # given a service that refused the referral with a 400 whose text names the person
    outcome = json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "invalid",
                    "details": {"coding": [{"code": "REC_BAD_REQUEST"}]},
                    "diagnostics": "Patient Jordan Testperson (9990000026) is already registered",
                }
            ],
        }
    ).encode()
    judged = classify(
        HttpResult(status=400, headers={}, body=outcome, elapsed_ms=1.0),
        request_id="r",
        correlation_id="c",
    )
    store = MemoryFailedStore()
    envelope = dead_letter(error=judged.reason)
    envelope.headers["x-hub-operation-outcome"] = judged.operation_outcome
    new = failure(envelope)
    failed_id = store.add(new, at=T0)[1]

    # when an operator looks at it without a reveal
    view = show(store, failed_id, now=T0)

    # then neither the error, the OperationOutcome nor a header quotes them
    text = json.dumps(view)
    assert "Jordan" not in text and "Testperson" not in text
    assert view["operation_outcome"] == HIDDEN
    assert view["error"].startswith("HTTP 400")
    assert "REC_BAD_REQUEST" in view["error"]
    revealed = show(store, failed_id, reveal=True, by="alice", now=T0)
    assert "Testperson" in json.dumps(revealed)


def test_show_of_a_malformed_parked_alert_shows_nothing_of_the_person() -> None:
    store = MemoryFailedStore()
    envelope = dead_letter(body=to_body(malformed_alert()), stage="intake")
    failed_id = store.add(failure(envelope, stage="intake"), at=T0)[1]

    text = json.dumps(show(store, failed_id, now=T0))

    for secret in SECRETS:
        assert secret not in text


# -- property: nothing off the allowlist is ever shown ------------------------------------

MARK = "§"  # in no allowlisted value's alphabet: wherever it appears in the output, it leaked


def _vocabulary(spec: Any, seen: set[str]) -> set[str]:
    if isinstance(spec, Obj):
        for name, sub in spec.fields.items():
            if name not in seen:
                seen.add(name)
                _vocabulary(sub, seen)
    for attr in ("item", "options"):
        sub = getattr(spec, attr, None)
        for s in sub if isinstance(sub, tuple) else [sub] if sub is not None else []:
            _vocabulary(s, seen)
    return seen


KEYS = sorted(_vocabulary(JUSTICE, set()) | _vocabulary(BUNDLE, set()) | set(HEADERS.fields))
KEYS += ["given", "family", "value", "system", "resource", "entry", "Bundle", "Patient"]

secret_text = st.text(max_size=12).map(lambda t: f"{t[:1]}{MARK}{t[1:]}")
keys = st.one_of(st.sampled_from(KEYS), secret_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=10**6, max_value=10**12),
    st.floats(allow_nan=False, min_value=10**6, max_value=10**12),
    secret_text,
    st.sampled_from(["Bundle", "Patient", "OperationOutcome", "ld.identification-alert/1"]),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return []


# Each example is masked in four shapes (bare, in a Bundle, as a Patient, as an alert).
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_no_value_or_key_off_the_allowlist_is_ever_shown(doc: Any) -> None:
    for kind in (
        doc,
        {"resourceType": "Bundle", "entry": [{"resource": doc}]},
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", **d}}]}
        if isinstance((d := doc), dict)
        else doc,
        {"schema": "ld.identification-alert/1", "person": doc, "source": doc},
    ):
        masked = mask_document(kind)

        assert MARK not in json.dumps(masked, ensure_ascii=False)
        assert all(n < 10**6 for n in _numbers(masked))  # only counts of hidden fields


# Each example is up to eight recursive documents, so 120 examples mask hundreds of them.
@settings(max_examples=120, deadline=None)
@given(st.dictionaries(keys, documents, max_size=8))
def test_no_header_off_the_allowlist_is_ever_shown(headers: dict[str, Any]) -> None:
    masked = mask_headers(headers)

    assert MARK not in json.dumps(masked, ensure_ascii=False)


def test_a_document_nested_absurdly_deep_is_hidden_not_a_crash() -> None:
    deep: Any = {"alert_id": "x"}
    for _ in range(5000):
        deep = {"person": deep}
    store = MemoryFailedStore()
    body = ("[" * 50_000 + "]" * 50_000).encode()
    failed_id = store.add(failure(dead_letter(body=body, stage="intake"), stage="intake"), at=T0)[1]

    assert mask_document(deep) == HIDDEN
    assert show(store, failed_id, now=T0)["body"] == f"[{len(body)} bytes, not JSON]"
