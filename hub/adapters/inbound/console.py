"""The ops console: server-rendered pages under /ops/ for failed-message groups, a group's
messages and one message (masked, with its trace), replay and discard with a reason, and
endpoint status. Login against `operators` in hub.yaml; a signed session cookie; a CSRF token
on every form (console_signin.py: the session, signing in and out). Every action goes through
hub.operations (audited there, as the operator).

The only module that imports jinja2. Never shows unmasked personal data and has no reveal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.adapters.inbound.console_config import (
    ACTIONS,
    NOTICES,
    ConsoleDeps,
)
from hub.adapters.inbound.console_signin import SignedIn
from hub.errors import TransientError
from hub.log import get_logger
from hub.operations.failed import OperationRefused, discard, replay, select_ids, show, summary
from hub.operations.reports.disclosure import publish
from hub.operations.reports.html import report_body
from hub.operations.reports.measures import GroupBy
from hub.operations.reports.period import month_period
from hub.operations.trace import trace
from hub.security.console_session import Session
from hub.security.terminal import neutralise

log = get_logger("hub.console")

ConsoleApp = Starlette  # what hub.bootstrap hands to hub.adapters.inbound.api.build_app


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

    web = SignedIn(deps, base, lambda name, **context: env.get_template(name).render(**context))
    page, redirect, login_required = web.page, web.redirect, web.login_required

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
            Route("/login", web.login_form, methods=["GET"]),
            Route("/login", web.login, methods=["POST"]),
            Route("/logout", login_required(web.logout), methods=["POST"]),
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
