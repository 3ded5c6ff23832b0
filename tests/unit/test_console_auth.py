"""The ops console's login pieces without a server: operator settings (hashes only, a secret
required), argon2 password checks, and the signed session cookie with its CSRF token."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub import console_session
from hub.errors import ConfigError
from hub.passwords import hash_password, verify_password
from hub.settings import load_settings
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
