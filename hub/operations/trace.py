"""One alert's journey for an operator: ledger rows and events, in order, scrubbed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hub.ports import FailedStore
from hub.ports_ledger import LedgerReader


def trace(
    ledger: LedgerReader, any_id: str, *, store: FailedStore | None = None
) -> list[dict[str, Any]]:
    """The journey of each referral known by `any_id` (alert id, custody record or case
    number, Bundle id, X-Request-Id, outcome id), from the ledger: ids, codes and times only.
    An empty list means the hub has never seen it."""
    return [_trace_alert(ledger, alert_id, store) for alert_id in ledger.find_alert_ids(any_id)]


def _trace_alert(ledger: LedgerReader, alert_id: str, store: FailedStore | None) -> dict[str, Any]:
    record = ledger.get_alert(alert_id)
    events = ledger.journey(alert_id)
    referrals = ledger.referrals_for(alert_id)
    outcomes = ledger.outcomes_for(alert_id)
    parked = store.list(alert_id=alert_id) if store is not None else []
    trace: dict[str, Any] = {"alert_id": alert_id}
    if record is not None:
        facts = record.facts
        trace.update(
            {
                "state": str(record.state),
                "rules": record.rule.split(",") if record.rule else [],
                "source": {
                    "kind": facts.source_kind,
                    "organisation_code": facts.organisation_code,
                    "reference": facts.reference,
                },
                "pathway": facts.pathway,
                "urgency": facts.urgency,
                "consent_status": facts.consent_status,
                "share_with_justice": facts.share_with_justice,
                "received_at": facts.received_at.isoformat(),
                "cancelled": record.cancelled,
            }
        )
    else:
        rejected = any(e.event == "alert_rejected" for e in events)
        trace["state"] = "rejected" if rejected else "unknown"
    trace["referrals"] = [
        {
            "endpoint": r.endpoint,
            "kind": r.kind,  # the referral itself (new), or an update / cancellation / consent
            "bundle_id": r.bundle_id,
            "request_id": r.request_id,
            "state": str(r.state),
            "attempts": r.attempts,
            "delivered_at": r.delivered_at.isoformat() if r.delivered_at else None,
            "due_at": r.due_at.isoformat() if r.due_at else None,
            "overdue_at": r.overdue_at.isoformat() if r.overdue_at else None,
            "overdue_resolved_at": (
                r.overdue_resolved_at.isoformat() if r.overdue_resolved_at else None
            ),
            "attempt_log": [
                {
                    "at": a.at.isoformat(),
                    "result": a.result,
                    "http_status": a.http_status,
                    "reason_code": a.reason_code,
                    "duration_ms": round(a.duration_ms, 1),
                }
                for a in ledger.attempts_for(r.bundle_id)
            ],
        }
        for r in referrals
    ]
    trace["outcomes"] = [
        {
            "outcome_id": o.outcome_id,
            "status": o.status,
            "bundle_id": o.bundle_id,
            "at": o.at.isoformat(),
        }
        for o in outcomes
    ]
    trace["events"] = [
        {
            "at": e.at.isoformat(),
            "stage": e.stage,
            "event": e.event,
            "endpoint": e.endpoint,
            "detail": dict(e.detail),
        }
        for e in events
    ]
    trace["failed_messages"] = [
        {
            "id": m.id,
            "stage": m.failure.stage,
            "endpoint": m.failure.endpoint,
            "error_class": m.failure.error_class,
            "state": str(m.state),
        }
        for m in parked
    ]
    trace["current"] = _current(trace)
    return trace


def _current(trace: Mapping[str, Any]) -> str:
    """One line an operator can read: where the referral stands now."""
    if trace["state"] in ("rejected", "unknown"):
        return str(trace["state"])
    parts = [
        f"{r['endpoint']} {r['state']}" + (" (overdue)" if r["overdue_at"] else "")
        for r in trace["referrals"]
        if r["kind"] == "new"
    ] or ["no referrals"]
    if trace.get("cancelled"):
        parts.insert(0, f"cancelled ({trace['cancelled']})")
    if trace["outcomes"]:
        parts.append(f"last outcome {trace['outcomes'][-1]['status']}")
    waiting = [m["id"] for m in trace["failed_messages"] if m["state"] == "failed"]
    if waiting:
        parts.append("parked as " + ", ".join(f"#{i}" for i in waiting))
    return f"{trace['state']}: " + "; ".join(parts)
