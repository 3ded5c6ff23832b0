"""The hub's errors. Each branch says what the caller does next.

    HubError
    ├── InvalidMessage      the message itself is bad: dead-letter now, tell the sender (rejected)
    │   └── AlertConflict   same alert_id, different body
    ├── TransientError      the world is briefly wrong (endpoint down, broker blip): retry later
    │   ├── CircuitOpen     not sent: the endpoint's circuit breaker is open (no quick retry)
    │   └── LedgerUnavailable  the hub's own database is away: nothing committed, requeue
    ├── PermanentError      retrying cannot help (endpoint said 4xx): dead-letter with the reason
    └── ConfigError         start-up only: bad configuration, with file and line

Messages are for operators and never quote personal data.
"""

from __future__ import annotations

from collections.abc import Sequence

from hub.messages import Problem


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        alert_id: str | None = None,
        stage: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.alert_id = alert_id
        self.stage = stage
        self.endpoint = endpoint
        self.status = status


class InvalidMessage(HubError):
    """The message cannot be processed as sent; every problem found is in `problems`."""

    def __init__(self, problems: Sequence[Problem], **context: object) -> None:
        self.problems = tuple(problems)
        summary = "; ".join(f"{p.path}: {p.problem}" for p in self.problems)
        super().__init__(f"invalid message: {summary}", **context)  # type: ignore[arg-type]


class AlertConflict(InvalidMessage):
    """An alert_id already seen with a different body."""


class TransientError(HubError):
    """Worth retrying later; `retry_after` (seconds) when the peer said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: object):
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.retry_after = retry_after


class CircuitOpen(TransientError):
    """The endpoint's circuit breaker refused the attempt: nothing was sent, so retrying in
    process cannot help; the broker's delayed retry brings the message back."""


class LedgerUnavailable(TransientError):
    """The ledger's (or failed-message store's) database cannot be reached or dropped the
    connection (restart, failover to a standby): nothing of this message was committed, so it
    goes back to its queue unacked, never to a retry queue (that would be an ack)."""


class PermanentError(HubError):
    """Retrying cannot help; `operation_outcome` keeps what the peer said."""

    def __init__(self, message: str, *, operation_outcome: str | None = None, **context: object):
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.operation_outcome = operation_outcome


class ConfigError(HubError):
    """Configuration is wrong; raised at start-up only. Lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("configuration errors:\n  " + "\n  ".join(self.problems))
