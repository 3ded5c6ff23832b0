"""The redaction processor keeps personal data out of log lines, whatever the caller passes."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.log import configure_logging, get_logger, scrub_text

pytestmark = pytest.mark.unit


def _capture(emit) -> str:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    try:
        emit(get_logger("test"))
    finally:
        configure_logging(level="INFO")
    return stream.getvalue()


def test_sensitive_keys_are_redacted_wherever_they_appear() -> None:
    out = _capture(
        lambda log: log.info(
            "x",
            name="Jo Bloggs",
            extra={"person": {"nhs_number": "9434765919"}},
            detail="hears voices",
        )
    )
    line = json.loads(out)  # the one line logged was written, its sensitive keys redacted
    assert line["event"] == "x" and line["name"] == line["detail"] == "[redacted]"
    assert "Bloggs" not in out and "9434765919" not in out and "voices" not in out


def test_personal_data_inside_free_text_and_exceptions_is_scrubbed() -> None:
    def emit(log) -> None:  # type: ignore[no-untyped-def]
        try:
            raise ValueError("bad nhs 9434765919 pnc 2008/0004321T dob 1984-07-19 at LS6 2QT")
        except ValueError:
            log.exception("boom", reason="postcode LS6 2QT")

    out = _capture(emit)
    line = json.loads(out)  # the one line logged was written, with its traceback, scrubbed
    assert line["event"] == "boom" and line["reason"] == "postcode [redacted]"
    assert "ValueError: bad nhs [redacted] pnc [redacted]" in line["exception"]
    for secret in ("9434765919", "2008/0004321T", "1984-07-19", "LS6 2QT"):
        assert secret not in out


def test_ids_and_timestamps_survive_redaction() -> None:
    alert_id = "1b3c0a12-1234-5678-9abc-a12345678901"
    out = _capture(lambda log: log.info("alert_routed", alert_id=alert_id, count=3))
    line = json.loads(out)
    assert line["alert_id"] == alert_id and line["count"] == 3 and "timestamp" in line


def test_a_long_value_from_outside_is_bounded() -> None:
    huge = "r" * 60_000  # e.g. an X-Request-Id or an error body

    line = json.loads(_capture(lambda log: log.warning("x", request_id=huge, reason=[huge])))

    assert len(line["request_id"]) < 600 and len(line["reason"][0]) < 600
    assert line["request_id"].startswith("rrr") and "more]" in line["request_id"]


def test_keys_that_come_from_outside_are_not_logged_verbatim() -> None:
    out = _capture(
        lambda log: log.warning(
            "x",
            fields={"status": 1, "Jo Bloggs": 2, "9434765919": 3, "\x1b]0;pwned\x07": 4},
        )
    )

    line = json.loads(out)
    assert "Bloggs" not in out and "9434765919" not in out and "pwned" not in out
    assert line["fields"]["status"] == 1 and len(line["fields"]) == 4


def test_deeply_nested_values_are_cut_off_not_walked_forever() -> None:
    deep: object = "leaf"
    for _ in range(2000):
        deep = [deep]

    line = json.loads(_capture(lambda log: log.warning("x", value=deep)))

    assert "leaf" not in json.dumps(line)


def _scrubbed_the_long_way(value: str) -> str:
    """scrub_text as first written: every pattern substituted in turn."""
    from hub.log import _PATTERNS, _REDACTED, _UUID

    if _UUID.fullmatch(value):
        return value
    for pattern in _PATTERNS:
        value = pattern.sub(_REDACTED, value)
    return value


_PIECES = st.sampled_from(
    ["9434765919", "943 476 5919", "01/23456A", "LS1 4AP", "1990-06-01", "1/6/90", "HTTP 200"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), _PIECES), max_size=6).map("".join))
def test_scrubbing_finds_the_same_personal_data_as_every_pattern_in_turn(value: str) -> None:
    """scrub_text looks once for any pattern and substitutes only when one is there: the same
    text comes out as from substituting each pattern in turn (numbers, PNC ids, postcodes,
    dates, whatever surrounds them)."""
    assert scrub_text(value) == _scrubbed_the_long_way(value)


def test_a_line_carries_what_json_cannot_hold_natively_without_failing() -> None:
    out = _capture(
        lambda log: log.info("odd", big=2**70, broken="\ud800", ok="é", ratio=0.5, flag=True)
    )
    line = json.loads(out)
    assert line["event"] == "odd" and line["big"] == 2**70 and line["ok"] == "é"
    assert line["ratio"] == 0.5 and line["flag"] is True
    keys = list(json.loads(_capture(lambda log: log.info("sorted", zz=1, aa=2))))
    assert keys == sorted(keys)
