"""The consent precedence rule (hub/consent_rules.py): which consent is in force when another
arrives, whatever its timestamp claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.messages import Consent, ConsentStatus
from hub.records import ConsentFacts
from hub.transforms.consent_rules import consent_in_force, consent_to_tell, replaces, sharing_rank

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def at(minutes: int, status: str, share: bool) -> ConsentFacts:
    return ConsentFacts(
        status=status, share_with_justice=share, recorded_at=T0 + timedelta(minutes=minutes)
    )


def wins(incoming: ConsentFacts, current: ConsentFacts) -> bool:
    return replaces(
        incoming,
        status=current.status,
        share_with_justice=current.share_with_justice,
        recorded_at=current.recorded_at,
    )


@pytest.mark.parametrize(
    ("status", "share", "rank"),
    [
        ("refused", False, 0),
        ("refused", True, 0),
        ("not_asked", True, 0),
        ("given", False, 1),
        ("lacks_capacity", True, 1),
        ("lacks_capacity", False, 1),
        ("given", True, 2),
    ],
)
def test_consents_rank_by_how_much_they_share(status: str, share: bool, rank: int) -> None:
    assert sharing_rank(status=status, share_with_justice=share) == rank


def test_a_withdrawal_wins_however_far_ahead_the_grant_in_force_was_dated() -> None:
    assert wins(at(0, "refused", False), at(5, "given", True))
    assert wins(at(-60, "given", False), at(5, "given", True))


def test_a_grant_wins_only_when_recorded_strictly_later() -> None:
    refusal = at(0, "refused", False)
    assert not wins(at(0, "given", True), refusal)
    assert not wins(at(-1, "given", True), refusal)
    assert wins(at(1, "given", True), refusal)


def test_between_equals_the_newer_wins_and_a_tie_goes_to_the_one_received() -> None:
    assert wins(at(1, "not_asked", False), at(0, "refused", False))
    assert wins(at(0, "not_asked", False), at(0, "refused", False))
    assert not wins(at(-1, "not_asked", False), at(0, "refused", False))


def test_a_consent_in_force_without_a_time_is_replaced() -> None:
    incoming = at(0, "given", True)
    assert (
        consent_in_force(incoming, status="refused", share_with_justice=False, recorded_at=None)
        == incoming
    )


def test_services_are_told_the_consent_in_force_not_the_one_that_lost() -> None:
    lost = Consent(
        status=ConsentStatus.GIVEN, share_with_justice=True, recorded_at=T0, recorded_by="N1"
    )
    in_force = at(4, "refused", False)

    told = consent_to_tell(lost, in_force)

    assert (told.status, told.share_with_justice, told.recorded_at) == (
        ConsentStatus.REFUSED,
        False,
        in_force.recorded_at,
    )
    assert consent_to_tell(lost, at(0, "given", True)) is lost


consents = st.builds(
    at,
    st.integers(min_value=-10, max_value=10),
    st.sampled_from([str(s) for s in ConsentStatus]),
    st.booleans(),
)


@settings(derandomize=True, max_examples=300)
@given(current=consents, incoming=consents)
def test_the_consent_in_force_never_shares_more_than_the_one_just_received(
    current: ConsentFacts, incoming: ConsentFacts
) -> None:
    after = consent_in_force(
        incoming,
        status=current.status,
        share_with_justice=current.share_with_justice,
        recorded_at=current.recorded_at,
    )

    assert after in (current, incoming)
    rank = sharing_rank(status=after.status, share_with_justice=after.share_with_justice)
    assert rank <= sharing_rank(
        status=incoming.status, share_with_justice=incoming.share_with_justice
    )
    again = consent_in_force(
        incoming,
        status=after.status,
        share_with_justice=after.share_with_justice,
        recorded_at=after.recorded_at,
    )
    assert again == after  # the same message redelivered changes nothing
