"""Write hub/schemas/ld.alert-update.1.json from the alert schema: an update is the alert's whole
new content plus `update_id` and `reason`. Run after changing the alert schema; a unit test fails
while the two disagree (tests/unit/test_change_contracts.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SCHEMAS = Path(__file__).resolve().parent.parent / "hub" / "schemas"


def derive(alert_schema: dict) -> dict:
    schema = json.loads(json.dumps(alert_schema))
    schema["$id"] = "https://ld-hub.example.nhs.uk/schemas/ld.alert-update/1"
    schema["title"] = "ld.alert-update/1"
    schema["description"] = (
        "New information about an alert already sent: the alert's whole new content (same "
        "alert_id, same source organisation and reference), plus its own update_id and a reason. "
        "Services receive it as a BaRS update message. Strict: unknown fields are errors."
    )
    props = schema["properties"]
    props["schema"] = {"const": "ld.alert-update/1"}
    props["alert_id"] = dict(props["alert_id"], description="the alert this updates")
    updated = {"update_id": {
        "type": "string",
        "format": "uuid",
        "description": "UUID; this update's idempotency key. Publishers also send it as the "
        "AMQP message_id.",
    }, "reason": {"enum": ["new_information", "details_corrected"]}}
    schema["properties"] = {"schema": props.pop("schema"), **updated, **props}
    required = schema["required"]
    schema["required"] = ["schema", "update_id", "reason", *required[1:]]
    return schema


def main() -> int:
    alert = json.loads((SCHEMAS / "ld.identification-alert.1.json").read_text("utf-8"))
    text = json.dumps(derive(alert), indent=2, ensure_ascii=False) + "\n"
    (SCHEMAS / "ld.alert-update.1.json").write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
