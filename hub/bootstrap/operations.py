"""The adapters the operator commands (`hub failed …`, `hub trace`) work with, built from
Settings without starting a hub."""

from __future__ import annotations

from hub.adapters.rabbitmq.connection import Broker
from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
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
