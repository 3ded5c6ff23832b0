"""`hub demo` runs the whole flow in one process with no services and prints each journey."""

from __future__ import annotations

import io

import pytest

from hub.cli.demo import run_demo

pytestmark = pytest.mark.e2e


def test_demo_prints_every_alerts_journey_and_succeeds() -> None:
    out = io.StringIO()
    assert run_demo(out=out) == 0
    text = out.getvalue()
    assert text.count("→ validated") == 4
    assert "→ rejected:" in text and "person.nhs_number: fails the Modulus 11 check" in text
    assert "→ delivered to wy-ld (delivered" in text
    assert "← outcome to justice: assessed" in text
    assert "NO OUTCOME RETURNED" not in text
    # and it ends with the pathway report of what it just did
    summary = text[text.index("Pathway summary (exact counts):") :]
    assert "identified 4 → referred 4 → accepted 4" in summary
    assert "rejected alerts 1" in summary
    assert "median" in summary and "from identification to delivery" in summary
