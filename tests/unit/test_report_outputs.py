"""Group names come from outside (a rejected alert's organisation code is whatever was sent):
every output keeps them inert. HTML escapes and neutralises them, CSV quotes what a spreadsheet
would run as a formula, and the self-contained page fetches nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.operations.reports.disclosure import publish
from hub.operations.reports.html import render_html
from hub.operations.reports.measures import (
    AlertRow,
    GroupBy,
    LedgerExtract,
    ReferralRow,
    RejectionRow,
    build_report,
)
from hub.operations.reports.render import to_csv

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def report_with_site(name: str, path: str = "person.name") -> dict:  # type: ignore[type-arg]
    t = START + timedelta(days=1)
    alerts = [AlertRow(f"a{i}", name, "custody", "adult", "urgent", "given", t) for i in range(20)]
    refs = [
        ReferralRow(
            f"a{i}",
            "ld",
            t + timedelta(hours=1),
            None,
            None,
            {"assessed": t + timedelta(hours=3)} if i % 2 else {},
        )
        for i in range(20)
    ]
    rejections = [RejectionRow(name, (path,))]
    return publish(
        build_report(
            LedgerExtract(alerts, refs, rejections),
            group_by=GroupBy.SITE,
            period_from=START,
            period_to=END,
        )
    )


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_site_name_is_inert_in_the_html_report(name: str) -> None:
    html = render_html(report_with_site(name, path=name))

    if "<" in name:
        assert name not in html
    assert "<script" not in html.lower()
    for control in ("\u202e", "\x1b", "\x00"):
        assert control not in html


def test_a_site_name_that_is_a_formula_is_quoted_in_csv_but_numbers_are_not() -> None:
    report = report_with_site('=HYPERLINK("http://x")')

    text = to_csv(report)

    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text and "\n=HYPERLINK" not in text
