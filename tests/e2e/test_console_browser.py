"""The ops console in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser), headless, against a hub on loopback with the real broker and PostgreSQL. An operator
logs in, finds the failed group, replays the message with a reason, and the trust receives it
once. Screenshots of the main pages go to docs/screenshots/ for the README.

Also, over plain HTTP: a POST without the CSRF token is refused and a page without a session
redirects to the login form.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.security.passwords import hash_password
from tests.conftest import HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.e2e.test_failed_messages import Outage, only_row

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
OPERATOR, PASSWORD = "alice", "correct horse battery staple"
SECRET = "test-console-secret-" + "x" * 32


@pytest.fixture(scope="module")
def operators_yaml() -> str:
    return f"operators:\n  {OPERATOR}: {{password_hash: '{hash_password(PASSWORD)}'}}\n"


@pytest.fixture
def console(
    rig_factory: Any, operators_yaml: str
) -> Iterator[tuple[HubRig, Outage, SqlFailedStore, dict[str, Any]]]:
    """A hub with the console on, whose wy-ld endpoint rejects everything, and one alert whose
    referral is parked in the failed-message store."""
    outage = Outage("wy-ld")
    rig: HubRig = rig_factory(
        behaviour=outage,
        replies=None,
        park_dead_letters=True,
        operators_yaml=operators_yaml,
        env={"HUB_CONSOLE_SECRET": SECRET},
    )
    store = SqlFailedStore(rig.db_url)
    alert = fresh_custody(source={"reference": f"WY-26-{uuid.uuid4().int % 10**6:06d}"})
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(store.list(alert_id=alert["alert_id"])) == 1, what="the parked row")
    yield rig, outage, store, alert
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    import playwright.sync_api as playwright_api  # a test dependency: missing = a failure

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def test_an_operator_logs_in_finds_the_failed_group_and_replays_it_once(
    console: Any, browser: Any
) -> None:
    rig, outage, store, alert = console
    row = only_row(store, alert["alert_id"])
    base = f"http://127.0.0.1:{rig.api_port}/ops"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    # given an operator who is not signed in
    page.goto(f"{base}/groups")
    assert page.url == f"{base}/login"
    page.screenshot(path=str(SCREENSHOTS / "console-login.png"))

    # when they sign in
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    # then they see the failed group, with its count
    assert page.url == f"{base}/groups"
    group_link = page.locator(f"a[href='/ops/groups/{row.failure.group_key}']")
    assert group_link.count() == 1
    page.screenshot(path=str(SCREENSHOTS / "console-groups.png"), full_page=True)
    group_link.click()
    assert page.locator(f"a[href='/ops/messages/{row.id}']").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "console-group.png"))

    # and the message's detail is masked, with its trace
    page.click(f"a[href='/ops/messages/{row.id}']")
    content = page.content()
    assert alert["alert_id"] in content
    family = alert["person"]["name"]["family"]
    assert family not in content and alert["person"]["date_of_birth"] not in content
    assert "wy-ld failed" in content or "wy-ld" in content
    page.screenshot(path=str(SCREENSHOTS / "console-message.png"))

    # when the trust is fixed and the operator replays it with a reason
    outage.fix()
    replay_form = page.locator(f"form[action='/ops/messages/{row.id}/replay']")
    replay_form.locator("textarea[name=reason]").fill("trust fixed their endpoint")
    replay_form.locator("button[type=submit]").click()

    # then it is replayed, audited as the operator, and delivered exactly once
    assert page.locator(".notice").inner_text().startswith("Replayed")
    assert "trust fixed their endpoint" in page.content()
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the replayed referral")
    # A later referral to the same endpoint (one consumer, first in first out) reaches the
    # trust only after whatever was queued before it: a second copy of the replay would have.
    marker = fresh_custody()
    rig.justice.publish(marker, routing_key=key_for(marker))
    wait_until(lambda: len(rig.trust.received) >= 2, what="the marker referral")
    assert [r.correlation_id for r in rig.trust.received] == [alert["alert_id"], marker["alert_id"]]
    assert rig.trust.received[0].bundle_id == row.failure.message_id
    assert [(a.action, a.by, a.reason) for a in store.audit_log(row.id)] == [
        ("replay", OPERATOR, "trust fixed their endpoint")
    ]

    # and the endpoint page shows each endpoint's status
    page.click("header a[href='/ops/endpoints']")
    assert page.locator("td", has_text="wy-ld").count() == 1
    wait_until(
        lambda: page.reload() is not None and page.locator("td.depth").first.inner_text() == "0",
        what="an empty delivery queue",
    )
    page.screenshot(path=str(SCREENSHOTS / "console-endpoints.png"), full_page=True)
    page.close()


def _login(client: httpx.Client) -> str:
    form = client.get("/ops/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    response = client.post(
        "/ops/login",
        data={"csrf": csrf.group(1), "username": OPERATOR, "password": PASSWORD},
    )
    assert response.status_code == 303 and response.headers["location"] == "/ops/groups"
    page = client.get("/ops/groups")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


def test_a_post_without_the_csrf_token_is_refused_and_nothing_is_replayed(console: Any) -> None:
    rig, outage, store, alert = console
    row = only_row(store, alert["alert_id"])
    outage.fix()
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.api_port}", timeout=10) as client:
        token = _login(client)

        missing = client.post(f"/ops/messages/{row.id}/replay", data={"reason": "no token"})
        wrong = client.post(
            f"/ops/messages/{row.id}/replay", data={"reason": "bad", "csrf": token + "x"}
        )
        login_without_token = client.post(
            "/ops/login", data={"username": OPERATOR, "password": PASSWORD}
        )

    assert (missing.status_code, wrong.status_code, login_without_token.status_code) == (
        403,
        403,
        403,
    )
    assert only_row(store, alert["alert_id"]).state.value == "failed"
    assert store.audit_log(row.id) == []


def test_a_page_without_a_session_redirects_to_the_login_form(console: Any) -> None:
    rig, _, _, _ = console
    with httpx.Client(base_url=f"http://127.0.0.1:{rig.api_port}", timeout=10) as client:
        groups = client.get("/ops/groups")
        csrf = re.findall(r'name="csrf" value="([^"]+)"', client.get("/ops/login").text)[0]
        bad_password = client.post(
            "/ops/login", data={"csrf": csrf, "username": OPERATOR, "password": "wrong"}
        )
    forged_cookie = httpx.Cookies({"hub_console": "eyJ1IjoiYWxpY2UifQ.forged"})
    with httpx.Client(
        base_url=f"http://127.0.0.1:{rig.api_port}", timeout=10, cookies=forged_cookie
    ) as client:
        forged = client.get("/ops/groups")

    assert (groups.status_code, groups.headers["location"]) == (303, "/ops/login")
    assert (forged.status_code, forged.headers["location"]) == (303, "/ops/login")
    assert bad_password.status_code == 401


def test_after_signing_out_a_copied_session_cookie_is_worthless(console: Any, browser: Any) -> None:
    rig, _, store, alert = console
    row = only_row(store, alert["alert_id"])
    base = f"http://127.0.0.1:{rig.api_port}/ops"
    context = browser.new_context()
    page = context.new_page()

    # given an operator signed in, whose session cookie someone has copied
    page.goto(f"{base}/login")
    page.fill("input[name=username]", OPERATOR)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    assert page.url == f"{base}/groups"
    copied = context.cookies()
    page.goto(f"{base}/messages/{row.id}")
    token = page.locator("input[name=csrf]").first.get_attribute("value")

    # when they sign out
    page.click("header form[action='/ops/logout'] button[type=submit]")
    assert page.url == f"{base}/login"
    context.close()

    # then a browser holding the copied cookie is sent to the login form, and cannot act
    thief = browser.new_context()
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto(f"{base}/groups")
    assert stolen.url == f"{base}/login"
    with httpx.Client(
        base_url=f"http://127.0.0.1:{rig.api_port}",
        timeout=10,
        cookies={c["name"]: c["value"] for c in copied},
    ) as client:
        discard = client.post(
            f"/ops/messages/{row.id}/discard", data={"csrf": token, "reason": "after sign-out"}
        )
    thief.close()
    assert (discard.status_code, discard.headers["location"]) == (303, "/ops/login")
    assert only_row(store, alert["alert_id"]).state.value == "failed"
    assert store.audit_log(row.id) == []
    assert [e.action for e in store.audit_log(0)][-2:] == ["sign_in", "sign_out"]
