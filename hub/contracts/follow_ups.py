"""Parse what a justice system publishes to `justice.alerts`: an `ld.identification-alert/1`, or a
follow-up about an alert it already sent (`ld.alert-update/1`, `ld.alert-cancellation/1`,
`ld.consent-update/1`). The body's `schema` says which; the routing key's last word must agree.

Pure, like hub/contracts/alert.py: time comes in as `now`, problems name fields and never quote
values.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.contracts.alert import build_alert, check_document, must_datetime, read_document
from hub.contracts.problems import ROOT
from hub.errors import InvalidMessage
from hub.messages import (
    ALERT_SCHEMA,
    CANCELLATION_SCHEMA,
    CONSENT_UPDATE_SCHEMA,
    UPDATE_SCHEMA,
    Alert,
    CancellationReason,
    ChangeKind,
    Consent,
    ConsentStatus,
    FollowUp,
    Organisation,
    Problem,
    SourceKind,
    SourceRef,
    UpdateReason,
)

# The last word of the routing key `<custody|court>.<org code>.<type>` for each contract.
MESSAGE_TYPES: dict[str, str] = {
    ALERT_SCHEMA: "identification",
    UPDATE_SCHEMA: "update",
    CANCELLATION_SCHEMA: "cancellation",
    CONSENT_UPDATE_SCHEMA: "consent",
}
_ID_FIELDS = {
    UPDATE_SCHEMA: "update_id",
    CANCELLATION_SCHEMA: "cancellation_id",
    CONSENT_UPDATE_SCHEMA: "consent_update_id",
}
SUPPORTED = ", ".join(MESSAGE_TYPES)


def message_id_field(schema: str) -> str:
    """The field that is a message's own id (and must equal its AMQP message_id)."""
    return _ID_FIELDS.get(schema, "alert_id")


def parse_justice_message(
    body: bytes,
    *,
    content_type: str | None,
    now: datetime,
    max_bytes: int = 65536,
    expected_kind: str | None = None,
    message_type: str | None = None,
) -> Alert | FollowUp:
    """The alert or follow-up in `body`, or InvalidMessage listing every problem.

    `message_type` is the routing key's last word when known (`identification`, `update`,
    `cancellation`, `consent`); a body whose `schema` is another type's is refused, so a
    publisher's routing (and the broker's topic permissions) always describe what it sent."""
    document, problems = read_document(body, content_type=content_type, max_bytes=max_bytes)
    schema = document.get("schema")
    if not isinstance(schema, str) or schema not in MESSAGE_TYPES:
        assumed = {v: k for k, v in MESSAGE_TYPES.items()}.get(message_type or "")
        if "schema" not in document and assumed is not None:
            # Judge it as the type its routing key names, so every other problem is listed too.
            check_document(
                document,
                problems,
                schema=assumed,
                now=now,
                expected_kind=expected_kind,
                supported=SUPPORTED,
            )
        what = (
            "required field missing" if "schema" not in document else "unsupported schema version"
        )
        problems.append(Problem("schema", f"{what}: supported are {SUPPORTED}"))
        # No alert_id here: on_rejected peeks a safe one from the body itself.
        raise InvalidMessage(_unique(problems))
    if message_type is not None and MESSAGE_TYPES[schema] != message_type:
        problems.append(
            Problem(
                ROOT,
                f"a {schema} message must be published with routing key "
                f"<kind>.<organisation>.{MESSAGE_TYPES[schema]}, not ….{message_type}",
            )
        )
    check_document(
        document,
        problems,
        schema=schema,
        now=now,
        expected_kind=expected_kind,
        supported=SUPPORTED,
    )
    if schema == ALERT_SCHEMA:
        return build_alert(document)
    return _build_follow_up(schema, document)


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _source(d: dict[str, Any]) -> SourceRef:
    src = d["source"]
    return SourceRef(
        kind=SourceKind(src["kind"]),
        organisation=Organisation(
            code=src["organisation"]["code"], name=src["organisation"]["name"]
        ),
        reference=src["reference"],
    )


def _build_follow_up(schema: str, d: dict[str, Any]) -> FollowUp:
    """Only called on a document that passed every check."""
    change_id = d[_ID_FIELDS[schema]]
    sent_at = must_datetime(d["sent_at"])
    common = {
        "change_id": change_id,
        "alert_id": d["alert_id"],
        "sent_at": sent_at,
        "source": _source(d),
    }
    if schema == UPDATE_SCHEMA:
        alert_fields = {k: v for k, v in d.items() if k not in ("update_id", "reason")}
        alert = build_alert({**alert_fields, "schema": ALERT_SCHEMA})
        return FollowUp(
            kind=ChangeKind.UPDATE,
            alert=alert,
            update_reason=UpdateReason(d["reason"]),
            consent=alert.consent,
            **common,
        )
    if schema == CANCELLATION_SCHEMA:
        return FollowUp(
            kind=ChangeKind.CANCELLATION, cancellation=CancellationReason(d["reason"]), **common
        )
    con = d["consent"]
    return FollowUp(
        kind=ChangeKind.CONSENT,
        consent=Consent(
            status=ConsentStatus(con["status"]),
            share_with_justice=con["share_with_justice"],
            recorded_at=must_datetime(con["recorded_at"]),
            recorded_by=con["recorded_by"],
        ),
        **common,
    )
