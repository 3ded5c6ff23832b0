"""What the ops console (console.py) is given, `ConsoleDeps`, and its fixed texts, limits and
response headers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from hub.operations.reports.measures import GroupBy, Report
from hub.pipeline import Clock
from hub.ports import FailedStore, LiveSessionStore, Publisher
from hub.ports_ledger import LedgerReader
from hub.security.console_guard import LOCKOUT_SECONDS, LoginThrottle
from hub.settings.types import EndpointConfig, OperatorAccount

COOKIE = "hub_console"
MAX_NAME_CHARS = 128
MAX_PASSWORD_CHARS = 1024  # argon2 hashes any length; a megabyte "password" costs a core
UNKNOWN_NAME = "(not an operator)"  # audited instead of a typed name that is no account
WRONG_TEXT = "Wrong name or password."
LOCKED_TEXT = (
    f"Too many wrong passwords for this name: it is locked for {LOCKOUT_SECONDS // 60} minutes."
)
UNAVAILABLE_TEXT = "Signing in is unavailable (the database cannot be reached). Try again."
THROTTLED_TEXT = "Too many sign-in attempts from here: wait a few minutes and try again."
ACTIONS = ("replay", "discard")
# Redirect notices are fixed codes, never text from the request, so nothing is reflected.
NOTICES = {
    "replay": "Replayed: republished to the queue it failed on.",
    "discard": "Discarded.",
    "nothing": "Nothing to do: no message in that group is still failed.",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages hold masked, but still sensitive, case details
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    operators: Mapping[str, OperatorAccount]
    secret: str
    store: FailedStore
    ledger: LedgerReader
    publisher: Publisher
    endpoints: Mapping[str, EndpointConfig]
    clock: Clock
    endpoint_depth: Callable[[str], int | None] | None = None  # messages waiting to go
    circuit_state: Callable[[str], str | None] | None = None
    paused_by_operator: Callable[[str], bool] | None = None  # `hub endpoint pause`
    throttle: LoginThrottle | None = None  # None: a fresh one (console_guard defaults)
    sessions: LiveSessionStore | None = None  # in memory (this process only) if None
    seconds: Callable[[], float] = time.time  # the throttle's and sessions' clock
    # The Pathway page's read (hub.adapters.sql.reports, read-only); no page if None.
    pathway: Callable[[datetime, datetime, GroupBy], Report] | None = None
