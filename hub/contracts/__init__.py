"""The justice-side contracts: the alert, follow-ups, the outcome, identifiers and schema
problems. One entry point (alert.read_document / check_document). Pure: the time
comes in as `now`; nothing here imports hub.adapters."""
