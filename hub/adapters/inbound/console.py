"""The ops console: server-rendered pages under /ops/ for failed-message groups, a group's
messages and one message (masked, with its trace), replay and discard with a reason, and
endpoint status. Login against `operators` in hub.yaml; a signed session cookie; a CSRF token
on every form. Every action goes through hub.operations (audited there, as the operator).

The only module that imports jinja2. Never shows unmasked personal data and has no reveal.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from hub.adapters.inbound.console_config import (
    _HEADERS,
    ACTIONS,
    COOKIE,
    LOCKED_TEXT,
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    NOTICES,
    THROTTLED_TEXT,
    UNAVAILABLE_TEXT,
    UNKNOWN_NAME,
    WRONG_TEXT,
    ConsoleDeps,
)
from hub.errors import TransientError
from hub.log import get_logger
from hub.operations.failed import OperationRefused, discard, replay, select_ids, show, summary
from hub.operations.reports.disclosure import publish
from hub.operations.reports.html import report_body
from hub.operations.reports.measures import GroupBy
from hub.operations.reports.period import month_period
from hub.operations.trace import trace
from hub.security import console_session
from hub.security.console_guard import Gate, LiveSessions, LoginThrottle
from hub.security.console_session import Session
from hub.security.passwords import verify_password
from hub.security.terminal import neutralise
from hub.store_rules.failed import CONSOLE_EVENTS

log = get_logger("hub.console")

ConsoleApp = Starlette  # what hub.bootstrap hands to hub.adapters.inbound.api.build_app

Handler = Callable[[Request, Session], Awaitable[Response]]


def _neutralised(value: Any) -> Any:
    """Text on a page as hub.security.terminal neutralises it for a terminal (autoescape
    then handles HTML); the page's own pre-formatted JSON keeps its line breaks."""
    if isinstance(value, Markup):  # built and neutralised by hub.operations.reports.html already
        return value
    return neutralise(value, keep_newlines=True) if isinstance(value, str) else value


def build_console(deps: ConsoleDeps, *, base: str = "/ops") -> ConsoleApp:
    """A Starlette app to mount at `base`."""
    env = Environment(
        loader=PackageLoader("hub", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_neutralised,  # every {{ value }} on every page: no bidi or control tricks
    )

    throttle = deps.throttle or LoginThrottle()
    live = deps.sessions or LiveSessions(max_age=console_session.MAX_AGE_SECONDS)
    # An unknown name is checked against a real account's hash: the same argon2 parameters,
    # so it costs exactly what a known name costs (no telling names apart by timing).
    decoy_hash = next(iter(deps.operators.values())).password_hash if deps.operators else None

    def now_s() -> int:
        return int(deps.seconds())

    async def session_of(request: Request) -> Session | None:
        """The cookie's session; a signed-in one only while its id is live on the server
        (signed out, expired or from before a restart: read as signed out)."""
        session = console_session.decode(
            request.cookies.get(COOKIE), secret=deps.secret, now=now_s()
        )
        if session is None or session.user is None:
            return session
        try:
            now = deps.seconds()
            if await run_in_threadpool(live.is_live, session.sid, session.user, now=now):
                return session
        except TransientError as exc:  # cannot tell it is live: signed out, fail closed
            log.error("console_sessions_unavailable", reason=exc.message)
        return replace(session, user=None, sid=None)

    def over_tls(request: Request) -> bool:
        """Served over HTTPS (api.tls): the cookie is then Secure, never sent in clear."""
        return request.url.scheme == "https"

    def audit(action: str, *, by: str, reason: str) -> None:
        try:
            deps.store.audit(action, [CONSOLE_EVENTS], by=by, reason=reason, at=deps.clock())
        except TransientError as exc:  # the database is down: say so in the log, carry on
            log.error("console_audit_failed", action=action, reason=exc.message)

    def page(
        request: Request, name: str, session: Session, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        html = env.get_template(name).render(
            base=base, user=session.user, csrf=session.csrf, **context
        )
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        set_cookie(response, session, secure=over_tls(request))
        return response

    def set_cookie(response: Response, session: Session, *, secure: bool) -> None:
        response.set_cookie(
            COOKIE,
            console_session.encode(session, secret=deps.secret),
            max_age=console_session.MAX_AGE_SECONDS,
            path=base,
            httponly=True,
            samesite="strict",
            secure=secure,
        )

    def redirect(request: Request, path: str, session: Session | None = None) -> Response:
        response = RedirectResponse(f"{base}{path}", status_code=303, headers=_HEADERS)
        if session is not None:
            set_cookie(response, session, secure=over_tls(request))
        return response

    def login_required(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            session = await session_of(request)
            if request.method == "POST":
                form = await request.form()
                if not console_session.csrf_ok(session, form.get("csrf")):
                    log.warning("console_csrf_refused", path=request.url.path)
                    return HTMLResponse("CSRF token missing or wrong", 403, headers=_HEADERS)
            if session is None or session.user not in deps.operators:
                return redirect(request, "/login")
            return await handler(request, session)

        return guarded

    async def login_form(request: Request) -> Response:
        session = await session_of(request) or console_session.new_session(now=now_s())
        if session.user in deps.operators:
            return redirect(request, "/groups")
        return page(request, "login.html", session)

    async def login(request: Request) -> Response:
        session = await session_of(request)
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
                await run_in_threadpool(audit, "login_throttled", by=who, reason=reason)
            return page(request, "login.html", session, status=429, error=THROTTLED_TEXT)
        checked = account.password_hash if account is not None else decoy_hash
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
                await run_in_threadpool(audit, "login_locked", by=who, reason=reason)
                return page(request, "login.html", session, status=401, error=LOCKED_TEXT)
            return page(request, "login.html", session, status=401, error=WRONG_TEXT)
        throttle.succeeded(account=name)
        try:
            sid = await run_in_threadpool(live.start, name, now=deps.seconds())
        except TransientError as exc:
            log.error("console_sessions_unavailable", reason=exc.message)
            return page(request, "login.html", session, status=503, error=UNAVAILABLE_TEXT)
        log.info("console_login", operator=name)
        await run_in_threadpool(audit, "sign_in", by=name, reason=f"from {client}")
        return redirect(
            request, "/groups", console_session.new_session(now=now_s(), user=name, sid=sid)
        )

    async def logout(request: Request, session: Session) -> Response:
        try:
            await run_in_threadpool(live.end, session.sid)  # the cookie is worthless from now on
        except TransientError as exc:
            log.error("console_sessions_unavailable", reason=exc.message)
            error = "Could not sign you out: the database is unavailable. Try again."
            return page(request, "error.html", session, status=503, error=error)
        log.info("console_logout", operator=session.user)
        await run_in_threadpool(audit, "sign_out", by=session.user or "", reason="signed out")
        response = redirect(request, "/login", console_session.new_session(now=now_s()))
        return response

    async def home(request: Request, session: Session) -> Response:
        return redirect(request, "/groups")

    async def groups(request: Request, session: Session) -> Response:
        found = await run_in_threadpool(deps.store.groups)
        return page(request, "groups.html", session, groups=found)

    async def group(request: Request, session: Session) -> Response:
        key = request.path_params["key"]

        def load() -> tuple[Any, list[dict[str, Any]]]:
            info = next((g for g in deps.store.groups() if g.group_key == key), None)
            return info, [summary(m) for m in deps.store.list(group=key)] if info else []

        info, messages = await run_in_threadpool(load)
        if info is None:
            return page(request, "error.html", session, status=404, error="No such group.")
        notice = NOTICES.get(request.query_params.get("notice", ""))
        return page(request, "group.html", session, group=info, messages=messages, notice=notice)

    async def message(request: Request, session: Session) -> Response:
        failed_id = request.path_params["failed_id"]

        def load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            view = show(deps.store, failed_id, now=deps.clock())
            alert_id = view.get("alert_id")
            journey = trace(deps.ledger, alert_id, store=deps.store) if alert_id else []
            return view, journey

        try:
            view, journey = await run_in_threadpool(load)
        except OperationRefused as exc:
            return page(request, "error.html", session, status=404, error=str(exc))
        return page(
            request,
            "message.html",
            session,
            m=view,
            body=json.dumps(view["body"], indent=2, ensure_ascii=False),
            headers=json.dumps(view["headers"], indent=2, sort_keys=True, default=str),
            traces=journey,
            notice=NOTICES.get(request.query_params.get("notice", "")),
        )

    async def act_on_message(request: Request, session: Session) -> Response:
        failed_id, action = request.path_params["failed_id"], request.path_params["action"]
        reason = str((await request.form()).get("reason", "")).strip()
        return await _act(
            request, session, action, reason, lambda: [failed_id], f"/messages/{failed_id}"
        )

    async def act_on_group(request: Request, session: Session) -> Response:
        key, action = request.path_params["key"], request.path_params["action"]
        reason = str((await request.form()).get("reason", "")).strip()
        return await _act(
            request,
            session,
            action,
            reason,
            lambda: select_ids(deps.store, group=key),
            f"/groups/{key}",
        )

    async def _act(
        request: Request,
        session: Session,
        action: str,
        reason: str,
        ids: Callable[[], list[int]],
        back: str,
    ) -> Response:
        if action not in ACTIONS:
            return page(request, "error.html", session, status=404, error="No such action.")
        assert session.user is not None

        def run() -> str:
            chosen = ids()
            if not chosen:
                return "nothing"
            if action == "replay":
                result = replay(
                    deps.store,
                    deps.publisher,
                    chosen,
                    by=session.user or "",
                    reason=reason,
                    now=deps.clock(),
                )
                if result.skipped:  # e.g. a queue the stage it failed in never reads
                    refused = "; ".join(f"#{i}: {why}" for i, why in result.skipped.items())
                    raise OperationRefused(f"replayed {len(result.done)}, not replayed: {refused}")
            else:
                discard(deps.store, chosen, by=session.user or "", reason=reason, now=deps.clock())
            log.info("console_action", action=action, operator=session.user, count=len(chosen))
            return action

        try:
            notice = await run_in_threadpool(run)
        except OperationRefused as exc:
            return page(
                request, "error.html", session, status=400, error=str(exc), back=base + back
            )
        except TransientError:
            error = "The broker did not confirm the replay; nothing more was marked. Try again."
            return page(request, "error.html", session, status=503, error=error, back=base + back)
        return redirect(request, f"{back}?notice={notice}")

    async def pathway(request: Request, session: Session) -> Response:
        """The pathway report for a month, suppressed (the console never shows exact counts:
        `hub report --exact` does, audited)."""
        month = request.query_params.get("month") or f"{deps.clock():%Y-%m}"
        by = request.query_params.get("by") or GroupBy.SITE.value
        try:
            start, end = month_period(month)
            grouping = GroupBy(by)
        except ValueError:  # both refuse anything but a month and a known grouping
            return page(
                request,
                "error.html",
                session,
                status=400,
                error="Choose a month (YYYY-MM) and a grouping from the form.",
                back=f"{base}/pathway",
            )
        if deps.pathway is None:
            return page(request, "error.html", session, status=404, error="No pathway report.")
        report = publish(await run_in_threadpool(deps.pathway, start, end, grouping))
        return page(
            request,
            "pathway.html",
            session,
            month=month,
            by=grouping.value,
            groupings=[g.value for g in GroupBy],
            body=Markup(report_body(report)),  # escaped by hub.operations.reports.html
        )

    async def endpoints(request: Request, session: Session) -> Response:
        def load() -> list[dict[str, Any]]:
            rows = []
            for name, endpoint in deps.endpoints.items():
                depth = deps.endpoint_depth(name) if deps.endpoint_depth else None
                circuit = deps.circuit_state(name) if deps.circuit_state else None
                rows.append(
                    {
                        "name": name,
                        "kind": str(endpoint.kind),
                        "organisation": endpoint.organisation_name,
                        "ods_code": endpoint.ods_code,
                        "paused": "paused (config)"
                        if endpoint.paused
                        else "paused (operator)"
                        if deps.paused_by_operator and deps.paused_by_operator(name)
                        else "no",
                        "max_in_flight": endpoint.max_in_flight,
                        "depth": "n/a" if depth is None else depth,
                        "circuit": circuit or "n/a",
                    }
                )
            return rows

        return page(request, "endpoints.html", session, endpoints=await run_in_threadpool(load))

    return Starlette(
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", login_required(logout), methods=["POST"]),
            Route("/", login_required(home), methods=["GET"]),
            Route("/groups", login_required(groups), methods=["GET"]),
            Route("/groups/{key}", login_required(group), methods=["GET"]),
            Route("/groups/{key}/{action}", login_required(act_on_group), methods=["POST"]),
            Route("/messages/{failed_id:int}", login_required(message), methods=["GET"]),
            Route(
                "/messages/{failed_id:int}/{action}",
                login_required(act_on_message),
                methods=["POST"],
            ),
            Route("/endpoints", login_required(endpoints), methods=["GET"]),
            Route("/pathway", login_required(pathway), methods=["GET"]),
        ]
    )
