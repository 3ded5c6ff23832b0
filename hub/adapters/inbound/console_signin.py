"""The ops console's signed-in frame: the session a request's cookie carries (live on the
server, hub.security.console_guard), signing in and out (throttled, audited, one argon2
verification whatever the name), CSRF on every form, and pages rendered under a session.

What each page shows is console.py's; this module never reads failed messages or the ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub.adapters.inbound.console_config import (
    _HEADERS,
    COOKIE,
    LOCKED_TEXT,
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    THROTTLED_TEXT,
    UNAVAILABLE_TEXT,
    UNKNOWN_NAME,
    WRONG_TEXT,
    ConsoleDeps,
)
from hub.errors import TransientError
from hub.log import get_logger
from hub.ports import LiveSessionStore
from hub.security import console_session
from hub.security.console_guard import Gate, LiveSessions, LoginThrottle
from hub.security.console_session import Session
from hub.security.passwords import verify_password
from hub.store_rules.failed import CONSOLE_EVENTS

log = get_logger("hub.console")

Handler = Callable[[Request, Session], Awaitable[Response]]


@dataclass
class SignedIn:
    """Sessions, sign-in and sign-out for the console mounted at `base`; `render(name,
    **context)` renders a page template."""

    deps: ConsoleDeps
    base: str
    render: Callable[..., str]
    throttle: LoginThrottle = field(init=False)
    live: LiveSessionStore = field(init=False)  # the database's, or this process's
    decoy_hash: str | None = field(init=False)

    def __post_init__(self) -> None:
        deps = self.deps
        self.throttle = deps.throttle or LoginThrottle()
        self.live = deps.sessions or LiveSessions(max_age=console_session.MAX_AGE_SECONDS)
        # An unknown name is checked against a real account's hash: the same argon2
        # parameters, so it costs exactly what a known name costs (no telling names apart by
        # timing).
        self.decoy_hash = (
            next(iter(deps.operators.values())).password_hash if deps.operators else None
        )

    def now_s(self) -> int:
        return int(self.deps.seconds())

    async def session_of(self, request: Request) -> Session | None:
        """The cookie's session; a signed-in one only while its id is live on the server
        (signed out, expired or from before a restart: read as signed out)."""
        session = console_session.decode(
            request.cookies.get(COOKIE), secret=self.deps.secret, now=self.now_s()
        )
        if session is None or session.user is None:
            return session
        try:
            now = self.deps.seconds()
            if await run_in_threadpool(self.live.is_live, session.sid, session.user, now=now):
                return session
        except TransientError as exc:  # cannot tell it is live: signed out, fail closed
            log.error("console_sessions_unavailable", reason=exc.message)
        return replace(session, user=None, sid=None)

    @staticmethod
    def over_tls(request: Request) -> bool:
        """Served over HTTPS (api.tls): the cookie is then Secure, never sent in clear."""
        return request.url.scheme == "https"

    def audit(self, action: str, *, by: str, reason: str) -> None:
        try:
            self.deps.store.audit(
                action, [CONSOLE_EVENTS], by=by, reason=reason, at=self.deps.clock()
            )
        except TransientError as exc:  # the database is down: say so in the log, carry on
            log.error("console_audit_failed", action=action, reason=exc.message)

    def page(
        self, request: Request, name: str, session: Session, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = self.render(name, base=self.base, user=session.user, csrf=session.csrf, **context)
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        self.set_cookie(response, session, secure=self.over_tls(request))
        return response

    def set_cookie(self, response: Response, session: Session, *, secure: bool) -> None:
        response.set_cookie(
            COOKIE,
            console_session.encode(session, secret=self.deps.secret),
            max_age=console_session.MAX_AGE_SECONDS,
            path=self.base,
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def redirect(self, request: Request, path: str, session: Session | None = None) -> Response:
        response = RedirectResponse(f"{self.base}{path}", status_code=303, headers=_HEADERS)
        if session is not None:
            self.set_cookie(response, session, secure=self.over_tls(request))
        return response

    def login_required(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            session = await self.session_of(request)
            if request.method == "POST":
                form = await request.form()
                if not console_session.csrf_ok(session, form.get("csrf")):
                    log.warning("console_csrf_refused", path=request.url.path)
                    return HTMLResponse("CSRF token missing or wrong", 403, headers=_HEADERS)
            if session is None or session.user not in self.deps.operators:
                return self.redirect(request, "/login")
            return await handler(request, session)

        return guarded

    async def login_form(self, request: Request) -> Response:
        session = await self.session_of(request) or console_session.new_session(now=self.now_s())
        if session.user in self.deps.operators:
            return self.redirect(request, "/groups")
        return self.page(request, "login.html", session)

    async def login(self, request: Request) -> Response:
        deps, throttle, page = self.deps, self.throttle, self.page
        session = await self.session_of(request)
        form = await request.form()
        if not console_session.csrf_ok(session, form.get("csrf")):
            return HTMLResponse("CSRF token missing or wrong", 403, headers=_HEADERS)
        assert session is not None
        name = str(form.get("username", ""))[:MAX_NAME_CHARS]
        password = str(form.get("password", ""))[:MAX_PASSWORD_CHARS]
        client = request.client.host if request.client else "unknown"
        account = deps.operators.get(name)
        # Audited under the name only when it is an operator's: a typed name may be anything.
        who = name if account is not None else UNKNOWN_NAME
        gate, first = throttle.admit(account=name, client=client, now=deps.seconds())
        if gate is Gate.THROTTLED:
            log.warning("console_login_throttled", client=client)
            if first:
                reason = (
                    f"client {client}: over {throttle.client_attempts} sign-in attempts "
                    f"in {throttle.client_window:g} s"
                )
                await run_in_threadpool(self.audit, "login_throttled", by=who, reason=reason)
            return page(request, "login.html", session, status=429, error=THROTTLED_TEXT)
        checked = account.password_hash if account is not None else self.decoy_hash
        # Always one argon2 verification, whatever the name, password or lock state.
        ok = await run_in_threadpool(verify_password, checked or "", password or "\x00")
        ok = ok and account is not None and bool(password)
        if gate is Gate.LOCKED:
            log.warning("console_login_locked_out", client=client)
            return page(request, "login.html", session, status=401, error=LOCKED_TEXT)
        if not ok:
            failure = throttle.failed(account=name, now=deps.seconds())
            log.warning("console_login_refused", client=client, failures=failure.failures)
            if failure.locked_until is not None:
                until = datetime.fromtimestamp(failure.locked_until, UTC).isoformat()
                reason = (
                    f"{failure.failures} wrong passwords in a row, the last from {client}; "
                    f"locked until {until}"
                )
                log.warning("console_account_locked", client=client)
                await run_in_threadpool(self.audit, "login_locked", by=who, reason=reason)
                return page(request, "login.html", session, status=401, error=LOCKED_TEXT)
            return page(request, "login.html", session, status=401, error=WRONG_TEXT)
        throttle.succeeded(account=name)
        try:
            sid = await run_in_threadpool(self.live.start, name, now=deps.seconds())
        except TransientError as exc:
            log.error("console_sessions_unavailable", reason=exc.message)
            return page(request, "login.html", session, status=503, error=UNAVAILABLE_TEXT)
        log.info("console_login", operator=name)
        await run_in_threadpool(self.audit, "sign_in", by=name, reason=f"from {client}")
        return self.redirect(
            request, "/groups", console_session.new_session(now=self.now_s(), user=name, sid=sid)
        )

    async def logout(self, request: Request, session: Session) -> Response:
        try:
            # The cookie is worthless from now on.
            await run_in_threadpool(self.live.end, session.sid)
        except TransientError as exc:
            log.error("console_sessions_unavailable", reason=exc.message)
            error = "Could not sign you out: the database is unavailable. Try again."
            return self.page(request, "error.html", session, status=503, error=error)
        log.info("console_logout", operator=session.user)
        await run_in_threadpool(self.audit, "sign_out", by=session.user or "", reason="signed out")
        return self.redirect(request, "/login", console_session.new_session(now=self.now_s()))
