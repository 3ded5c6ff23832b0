"""What the HTTP side is built with: who may POST outcomes, and the ops console at /ops/ with
the database adapters it reads. Wiring only; the handlers are hub.adapters.inbound's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hub.adapters.inbound.console import ConsoleApp, build_console
from hub.adapters.inbound.console_config import ConsoleDeps
from hub.adapters.rabbitmq.connection import Broker, queue_depth
from hub.adapters.sql.console_sessions import SqlLiveSessions
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.reports import SqlReportReader
from hub.errors import ConfigError
from hub.log import get_logger
from hub.pipeline import Clock
from hub.ports import Publisher
from hub.security import console_session
from hub.security.inbound_auth import InboundCredentials
from hub.settings.load import report_db_url
from hub.settings.types import Settings
from hub.stages.endpoint_gate import EndpointGate
from hub.wire import delivery_queue

log = get_logger("hub.bootstrap")


def inbound_credentials(settings: Settings) -> dict[str, InboundCredentials]:
    """Who may POST outcomes. Fail closed: an endpoint without `inbound` credentials cannot,
    and start-up says so, as it does when tokens would cross the network in clear text."""
    s = settings
    inbound = {name: ep.inbound for name, ep in s.endpoints.items() if ep.inbound}
    if closed := sorted(set(s.endpoints) - set(inbound)):
        log.warning("outcomes_refused_from_endpoints", endpoints=closed, reason="no inbound")
    loopback = s.api_host in ("127.0.0.1", "::1", "localhost")
    if s.api_tls is None and not loopback and any(c.token_sha256 for c in inbound.values()):
        log.warning("api_tokens_without_tls", host=s.api_host)  # fine behind a TLS proxy
    return inbound


def build_console_app(
    settings: Settings,
    *,
    broker: Broker,
    gates: Mapping[str, EndpointGate],
    clock: Clock,
    publisher: Callable[[], Publisher],
    own: Callable[[Any], Any],
) -> ConsoleApp:
    """The ops console at /ops/ (only when operators are configured). `own` hands each
    database adapter made here to the hub, which closes it on stop."""
    s = settings
    if not s.console_secret:
        raise ConfigError(["operators are configured: set HUB_CONSOLE_SECRET"])
    return build_console(
        ConsoleDeps(
            operators=s.operators,
            secret=s.console_secret,
            store=own(SqlFailedStore(s.db_url)),
            ledger=own(SqlLedger(s.db_url)),  # the reader `trace` needs
            publisher=publisher(),
            endpoints=s.endpoints,
            clock=clock,
            endpoint_depth=lambda name: queue_depth(broker, delivery_queue(name)),
            circuit_state=lambda name: str(gates[name].circuit.state) if name in gates else None,
            paused_by_operator=lambda name: name in gates and gates[name].paused,
            # In the database: every hub honours the same sessions, and a sign-out on one
            # ends the session on all.
            sessions=own(SqlLiveSessions(s.db_url, max_age=console_session.MAX_AGE_SECONDS)),
            pathway=own(SqlReportReader(report_db_url() or s.db_url)).report,
        )
    )
