"""The ops console's session cookie: a small JSON payload (operator name, CSRF token, issue
time and, once signed in, the session id hub.security.console_guard.LiveSessions must still hold)
signed with HMAC-SHA256 under HUB_CONSOLE_SECRET. Pure: the time comes in as an argument;
no I/O, nothing logged. A cookie that is tampered with, malformed or too old reads as none."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

MAX_AGE_SECONDS = 8 * 3600  # one shift


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str
    issued_at: int
    user: str | None = None  # None until a login succeeds
    sid: str | None = None  # the live session's id (hub.security.console_guard), with `user`


def new_session(*, now: int, user: str | None = None, sid: str | None = None) -> Session:
    """A fresh CSRF token each time: a login gets a new one (no session fixation)."""
    return Session(csrf=secrets.token_urlsafe(32), issued_at=now, user=user, sid=sid)


def encode(session: Session, *, secret: str) -> str:
    payload = json.dumps(
        {"u": session.user, "c": session.csrf, "t": session.issued_at, "s": session.sid},
        separators=(",", ":"),
    ).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_mac(body, secret)}"


def decode(cookie: str | None, *, secret: str, now: int) -> Session | None:
    if not cookie or cookie.count(".") != 1:
        return None
    body, mac = cookie.split(".")
    if not hmac.compare_digest(mac, _mac(body, secret)):
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        session = Session(
            csrf=str(doc["c"]), issued_at=int(doc["t"]), user=doc["u"], sid=doc.get("s")
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not 0 <= now - session.issued_at <= MAX_AGE_SECONDS:
        return None
    if session.user is not None and not isinstance(session.user, str):
        return None
    if session.sid is not None and not isinstance(session.sid, str):
        return None
    return session


def csrf_ok(session: Session | None, submitted: object) -> bool:
    return (
        session is not None
        and isinstance(submitted, str)
        and bool(submitted)
        and hmac.compare_digest(session.csrf.encode(), submitted.encode())
    )


def _mac(body: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), b"hub-console-session|" + body.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")
