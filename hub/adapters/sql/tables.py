"""The ledger's tables (SQLAlchemy Core) and the UTC datetime column type."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

_ID = 128  # longest id or reference we keep
_CODE_LEN = 64


class _UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that goes in tz-aware, is stored as UTC and comes back tz-aware UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite has no time zones: keep the UTC wall time, re-attach UTC on the way out.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused rather than guessed at."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: the ledger stores UTC, pass a tz-aware datetime")
    return value.astimezone(UTC)


metadata = sa.MetaData()

alerts_table = sa.Table(
    "hub_alerts",
    metadata,
    sa.Column("alert_id", sa.String(_ID), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("source_kind", sa.String(_CODE_LEN), nullable=False),
    sa.Column("organisation_code", sa.String(_CODE_LEN), nullable=False),
    sa.Column("reference", sa.String(_ID), nullable=False),
    sa.Column("pathway", sa.String(_CODE_LEN), nullable=False),
    sa.Column("urgency", sa.String(_CODE_LEN), nullable=False),
    sa.Column("consent_status", sa.String(_CODE_LEN), nullable=False),
    sa.Column("share_with_justice", sa.Boolean, nullable=False),
    sa.Column("received_at", _UtcDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("rule", sa.String(_ID), nullable=True),
    sa.Column("updated_at", _UtcDateTime, nullable=False),
    sa.Column("consent_recorded_at", _UtcDateTime, nullable=True),
    sa.Column("cancelled", sa.String(_CODE_LEN), nullable=True),
    sa.Index("ix_hub_alerts_received_at", "received_at"),  # the pathway report's period
)

alert_vulnerabilities_table = sa.Table(
    "hub_alert_vulnerabilities",
    metadata,
    sa.Column("alert_id", sa.String(_ID), sa.ForeignKey("hub_alerts.alert_id"), primary_key=True),
    sa.Column("type", sa.String(_CODE_LEN), primary_key=True),
)

rejections_table = sa.Table(
    "hub_rejections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("source_kind", sa.String(_CODE_LEN), nullable=False),
    sa.Column("organisation_code", sa.String(_CODE_LEN), nullable=False),
    sa.Column("reference", sa.String(_ID), nullable=True),
    sa.Column("problem_count", sa.Integer, nullable=False),
    sa.Column("problem_paths", sa.JSON, nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
)

referrals_table = sa.Table(
    "hub_referrals",
    metadata,
    sa.Column("bundle_id", sa.String(_ID), primary_key=True),
    sa.Column(
        "alert_id", sa.String(_ID), sa.ForeignKey("hub_alerts.alert_id"), nullable=False, index=True
    ),
    sa.Column("endpoint", sa.String(_ID), nullable=False),
    sa.Column("request_id", sa.String(_ID), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("delivered_at", _UtcDateTime, nullable=True),
    sa.Column("kind", sa.String(16), nullable=False, server_default="new"),
    sa.Column("change_id", sa.String(_ID), nullable=True),
    sa.Column("created_at", _UtcDateTime, nullable=True),
    sa.Column("due_at", _UtcDateTime, nullable=True),
    sa.Column("overdue_at", _UtcDateTime, nullable=True),
    sa.Column("overdue_resolved_at", _UtcDateTime, nullable=True),
)

changes_table = sa.Table(
    "hub_changes",
    metadata,
    sa.Column("change_id", sa.String(_ID), primary_key=True),
    sa.Column(
        "alert_id", sa.String(_ID), sa.ForeignKey("hub_alerts.alert_id"), nullable=False, index=True
    ),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("received_at", _UtcDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
)

attempts_table = sa.Table(
    "hub_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "bundle_id",
        sa.String(_ID),
        sa.ForeignKey("hub_referrals.bundle_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("reason_code", sa.String(_CODE_LEN), nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

outcomes_table = sa.Table(
    "hub_outcomes",
    metadata,
    sa.Column("outcome_id", sa.String(_ID), primary_key=True),
    # No foreign keys: a `rejected` outcome answers an alert that never reached hub_alerts.
    sa.Column("alert_id", sa.String(_ID), nullable=False, index=True),
    sa.Column("bundle_id", sa.String(_ID), nullable=True, index=True),  # report: by referral
    sa.Column("status", sa.String(_CODE_LEN), nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
)

events_table = sa.Table(
    "hub_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(_ID), nullable=False),
    sa.Column("at", _UtcDateTime, nullable=False),
    sa.Column("stage", sa.String(_CODE_LEN), nullable=False),
    sa.Column("event", sa.String(_CODE_LEN), nullable=False),
    sa.Column("endpoint", sa.String(_ID), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Index("ix_hub_events_journey", "alert_id", "at", "id"),
)

# -- the pathway report's summary (written by the refresh only, `hub report refresh` or the --
# -- hub's own refresh thread; never the pipeline) ------------------------------------------
#
# Only ids, codes, bit masks, flags and whole-microsecond intervals
# (hub.operations.reports.summary defines the masks and buckets). Rows of alerts received
# before the last refresh's watermark; a report reads the rest live.

report_alerts_table = sa.Table(
    "hub_report_alerts",
    metadata,
    sa.Column("alert_id", sa.String(_ID), primary_key=True),
    sa.Column("received_at", _UtcDateTime, nullable=False),
    sa.Column("organisation_code", sa.String(_CODE_LEN), nullable=False),
    sa.Column("pathway", sa.String(_CODE_LEN), nullable=False),
    sa.Column("urgency", sa.String(_CODE_LEN), nullable=False),
    sa.Column("consent_status", sa.String(_CODE_LEN), nullable=False),
    sa.Column("vulnerabilities", sa.Integer, nullable=False),
    sa.Column("stages", sa.Integer, nullable=False),
    sa.Column("has_referral", sa.Boolean, nullable=False),
    sa.Index("ix_hub_report_alerts_received_at", "received_at"),
)

REPORT_INTERVALS = ("to_delivery", "to_acceptance", "to_assessment", "to_final_outcome")

report_referrals_table = sa.Table(
    "hub_report_referrals",
    metadata,
    sa.Column("alert_id", sa.String(_ID), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("received_at", _UtcDateTime, nullable=False),
    sa.Column("endpoint", sa.String(_ID), nullable=False),
    sa.Column("urgency", sa.String(_CODE_LEN), nullable=False),
    sa.Column("stages", sa.Integer, nullable=False),
    sa.Column("endpoint_stages", sa.Integer, nullable=True),
    sa.Column("due", sa.Boolean, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False),
    *[sa.Column(f"{name}_us", sa.BigInteger, nullable=True) for name in REPORT_INTERVALS],
    *[sa.Column(f"{name}_bucket", sa.Integer, nullable=True) for name in REPORT_INTERVALS],
    sa.Index("ix_hub_report_referrals_received_at", "received_at"),
)

report_refreshes_table = sa.Table(
    "hub_report_refreshes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Alerts received before it are in the summary tables, as of `started_at`.
    sa.Column("watermark", _UtcDateTime, nullable=False),
    sa.Column("started_at", _UtcDateTime, nullable=False),
    sa.Column("finished_at", _UtcDateTime, nullable=False),
    sa.Column("full", sa.Boolean, nullable=False),
    sa.Column("alerts", sa.Integer, nullable=False),  # alerts (re)summarised
)
