"""The ledger's reads (and its connection: the engine, `ping`, `close` and the translation of
connection errors into `TransientError`), on SQLite or PostgreSQL through SQLAlchemy Core.
`SqlLedgerReads` alone is the operators' `hub.ports_ledger.LedgerReader` (plus the reads the stages
make and `LedgerHealth`); `hub.adapters.sql.ledger.SqlLedger` adds the writes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from hub.adapters.sql.engine import (
    _CONNECTION_ERRORS,
    _build_engine,
    _create_tables,
    _describe,
    _normalise_url,
    _reason,
)
from hub.adapters.sql.rows import _alert_record, _get_referral, _referral_record
from hub.adapters.sql.tables import (
    _UtcDateTime,
    alert_vulnerabilities_table,
    alerts_table,
    as_utc,
    attempts_table,
    events_table,
    outcomes_table,
    referrals_table,
    rejections_table,
)
from hub.errors import LedgerUnavailable
from hub.records import (
    AlertRecord,
    AttemptRecord,
    JourneyEvent,
    OutcomeRecord,
    ReferralRecord,
    ReferralState,
)
from hub.store_rules.attempts import NOT_FROM_THE_SERVICE

# The hot path's statements, built once (hub.adapters.sql.rows says why).
_INSERT_EVENTS = events_table.insert()
_ALERT_BY_ID = sa.select(alerts_table).where(alerts_table.c.alert_id == sa.bindparam("wanted_id"))
_VULNERABILITIES_OF = (
    sa.select(alert_vulnerabilities_table.c.type)
    .where(alert_vulnerabilities_table.c.alert_id == sa.bindparam("wanted_id"))
    .order_by(alert_vulnerabilities_table.c.type)
)
_ALERTS_BY_IDS = sa.select(alerts_table).where(
    alerts_table.c.alert_id.in_(sa.bindparam("wanted_ids", expanding=True))
)
_VULNERABILITIES_OF_ALL = (
    sa.select(alert_vulnerabilities_table.c.alert_id, alert_vulnerabilities_table.c.type)
    .where(alert_vulnerabilities_table.c.alert_id.in_(sa.bindparam("wanted_ids", expanding=True)))
    .order_by(alert_vulnerabilities_table.c.type)
)
_REFERRALS_BY_IDS = sa.select(referrals_table).where(
    referrals_table.c.bundle_id.in_(sa.bindparam("wanted_ids", expanding=True))
)


class SqlLedgerReads:
    """What the ledger answers without changing anything, on a database URL (see SqlLedger)."""

    def __init__(self, url: str, *, timeout: float = 10.0, pre_ping: bool = True) -> None:
        self._url = _normalise_url(url)
        self._where = _describe(self._url)
        self._engine = _build_engine(self._url, timeout=timeout, pre_ping=pre_ping)
        # Units of work are per thread: each consumer thread has its own (unit_of_work).
        self._local = threading.local()
        with self._translated("create tables"):
            _create_tables(self._engine)

    # -- one connection and one transaction for many calls -----------------------------------

    @contextmanager
    def unit_of_work(self) -> Iterator[None]:
        """Every ledger call this thread makes inside the block shares one connection and one
        transaction, committed when the block ends and rolled back if it raises: one commit for
        a whole batch of messages instead of one per call. A block inside a block joins the
        outer one. A call that expects to collide with a competing worker (a duplicate alert,
        change or outcome) runs in a SAVEPOINT, so the collision does not undo the rest.

        On SQLite the block is a no-op and each call commits on its own, as outside a block:
        Python's sqlite3 module starts transactions lazily and would turn a first SAVEPOINT
        into a transaction of its own, so nesting there is not reliable."""
        if self._local.__dict__.get("conn") is not None or self._url.get_backend_name() == (
            "sqlite"
        ):
            yield
            return
        with self._translated("begin"):
            conn = self._engine.connect()
            transaction = conn.begin()
        self._local.conn = conn
        self._local.events = []
        try:
            yield
            self._flush_events(conn)
        except BaseException:
            self._local.conn = None
            self._local.events = []
            with self._translated("rollback"):
                try:
                    transaction.rollback()
                finally:
                    conn.close()
            raise
        self._local.conn = None
        self._local.events = []
        with self._translated("commit"):
            try:
                transaction.commit()
            finally:
                conn.close()

    def _flush_events(self, conn: sa.Connection) -> None:
        """The unit's journey events, held back by add_event: one statement for them all."""
        events, self._local.events = self._local.__dict__.get("events"), []
        if events:
            with self._translated("add_event"):
                conn.execute(_INSERT_EVENTS, events)

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """The thread's unit-of-work connection (so a read sees what the unit wrote), else a
        pooled one."""
        conn = self._local.__dict__.get("conn")
        if conn is not None:
            yield conn
            return
        with self._engine.connect() as fresh:
            yield fresh

    @contextmanager
    def _writing(self, *, savepoint: bool = False) -> Iterator[sa.Connection]:
        """Inside a unit of work: its connection (in a SAVEPOINT when asked). Outside: a
        transaction of its own, committed when the block ends."""
        conn = self._local.__dict__.get("conn")
        if conn is None:
            with self._engine.begin() as fresh:
                yield fresh
        elif savepoint:
            with conn.begin_nested():
                yield conn
        else:
            yield conn

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        with self._translated("get_alert", alert_id=alert_id), self._reading() as conn:
            row = conn.execute(_ALERT_BY_ID, {"wanted_id": alert_id}).first()
            types = conn.scalars(_VULNERABILITIES_OF, {"wanted_id": alert_id}).all()
        if row is None:
            return None
        return _alert_record({**row._mapping, "vulnerability_types": tuple(types)})

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, AlertRecord]:
        """get_alert for each id it knows, in two statements."""
        ids = list(dict.fromkeys(alert_ids))
        if not ids:
            return {}
        with self._translated("get_alerts"), self._reading() as conn:
            rows = conn.execute(_ALERTS_BY_IDS, {"wanted_ids": ids}).all()
            types: dict[str, list[str]] = {}
            for alert_id, kind in conn.execute(_VULNERABILITIES_OF_ALL, {"wanted_ids": ids}):
                types.setdefault(alert_id, []).append(kind)
        return {
            row.alert_id: _alert_record(
                {**row._mapping, "vulnerability_types": tuple(types.get(row.alert_id, ()))}
            )
            for row in rows
        }

    def get_referrals(self, bundle_ids: Sequence[str]) -> dict[str, ReferralRecord]:
        """get_referral for each id it knows, in one statement."""
        ids = list(dict.fromkeys(bundle_ids))
        if not ids:
            return {}
        with self._translated("get_referrals"), self._reading() as conn:
            return {
                row.bundle_id: _referral_record(row._mapping)
                for row in conn.execute(_REFERRALS_BY_IDS, {"wanted_ids": ids})
            }

    def get_referral(self, bundle_id: str) -> ReferralRecord | None:
        with self._translated("get_referral"), self._reading() as conn:
            return _get_referral(conn, bundle_id)

    def referrals_for(self, alert_id: str) -> list[ReferralRecord]:
        query = (
            sa.select(referrals_table)
            .where(referrals_table.c.alert_id == alert_id)
            .order_by(
                referrals_table.c.endpoint,
                referrals_table.c.created_at,
                referrals_table.c.bundle_id,
            )
        )
        with self._translated("referrals_for", alert_id=alert_id), self._reading() as conn:
            return [_referral_record(row._mapping) for row in conn.execute(query)]

    def oldest_undelivered(self) -> dict[str, datetime]:
        """Per endpoint, when the alert behind its oldest still-queued referral arrived: the
        age of the oldest message waiting on hub.deliver.<endpoint>, which quorum queues do
        not report themselves."""
        query = (
            sa.select(referrals_table.c.endpoint, sa.func.min(alerts_table.c.received_at))
            .join(alerts_table, alerts_table.c.alert_id == referrals_table.c.alert_id)
            .where(referrals_table.c.state == ReferralState.QUEUED.value)
            .group_by(referrals_table.c.endpoint)
        )
        with self._translated("oldest_undelivered"), self._reading() as conn:
            return {row[0]: as_utc(row[1]) for row in conn.execute(query) if row[1] is not None}

    def overdue_due(self, now: datetime) -> list[ReferralRecord]:
        ref, alerts, out = referrals_table.c, alerts_table.c, outcomes_table.c
        sibling = referrals_table.alias("sibling")
        answered = (
            sa.select(sa.literal(1))
            .select_from(outcomes_table.join(sibling, sibling.c.bundle_id == out.bundle_id))
            .where(
                sibling.c.alert_id == ref.alert_id,
                sibling.c.endpoint == ref.endpoint,
                out.status.not_in(NOT_FROM_THE_SERVICE),
            )
            .exists()
        )
        query = (
            sa.select(referrals_table)
            .join(alerts_table, alerts.alert_id == ref.alert_id)
            .where(
                ref.kind == "new",
                ref.due_at.is_not(None),
                ref.due_at <= sa.literal(as_utc(now), _UtcDateTime()),
                ref.overdue_at.is_(None),
                ref.state != ReferralState.WITHHELD.value,
                alerts.cancelled.is_(None),
                ~answered,
            )
            .order_by(ref.due_at, ref.bundle_id)
        )
        with self._translated("overdue_due"), self._reading() as conn:
            return [_referral_record(row._mapping) for row in conn.execute(query)]

    def count_overdue(self) -> int:
        col = referrals_table.c
        query = sa.select(sa.func.count()).where(
            col.overdue_at.is_not(None), col.overdue_resolved_at.is_(None)
        )
        with self._translated("count_overdue"), self._reading() as conn:
            return int(conn.execute(query).scalar_one())

    def journey(self, alert_id: str) -> list[JourneyEvent]:
        query = (
            sa.select(events_table)
            .where(events_table.c.alert_id == alert_id)
            .order_by(events_table.c.at, events_table.c.id)
        )
        with self._translated("journey", alert_id=alert_id), self._reading() as conn:
            if self._local.__dict__.get("conn") is conn:
                self._flush_events(conn)  # the unit's own events are part of what it reads
            rows = conn.execute(query).all()
        return [
            JourneyEvent(
                alert_id=row.alert_id,
                at=row.at,
                stage=row.stage,
                event=row.event,
                endpoint=row.endpoint,
                detail=row.detail,
            )
            for row in rows
        ]

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Readiness: return if the database answers, else raise `TransientError`."""
        with self._translated("ping"), self._reading() as conn:
            conn.execute(sa.text("SELECT 1"))

    def find_alert_ids(self, any_id: str) -> list[str]:
        """The alert ids known by `any_id`: an alert id, the source's reference (custody record
        or case number), a Bundle id, an X-Request-Id or an outcome id. Rejected alerts count."""
        a, r, j, o = alerts_table.c, referrals_table.c, rejections_table.c, outcomes_table.c
        queries = [
            sa.select(a.alert_id).where(sa.or_(a.alert_id == any_id, a.reference == any_id)),
            sa.select(r.alert_id).where(sa.or_(r.bundle_id == any_id, r.request_id == any_id)),
            sa.select(j.alert_id).where(sa.or_(j.alert_id == any_id, j.reference == any_id)),
            sa.select(o.alert_id).where(sa.or_(o.outcome_id == any_id, o.bundle_id == any_id)),
        ]
        found: dict[str, None] = {}
        with self._translated("find_alert_ids"), self._reading() as conn:
            for query in queries:
                found.update(dict.fromkeys(conn.scalars(query)))
        return list(found)

    def attempts_for(self, bundle_id: str) -> list[AttemptRecord]:
        """Every delivery attempt of one referral, oldest first."""
        c = attempts_table.c
        query = sa.select(attempts_table).where(c.bundle_id == bundle_id).order_by(c.at, c.id)
        with self._translated("attempts_for"), self._reading() as conn:
            rows = conn.execute(query).all()
        return [
            AttemptRecord(
                bundle_id=row.bundle_id,
                at=row.at,
                result=row.result,
                http_status=row.http_status,
                reason_code=row.reason_code,
                duration_ms=row.duration_ms,
            )
            for row in rows
        ]

    def outcomes_for(self, alert_id: str) -> list[OutcomeRecord]:
        """Every outcome sent to the justice side for one alert, oldest first."""
        c = outcomes_table.c
        query = sa.select(outcomes_table).where(c.alert_id == alert_id).order_by(c.at)
        with self._translated("outcomes_for", alert_id=alert_id), self._reading() as conn:
            rows = conn.execute(query).all()
        return [
            OutcomeRecord(
                outcome_id=row.outcome_id,
                alert_id=row.alert_id,
                bundle_id=row.bundle_id,
                status=row.status,
                at=row.at,
            )
            for row in rows
        ]

    @contextmanager
    def _translated(self, operation: str, *, alert_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise LedgerUnavailable(
                f"ledger unavailable ({self._where}) during {operation}: {_reason(exc)}",
                alert_id=alert_id,
            ) from exc
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise LedgerUnavailable(
                f"ledger connection lost ({self._where}) during {operation}: {_reason(exc)}",
                alert_id=alert_id,
            ) from exc
