"""Every string the justice contracts accept is a valid FHIR string (FHIR R4 datatypes, `string`:
no code point below U+0020 but tab, CR and LF), so no Bundle the hub builds can carry a NUL, an
ANSI escape or an unpaired surrogate; and a message without a content type is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.contracts.follow_ups import parse_justice_message
from hub.errors import InvalidMessage
from hub.messages import Problem
from tests.fixtures.alerts import (
    cancellation_of,
    consent_update_of,
    court_alert,
    custody_alert,
    update_of,
    with_changes,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
BAD_TEXT = "contains a control character or an unpaired surrogate"


def body_of(document: dict[str, Any]) -> bytes:
    # ensure_ascii: an unpaired surrogate travels as a \\uD800 escape, as a publisher's JSON
    # library writes it (raw, it could not be UTF-8 at all).
    return json.dumps(document).encode("ascii")


def problems_of(
    document: dict[str, Any] | bytes, *, content_type: str | None = "application/json"
) -> list[Problem]:
    body = document if isinstance(document, bytes) else body_of(document)
    with pytest.raises(InvalidMessage) as caught:
        parse_justice_message(body, content_type=content_type, now=NOW)
    return list(caught.value.problems)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("person.name.family", "Test\u0000person"),  # NUL
        ("person.name.family", "Testperson\ud800"),  # an unpaired surrogate
        ("person.name.given[0]", "\udc80Alex"),
        ("vulnerabilities[0].detail", "\x1b[31mred\x1b[0m"),  # an ANSI escape sequence
        ("source.location", "Elland Road\x07"),  # BEL
        ("consent.recorded_by", "PC 1234\x7f"),  # DEL
        ("source.reported_by.role", "custody sergeant\x85"),  # a C1 control (NEL)
        ("person.address.lines[0]", "1 Test Street\x0c"),  # form feed
    ],
)
def test_a_control_character_or_lone_surrogate_in_any_alert_string_is_refused_by_path(
    path: str, value: str
) -> None:
    alert = with_changes(custody_alert(), {path: value})

    problems = problems_of(alert)

    assert Problem(path, BAD_TEXT + " (only tab, CR and LF are allowed)") in problems
    assert all(value not in p.problem for p in problems)  # never echoed


def test_tab_cr_and_lf_are_text_and_accepted() -> None:
    alert = with_changes(custody_alert(), {"vulnerabilities[0].detail": "line 1\r\n\tline 2"})

    message = parse_justice_message(body_of(alert), content_type="application/json", now=NOW)

    assert message.alert_id == alert["alert_id"]


def test_a_court_alerts_hearing_court_is_checked_too() -> None:
    alert = with_changes(court_alert(), {"hearing.court": "Leeds\u0000Magistrates"})

    assert any(p.path == "hearing.court" and BAD_TEXT in p.problem for p in problems_of(alert))


@pytest.mark.parametrize(
    "follow_up",
    [
        lambda a: with_changes(update_of(a), {"person.name.family": "X\u001b"}),
        lambda a: with_changes(cancellation_of(a), {"source.organisation.name": "WYP\u0000"}),
        lambda a: with_changes(
            consent_update_of(a, status="given", share_with_justice=True),
            {"consent.recorded_by": "\ud83d"},
        ),
    ],
    ids=["update", "cancellation", "consent-update"],
)
def test_follow_ups_are_held_to_the_same_rule(follow_up: Any) -> None:
    document = follow_up(custody_alert())

    assert any(BAD_TEXT in p.problem for p in problems_of(document))


def test_a_message_without_a_content_type_is_refused() -> None:
    problems = problems_of(custody_alert(), content_type=None)

    assert Problem("$", "content type missing: must be application/json") in problems


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    # One character: a high and a low surrogate side by side are a pair, i.e. one valid one.
    st.characters(categories=("Cc", "Cs"), exclude_characters="\t\r\n"),
    st.text(max_size=10),
)
def test_no_string_with_a_control_character_or_surrogate_reaches_a_parsed_alert(
    bad: str, around: str
) -> None:
    alert = with_changes(custody_alert(), {"person.name.family": around + bad + around})

    assert any(p.path == "person.name.family" for p in problems_of(alert))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("source.organisation.name", "\u2028"),  # a line separator (found by the fuzz test)
        ("person.name.family", "Test\u00a0person"),  # a no-break space
        ("source.location", "Elland\u2009Road"),  # a thin space
        ("vulnerabilities[0].detail", "one\u2029two"),  # a paragraph separator
        ("person.name.given[0]", "Alex\u3000"),  # an ideographic space
    ],
)
def test_white_space_that_fhir_strings_do_not_allow_is_refused_by_path(
    path: str, value: str
) -> None:
    """FHIR R4's string pattern `[ \\r\\n\\t\\S]+`: white space other than space, tab, CR and
    LF makes the Bundle invalid for every validator."""
    alert = custody_alert()
    target: Any = alert
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value

    problems = problems_of(alert)

    assert [p.path for p in problems] == [path]
    assert "space character FHIR does not allow" in problems[0].problem
    assert value not in problems[0].problem  # the value itself is never quoted
