"""The redaction processor keeps personal data out of log lines, whatever the caller passes."""

from __future__ import annotations

import io
import json

import pytest

from hub.log import configure_logging, get_logger

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
