"""The adapters the operator commands (`hub failed …`, `hub trace`) work with, built from
Settings without starting a hub; and the hub's own operations loop on the ledger's database
(the report summary's refresh)."""

from __future__ import annotations

from functools import partial

from hub.adapters.rabbitmq.connection import Broker
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.adapters.sql.report_summary import SqlReportRefresher
from hub.operations.report_refresh import ReportRefreshWatch
from hub.pipeline import Clock
from hub.ports import Metrics
from hub.ports_ledger import Ledger
from hub.runtime import Runtime
from hub.security.provenance import Provenance, SealingPublisher
from hub.settings.types import Settings


def operations_adapters(
    settings: Settings,
) -> tuple[SqlLedger, SqlFailedStore, SealingPublisher]:
    """What `hub failed …` and `hub trace` work with; the caller closes them. The publisher
    connects only when a replay first publishes, and seals what it replays (so HUB_ID_KEY is
    needed: a ConfigError without it)."""
    provenance = Provenance(settings.id_key().seal_key)
    return (
        SqlLedger(settings.db_url),
        SqlFailedStore(settings.db_url),
        SealingPublisher(KombuPublisher(Broker(settings.amqp_url, settings.amqp_tls)), provenance),
    )


def start_report_refresh(
    runtime: Runtime,
    settings: Settings,
    ledger: Ledger,
    clock: Clock,
    metrics: Metrics | None,
) -> None:
    """Every `reporting.refresh_seconds`, the report summary refreshed in a thread of its own
    (watched by the supervisor, stopped with the hub), on an engine of its own made on its
    first round: never a consumer's connection. Only for a SQL ledger (a ledger a test passes
    in memory has no summary tables), and not at all when the setting is 0."""
    if settings.report_refresh_seconds <= 0 or not isinstance(ledger, SqlLedger):
        return
    watch = ReportRefreshWatch(
        partial(SqlReportRefresher, settings.db_url),
        interval=settings.report_refresh_seconds,
        clock=clock,
        metrics=metrics,
    )
    watch.start()
    runtime.report_refresh = watch
