"""HUB_ID_KEY (hub.ids): `hub run` will not start without it, and says how to make one; a short
key is a configuration error that never quotes it; `hub failed …` needs it to seal replays."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.bootstrap import Hub, operations_adapters
from hub.cli.main import main
from hub.errors import ConfigError
from hub.settings.load import load_settings
from tests.unit.test_settings import problems, write

pytestmark = pytest.mark.unit

KEY = "a-perfectly-good-id-key-" + "x" * 16
# Nothing listens here: a hub that got as far as connecting would fail differently.
NOWHERE = {"HUB_AMQP_URL": "amqp://guest:guest@127.0.0.1:1//", "HUB_DB_URL": "sqlite://"}


def test_a_hub_without_an_id_key_stops_before_it_connects_and_says_how_to_set_one(
    tmp_path: Path,
) -> None:
    settings = load_settings(write(tmp_path), env=NOWHERE)

    with pytest.raises(ConfigError) as caught:
        Hub(settings).start()

    (problem,) = caught.value.problems
    assert "HUB_ID_KEY is not set" in problem and "openssl rand -base64 32" in problem


def test_hub_run_without_an_id_key_exits_with_a_configuration_error(tmp_path: Path) -> None:
    config = write(tmp_path)

    result = CliRunner().invoke(main, ["run", "--config", str(config)], env=NOWHERE)

    assert result.exit_code == 2
    assert "HUB_ID_KEY is not set" in result.output


def test_a_short_id_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    found = problems(write(tmp_path), {"HUB_ID_KEY": "tooShortKey"})

    assert any("HUB_ID_KEY: must be at least 32 characters" in p for p in found)
    assert not any("tooShortKey" in p for p in found)


def test_the_id_key_is_read_from_the_environment_and_never_shown(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), env={"HUB_ID_KEY": KEY})

    assert settings.id_key().secret == KEY.encode()
    assert KEY not in repr(settings)


def test_operator_commands_need_the_id_key_to_seal_what_they_replay(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), env={"HUB_DB_URL": "sqlite://"})

    with pytest.raises(ConfigError, match="HUB_ID_KEY"):
        operations_adapters(settings)
