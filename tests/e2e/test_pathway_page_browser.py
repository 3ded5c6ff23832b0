"""The console's Pathway page in Debian's Chromium (Playwright, headless) against a running hub
whose PostgreSQL ledger holds a synthetic year (bench/seed_year.py): an operator signs in,
chooses a month, and sees the funnel and its funnel plots, suppressed, with no id on the page.
Screenshot: docs/screenshots/console-pathway.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from bench.seed_year import seed
from tests.conftest import HubRig
from tests.e2e.test_console_browser import (  # noqa: F401 (fixtures)
    OPERATOR,
    PASSWORD,
    SCREENSHOTS,
    SECRET,
    _login,
    browser,
    operators_yaml,
)
from tests.integration.test_ledger_contract import new_pg_schema  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture
def seeded(
    rig_factory: Any,
    operators_yaml: str,  # noqa: F811
    new_pg_schema: Callable[[], str],  # noqa: F811
) -> Iterator[HubRig]:
    """A hub on a PostgreSQL schema of its own (dropped after the run), holding a made-up year."""
    rig: HubRig = rig_factory(
        db_url=new_pg_schema(), operators_yaml=operators_yaml, env={"HUB_CONSOLE_SECRET": SECRET}
    )
    seed(rig.db_url, alerts=24_000, site_count=20, year=2026, seed_value=7)
    yield rig


def test_an_operator_chooses_a_month_and_sees_its_funnel_plots(
    seeded: HubRig,
    browser: Any,  # noqa: F811
) -> None:
    base = f"http://127.0.0.1:{seeded.api_port}/ops"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/login")
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    # when they open the Pathway page and choose March 2026
    page.click("header a[href='/ops/pathway']")
    page.fill("input[name=month]", "2026-03")
    page.select_option("select[name=by]", "site")
    began = time.monotonic()
    page.click("form[action='/ops/pathway'] button[type=submit]")
    took = time.monotonic() - began

    # then they see that month's funnel and a funnel plot with its sites and control limits
    assert page.url == f"{base}/pathway?month=2026-03&by=site"
    plot = page.locator("svg[aria-label^='assessed_of_referred']")
    assert plot.count() == 1
    assert plot.locator("circle").count() >= 10
    assert plot.locator("path").count() == 4  # 95 % and 99.8 %, above and below
    assert "2026-03-01" in page.inner_text("main")
    text = page.content()
    assert re.search(r"\by-\d+", text) is None and re.search(r"\bR\d{3,}", text) is None
    page.screenshot(path=str(SCREENSHOTS / "console-pathway.png"), full_page=True)
    print(f"pathway page for a month of a 24,000-alert year: {took:.2f} s")


def test_a_month_that_is_not_one_is_refused_plainly(seeded: HubRig) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{seeded.api_port}", timeout=10) as client:
        _login(client)
        bad = client.get("/ops/pathway", params={"month": "2026-13<script>", "by": "site"})
        unknown = client.get("/ops/pathway", params={"month": "2026-03", "by": "name"})
        good = client.get("/ops/pathway", params={"month": "2026-03", "by": "urgency"})

    assert bad.status_code == 400 and "<script>" not in bad.text
    assert unknown.status_code == 400
    assert good.status_code == 200 and "emergency" in good.text
