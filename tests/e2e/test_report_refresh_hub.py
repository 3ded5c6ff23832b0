"""A running hub refreshes the report summary itself every `reporting.refresh_seconds`, in a
supervised thread of its own that stops with the hub; 0 turns it off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import HubRig, wait_until
from tests.integration.test_report_refresh_loop import refreshes

pytestmark = pytest.mark.e2e


def test_the_hub_refreshes_the_summary_on_its_interval_and_stops_doing_so_when_stopped(
    rig_factory: Callable[..., HubRig], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    # (top-level keys may follow the endpoints in hub.yaml)
    rig = rig_factory(db_url=url, extra_endpoint_yaml="reporting: {refresh_seconds: 0.2}\n")
    runtime = rig.hub._runtime
    assert runtime.report_refresh is not None
    assert runtime.supervisor is not None
    assert "report-refresh" in runtime.supervisor._watched  # restarted should it die

    wait_until(lambda: len(refreshes(url)) >= 2, what="the hub's own refreshes")
    assert runtime.report_refresh.is_alive()

    rig.hub.stop()
    assert not runtime.report_refresh.is_alive()


def test_refresh_seconds_0_runs_no_refresh_thread(
    rig_factory: Callable[..., HubRig], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    rig = rig_factory(db_url=url, extra_endpoint_yaml="reporting: {refresh_seconds: 0}\n")
    assert rig.hub._runtime.report_refresh is None
    assert rig.hub.readiness()["down"] == []
