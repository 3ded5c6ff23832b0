"""Ids that leave the hub reveal nothing (hub.ids): an outcome id is stable for the same key and
inputs, unrelated under another key, and not a uuid5 of anything it was made from, so a justice
reader who knows the alert id cannot work out which service took a referral; referral ids are
keyed the same way, so a service cannot compute the ids another service was sent."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.messages import HubIdentity
from hub.security.ids import IdKey
from hub.transforms.fhir_vocabulary import ID_NAMESPACE
from hub.transforms.referral_ids import referral_ids

pytestmark = pytest.mark.unit

KEY = IdKey.of("unit-test-id-key-" + "i" * 32)
OTHER = IdKey.of("unit-test-id-key-" + "j" * 32)
# The namespaces the hub's ids came from before they were keyed (public in the repository).
OLD_OUTCOME_NAMESPACE = uuid.UUID("3b0f6c52-5d7e-4a57-9a1c-2f4e8d6b9c10")
PUBLIC_NAMESPACES = (
    OLD_OUTCOME_NAMESPACE,
    ID_NAMESPACE,
    uuid.NAMESPACE_DNS,
    uuid.NAMESPACE_URL,
    uuid.NAMESPACE_OID,
    uuid.NAMESPACE_X500,
)
parts = st.text(min_size=1, max_size=40)


@given(parts, parts, parts)
def test_an_outcome_id_is_stable_for_one_key_and_unrelated_under_another(
    answers_to: str, answers: str, status: str
) -> None:
    mine = KEY.outcome_id(answers_to, answers, status)

    assert mine == IdKey.of("unit-test-id-key-" + "i" * 32).outcome_id(answers_to, answers, status)
    theirs = OTHER.outcome_id(answers_to, answers, status)
    assert theirs != mine
    # unrelated: about half the bits differ, never a shared prefix an observer could match
    differing = bin(uuid.UUID(mine).int ^ uuid.UUID(theirs).int).count("1")
    assert 20 < differing < 110


@given(parts, parts, parts)
def test_an_outcome_id_is_no_uuid5_of_its_inputs(
    answers_to: str, answers: str, status: str
) -> None:
    outcome_id = KEY.outcome_id(answers_to, answers, status)

    names = {answers_to, answers, status, f"{answers_to}|{answers}|{status}"}
    for namespace in PUBLIC_NAMESPACES:
        for name in names:
            assert outcome_id != str(uuid.uuid5(namespace, name))
    assert len(answers_to) < 8 or answers_to not in outcome_id
    assert uuid.UUID(outcome_id).version == 8  # RFC 9562 "custom": says what it is


def test_a_referral_and_its_service_cannot_be_read_off_the_received_outcome() -> None:
    """What a justice reader could do before: knowing the alert id and the services, compute
    each candidate Bundle id, then the `received` outcome id, and see which one matches."""
    alert_id = "6b1f1c1e-2f0a-4b8e-9d55-0c3a7e2b4f10"
    bundle = str(uuid.uuid5(ID_NAMESPACE, f"{alert_id}|leeds-dat|bundle"))

    outcome_id = KEY.outcome_id(bundle, "received", "received")

    guess = str(uuid.uuid5(OLD_OUTCOME_NAMESPACE, f"{bundle}|received|received"))
    assert outcome_id != guess


def test_parts_cannot_run_into_each_other() -> None:
    assert KEY.keyed_uuid("p", "ab", "c") != KEY.keyed_uuid("p", "a", "bc")


def test_a_short_key_is_refused_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        IdKey.of("short")
    assert "i" * 32 not in repr(KEY)


@given(st.uuids().map(str), st.sampled_from(["wy-ld", "leeds-dat", "leeds-yjh"]))
def test_referral_ids_are_keyed_so_one_service_cannot_compute_anothers(
    alert_id: str, endpoint: str
) -> None:
    """A service knows the alert id (it is in the ServiceRequest) and may guess the other
    endpoints' names: before, that gave it their Bundle ids and X-Request-Ids (uuid5)."""
    ids = referral_ids(KEY, alert_id, endpoint)

    assert ids == referral_ids(KEY, alert_id, endpoint)  # stable: a redelivery is the same
    assert ids.bundle_id != referral_ids(OTHER, alert_id, endpoint).bundle_id
    for role, made in (("bundle", ids.bundle_id), ("x-request-id", ids.request_id)):
        assert made != str(uuid.uuid5(ID_NAMESPACE, f"{alert_id}|{endpoint}|{role}"))


def test_a_referral_cannot_be_built_without_the_hubs_id_key() -> None:
    hub = HubIdentity(ods_code="X26HUB", name="L&D Hub", endpoint="https://hub.example/fhir")

    with pytest.raises(ValueError, match="id key"):
        hub.id_key()
    assert "i" * 32 not in repr(HubIdentity("X", "Y", "Z", ids=KEY))


def _reference_keyed_uuid(key: IdKey, purpose: str, *texts: str) -> str:
    """The keyed id as first written (uuid.UUID over the HMAC's first 16 bytes, version and
    variant set): the fast formatting must give the same ids, or every stored id would move."""
    import hashlib
    import hmac

    from hub.security.ids import _IDS, _derive

    message = b"".join(
        len(p).to_bytes(4, "big") + p for p in (t.encode("utf-8") for t in (purpose, *texts))
    )
    digest = bytearray(hmac.new(_derive(key.secret, _IDS), message, hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


@given(parts, st.lists(st.text(max_size=40), max_size=4))
def test_keyed_ids_are_the_version_8_uuids_they_always_were(purpose: str, texts: list[str]) -> None:
    made = KEY.keyed_uuid(purpose, *texts)

    assert made == _reference_keyed_uuid(KEY, purpose, *texts)
    assert uuid.UUID(made).version == 8
    assert uuid.UUID(made).variant == uuid.RFC_4122
