"""The ops console's login: operator settings (hashes only, a secret required), argon2 password
checks, the signed session cookie with its CSRF token, and, over HTTP with starlette's test
client, sign-out ending the session on the server, lockout and rate limits (audited), equal
cost for unknown names, and a Secure cookie over TLS."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from hub.adapters.inbound.console import build_console
from hub.adapters.inbound.console_config import ConsoleDeps
from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.adapters.memory.ledger import MemoryLedger
from hub.errors import ConfigError
from hub.security import console_session
from hub.security.console_guard import (
    CLIENT_ATTEMPTS,
    CLIENT_WINDOW_SECONDS,
    LOCK_AFTER_FAILURES,
    LOCKOUT_SECONDS,
)
from hub.security.passwords import hash_password, verify_password
from hub.settings.load import load_settings
from hub.settings.types import OperatorAccount
from hub.store_rules.failed import CONSOLE_EVENTS
from tests.fixtures.dead_letters import T0, dead_letter, failure
from tests.unit.test_settings import HUB_YAML, problems, write

pytestmark = pytest.mark.unit

SECRET = "s" * 32


@pytest.fixture(scope="module")
def a_hash() -> str:
    return hash_password("right password")


def test_operators_with_a_hash_and_a_secret_load(tmp_path: Path, a_hash: str) -> None:
    config = write(tmp_path, hub=HUB_YAML + f"operators:\n  alice: {{password_hash: '{a_hash}'}}\n")

    settings = load_settings(config, env={"HUB_CONSOLE_SECRET": SECRET})

    assert settings.operators["alice"].password_hash == a_hash
    assert settings.console_secret == SECRET
    assert a_hash not in repr(settings) and SECRET not in repr(settings)


def test_operators_without_a_console_secret_are_a_config_error(tmp_path: Path, a_hash: str) -> None:
    config = write(tmp_path, hub=HUB_YAML + f"operators:\n  alice: {{password_hash: '{a_hash}'}}\n")

    found = problems(config, env={})

    assert any("HUB_CONSOLE_SECRET" in p for p in found)


def test_a_short_console_secret_is_a_config_error(tmp_path: Path) -> None:
    assert any(
        "HUB_CONSOLE_SECRET" in p for p in problems(write(tmp_path), {"HUB_CONSOLE_SECRET": "x"})
    )


def test_a_plaintext_password_is_a_config_error_that_never_quotes_it(tmp_path: Path) -> None:
    hub = (
        HUB_YAML
        + "operators:\n  alice: {password: hunter2-plain}\n  bob: {password_hash: hunter3}\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, hub=hub), env={"HUB_CONSOLE_SECRET": SECRET})

    text = str(caught.value)
    assert "hunter2-plain" not in text
    assert "operators.alice" in text and "operators.bob.password_hash" in text


def test_no_operators_means_no_console_and_no_secret_needed(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), env={})

    assert settings.operators == {} and settings.console_secret is None


def test_only_the_right_password_verifies_and_a_junk_hash_never_does(a_hash: str) -> None:
    assert verify_password(a_hash, "right password")
    assert not verify_password(a_hash, "wrong password")
    assert not verify_password(a_hash, "")
    assert not verify_password("not a hash", "right password")


def test_a_signed_session_round_trips_and_a_tampered_one_reads_as_none() -> None:
    session = console_session.new_session(now=1000, user="alice")
    cookie = console_session.encode(session, secret=SECRET)

    assert console_session.decode(cookie, secret=SECRET, now=1001) == session
    assert console_session.decode(cookie, secret="t" * 32, now=1001) is None
    body, mac = cookie.split(".")
    forged = console_session.encode(
        console_session.new_session(now=1000, user="mallory"), secret="x"
    )
    assert console_session.decode(f"{forged.split('.')[0]}.{mac}", secret=SECRET, now=1001) is None
    assert console_session.decode("garbage", secret=SECRET, now=1001) is None


def test_a_session_expires_after_a_shift() -> None:
    cookie = console_session.encode(console_session.new_session(now=0), secret=SECRET)

    assert (
        console_session.decode(cookie, secret=SECRET, now=console_session.MAX_AGE_SECONDS + 1)
        is None
    )


def test_the_csrf_token_must_match_the_sessions_own() -> None:
    session = console_session.new_session(now=0)

    assert console_session.csrf_ok(session, session.csrf)
    assert not console_session.csrf_ok(session, session.csrf + "x")
    assert not console_session.csrf_ok(session, None)
    assert not console_session.csrf_ok(None, session.csrf)
    assert console_session.new_session(now=0).csrf != session.csrf


# -- the console over HTTP (starlette's test client, in-memory stores) ------------------------

PASSWORD = "right password"


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Console:
    client: TestClient
    store: MemoryFailedStore
    clock: Clock
    failed_id: int

    def csrf(self, path: str = "/ops/login") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found is not None
        return found.group(1)

    def login(self, name: str = "alice", password: str = PASSWORD) -> Any:
        return self.client.post(
            "/ops/login",
            data={"csrf": self.csrf(), "username": name, "password": password},
            follow_redirects=False,
        )


def console_app(a_hash: str, clock: Clock, store: MemoryFailedStore) -> Starlette:
    app = build_console(
        ConsoleDeps(
            operators={"alice": OperatorAccount(name="alice", password_hash=a_hash)},
            secret=SECRET,
            store=store,
            ledger=MemoryLedger(),
            publisher=SimpleNamespace(publish=lambda **_: None),  # type: ignore[arg-type]
            endpoints={},
            clock=lambda: T0,
            seconds=clock,
        )
    )
    return Starlette(routes=[Mount("/ops", app=app)])


@pytest.fixture(scope="module")
def cheap_hash() -> str:
    """A hash that takes microseconds to check, so the tests that sign in many times are quick
    (the cost is the hash's own: the timing test uses a real one)."""
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)


@pytest.fixture
def console(cheap_hash: str) -> Console:
    return console_on(cheap_hash)


def console_on(a_hash: str) -> Console:
    clock, store = Clock(), MemoryFailedStore()
    failed_id = store.add(failure(dead_letter()), at=T0)[1]
    client = TestClient(console_app(a_hash, clock, store), base_url="http://hub.test")
    return Console(client, store, clock, failed_id)


def console_audit(store: MemoryFailedStore) -> list[tuple[str, str]]:
    return [(e.action, e.by) for e in store.audit_log(CONSOLE_EVENTS)]


def test_signing_out_ends_the_session_on_the_server(console: Console) -> None:
    # given a signed-in operator whose cookie someone copied
    assert console.login().status_code == 303
    copied = dict(console.client.cookies)
    token = console.csrf("/ops/groups")

    # when they sign out
    out = console.client.post("/ops/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303

    # then the copied cookie no longer works, for pages or actions
    stale = TestClient(console.client.app, base_url="http://hub.test", cookies=copied)
    page = stale.get("/ops/groups", follow_redirects=False)
    discard = stale.post(
        f"/ops/messages/{console.failed_id}/discard",
        data={"csrf": token, "reason": "after sign-out"},
        follow_redirects=False,
    )
    assert (page.status_code, page.headers["location"]) == (303, "/ops/login")
    assert (discard.status_code, discard.headers["location"]) == (303, "/ops/login")
    assert console.store.audit_log(console.failed_id) == []
    assert console_audit(console.store) == [("sign_in", "alice"), ("sign_out", "alice")]


def test_repeated_wrong_passwords_lock_the_account_for_a_while_and_it_is_audited(
    console: Console,
) -> None:
    for _ in range(LOCK_AFTER_FAILURES):
        assert console.login(password="wrong").status_code == 401

    # locked: even the right password is refused, and the page says why
    locked = console.login()
    assert locked.status_code == 401 and "locked for 15 minutes" in locked.text
    assert console_audit(console.store) == [("login_locked", "alice")]

    # after the lockout the right password works again
    console.clock.now += LOCKOUT_SECONDS + 1
    assert console.login().status_code == 303


def test_an_unknown_name_is_locked_like_a_known_one(console: Console) -> None:
    answers = [console.login(name="mallory", password="x").status_code for _ in range(6)]

    assert answers == [401] * 6
    assert "locked for 15 minutes" in console.login(name="mallory").text
    assert console_audit(console.store) == [("login_locked", "(not an operator)")]


def test_one_client_trying_too_often_is_throttled_and_that_is_audited_once(
    console: Console,
) -> None:
    names = [f"guess{i}" for i in range(CLIENT_ATTEMPTS)]
    for name in names:
        assert console.login(name=name, password="x").status_code == 401

    throttled = [console.login(name="alice").status_code for _ in range(3)]

    assert throttled == [429, 429, 429]
    assert console_audit(console.store) == [("login_throttled", "alice")]
    console.clock.now += CLIENT_WINDOW_SECONDS + 1
    assert console.login().status_code == 303


def test_an_unknown_name_costs_what_a_known_one_does_even_with_no_password(a_hash: str) -> None:
    console = console_on(a_hash)  # a real hash: its cost is what is measured

    def cost(name: str, password: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            console.login(name=name, password=password)
            times.append(time.perf_counter() - started)
        return sorted(times)[1]

    known_empty, unknown = cost("alice", ""), cost("nobody", "")
    known_wrong = cost("alice", "wrong")

    assert known_empty > 0.5 * unknown and unknown > 0.5 * known_wrong


def test_the_session_cookie_is_secure_when_served_over_tls(a_hash: str) -> None:
    app = console_app(a_hash, Clock(), MemoryFailedStore())
    over_tls = TestClient(app, base_url="https://hub.test").get("/ops/login")
    in_clear = TestClient(app, base_url="http://hub.test").get("/ops/login")

    assert "secure" in over_tls.headers["set-cookie"].lower()
    assert "secure" not in in_clear.headers["set-cookie"].lower()


def test_pages_show_text_from_outside_with_controls_and_bidi_overrides_neutralised(
    console: Console,
) -> None:
    hostile = "HTTP 400 \u202eevil\u202c \x1b[2J\x1b]0;owned\x07 \u200b"
    envelope = dead_letter(error=hostile)
    failed_id = console.store.add(failure(envelope), at=T0)[1]
    console.login()

    page = console.client.get(f"/ops/messages/{failed_id}")
    group = console.client.get(f"/ops/groups/{console.store.get(failed_id).failure.group_key}")  # type: ignore[union-attr]

    for html in (page.text, group.text):
        assert not any(ch in html for ch in "\u202e\u202c\x1b\x07\u200b")
    assert "\\u202eevil" in page.text


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    form=st.dictionaries(
        st.sampled_from(["csrf", "username", "password", "reason", "x"]),
        st.text(max_size=300),
        max_size=5,
    ),
    with_token=st.booleans(),
)
def test_any_sign_in_form_gets_an_answer_never_a_server_error(
    console: Console, form: dict[str, str], with_token: bool
) -> None:
    if with_token:
        form = {**form, "csrf": console.csrf()}

    response = console.client.post("/ops/login", data=form, follow_redirects=False)

    assert response.status_code in (303, 401, 403, 429)
