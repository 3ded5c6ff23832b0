"""Who may try to sign in to the ops console, and which sessions are still live.

`LoginThrottle`: per client (address) at most CLIENT_ATTEMPTS login attempts in
CLIENT_WINDOW_SECONDS; per account name, LOCK_AFTER_FAILURES wrong passwords in a row (within
FAILURE_WINDOW_SECONDS) lock it for LOCKOUT_SECONDS, for every client, right password or not.
Unknown names are counted like known ones, so a lockout does not tell which names exist.
`LiveSessions`: the server-side half of a session cookie (hub.ports.LiveSessionStore) in
memory, for tests and a console built without a database; the hub itself keeps them in the
ledger's database (hub.adapters.sql.console_sessions), so a sign-out ends a session on every hub.

Pure and in memory (a lock, no I/O; time comes in as an argument). The throttle is per hub
process: a restart forgets the counts, and each hub counts attempts on its own.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")

LOCK_AFTER_FAILURES = 5
FAILURE_WINDOW_SECONDS = 15 * 60
LOCKOUT_SECONDS = 15 * 60
CLIENT_ATTEMPTS = 20
CLIENT_WINDOW_SECONDS = 5 * 60
# Memory bounds: the names and clients remembered (oldest forgotten first) and live sessions.
MAX_TRACKED = 10_000
MAX_SESSIONS = 1_000


class Gate(StrEnum):
    OPEN = "open"  # go on and check the password
    THROTTLED = "throttled"  # this client tried too often: 429, password not checked
    LOCKED = "locked"  # this account is locked: refused, password not checked


@dataclass(slots=True)
class _Account:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    """What one wrong password did: `locked_until` is set when it locked the account."""

    failures: int
    locked_until: float | None = None


class LoginThrottle:
    def __init__(
        self,
        *,
        lock_after: int = LOCK_AFTER_FAILURES,
        failure_window: float = FAILURE_WINDOW_SECONDS,
        lockout: float = LOCKOUT_SECONDS,
        client_attempts: int = CLIENT_ATTEMPTS,
        client_window: float = CLIENT_WINDOW_SECONDS,
    ) -> None:
        self.lock_after, self.failure_window, self.lockout = lock_after, failure_window, lockout
        self.client_attempts, self.client_window = client_attempts, client_window
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._throttled: set[str] = set()  # clients refused since their last admitted attempt
        self._lock = threading.Lock()

    def admit(self, *, account: str, client: str, now: float) -> tuple[Gate, bool]:
        """Counts this attempt against the client; says whether to check the password, and
        whether this refusal is the first of its kind (to audit once, not per attempt)."""
        with self._lock:
            attempts: deque[float] = _remember(self._clients, client, deque)
            while attempts and attempts[0] <= now - self.client_window:
                attempts.popleft()
            if len(attempts) >= self.client_attempts:
                first = client not in self._throttled
                if len(self._throttled) >= MAX_TRACKED:
                    self._throttled.clear()
                self._throttled.add(client)
                return Gate.THROTTLED, first
            self._throttled.discard(client)
            attempts.append(now)
            state = self._accounts.get(account)
            if state is not None and state.locked_until > now:
                return Gate.LOCKED, False
            return Gate.OPEN, False

    def failed(self, *, account: str, now: float) -> Failure:
        with self._lock:
            state = _remember(self._accounts, account, _Account)
            state.failures.append(now)
            while state.failures and state.failures[0] <= now - self.failure_window:
                state.failures.popleft()
            if len(state.failures) >= self.lock_after:
                state.failures.clear()
                state.locked_until = now + self.lockout
                return Failure(failures=self.lock_after, locked_until=state.locked_until)
            return Failure(failures=len(state.failures))

    def succeeded(self, *, account: str) -> None:
        with self._lock:
            self._accounts.pop(account, None)


def _remember(table: OrderedDict[str, T], key: str, new: Callable[[], T]) -> T:
    if key in table:
        table.move_to_end(key)
        return table[key]
    while len(table) >= MAX_TRACKED:
        table.popitem(last=False)
    value = new()
    table[key] = value
    return value


class LiveSessions:
    """Session ids issued at sign-in; a cookie is honoured only while its id is here."""

    def __init__(self, *, max_age: float) -> None:
        self.max_age = max_age
        self._live: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id -> (operator, at)
        self._lock = threading.Lock()

    def start(self, operator: str, *, now: float) -> str:
        session_id = secrets.token_urlsafe(24)
        with self._lock:
            while len(self._live) >= MAX_SESSIONS:
                self._live.popitem(last=False)
            self._live[session_id] = (operator, now)
        return session_id

    def is_live(self, session_id: str | None, operator: str | None, *, now: float) -> bool:
        if not session_id or operator is None:
            return False
        with self._lock:
            found = self._live.get(session_id)
        return found is not None and found[0] == operator and now - found[1] <= self.max_age

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._live.pop(session_id or "", None)

    def end_all(self, operator: str) -> None:
        with self._lock:
            for session_id in [s for s, (who, _) in self._live.items() if who == operator]:
                del self._live[session_id]
