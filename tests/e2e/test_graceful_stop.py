"""`hub run` under signals and bad configuration, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hub.testing.fake_trust import FakeTrust
from tests.conftest import ID_KEY, SERVICES, Justice, free_port, wait_until, write_config
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.e2e.test_crash_recovery import HubProcess, log_tail

pytestmark = pytest.mark.e2e


def test_sigterm_lets_in_flight_deliveries_finish_and_loses_nothing(
    amqp_url: str, pg_url: str, tmp_path: Path
) -> None:
    slow = threading.Event()

    def sluggish(endpoint: str, bundle: dict[str, Any]) -> None:
        if not slow.is_set():
            time.sleep(1.0)  # a slow trust: deliveries are in flight when SIGTERM lands
        return None

    trust = FakeTrust(services=SERVICES, behaviour=sluggish).start()
    port = free_port()
    config = write_config(tmp_path / "config", trust=trust, api_port=port)
    env = {**os.environ, "HUB_AMQP_URL": amqp_url, "HUB_DB_URL": pg_url, "HUB_API_PORT": str(port)}
    env["HUB_ID_KEY"] = ID_KEY
    hub = HubProcess(config, env, port, tmp_path / "hub.log")
    justice: Justice | None = None
    try:
        hub.start()
        justice = Justice(amqp_url)  # after the hub has declared its exchanges
        alerts = [fresh_custody() for _ in range(6)]
        for alert in alerts:
            justice.publish(alert, routing_key=key_for(alert))
        wait_until(lambda: len(trust.received) >= 1, what="the first delivery")
        assert hub.proc is not None
        hub.proc.send_signal(15)
        assert hub.proc.wait(timeout=20) == 0, log_tail(hub.log)
        delivered_before = len(trust.delivered())
        assert delivered_before < len(alerts)  # the stop really came mid-stream
        slow.set()
        hub.start()
        wait_until(
            lambda: len(trust.delivered()) == len(alerts),
            timeout=30,
            what="every alert after the restart",
        )
        assert {r.correlation_id for r in trust.delivered()} == {a["alert_id"] for a in alerts}
        assert justice.queue_depth("hub.dlq.deliver") == 0
        assert justice.queue_depth("hub.dlq.intake") == 0
    finally:
        hub.terminate()
        if justice:
            justice.close()
        trust.stop()


def test_config_error_stops_start_up_naming_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "hub.yaml").write_text(
        "hub: {ods_code: X26HUB, name: Hub, endpoint: 'http://127.0.0.1:1/fhir'}\n"
        "endpoints:\n  wy-ld:\n    kind: fhir-rest\n    url: http://127.0.0.1:1/fhir\n"
        "    ods_code: RXX01\n    organisation_name: L&D\n"
    )
    (config / "routes.yaml").write_text(
        "default: [wy-ld]\nrules:\n  - name: youth\n    match: {pathway: youth}\n"
        "    send_to: [nowhere]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "hub", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "routes.yaml:5" in result.stderr
    assert "nowhere" in result.stderr
