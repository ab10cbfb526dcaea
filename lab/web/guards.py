"""Route guards: who may call a route, and the cross-site checks of routes that change
something. A route that fails a check gets the plain 403 page and nothing else."""
from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from lab.errors import LabError
from lab.web import auth
from lab.web.roster import Trainee

MAX_BODY = 65536


def web_of(conn: HTTPConnection) -> Any:
    return conn.app.state.web


def cross_site_ok(request: Request, web: Any, session_token: str) -> bool:
    """A state-changing request from our own page: our Origin and the session's CSRF
    token."""
    return (auth.origin_ok(request, web.public_url)
            and auth.csrf_ok(request.headers, web.keys.csrf(session_token)))


def instructor(post: bool = False):
    def wrap(handler: Callable[..., Awaitable[Response]]):
        @functools.wraps(handler)
        async def route(request: Request) -> Response:
            web = web_of(request)
            if not web.keys.is_instructor(request):
                return auth.forbidden()
            if post and not cross_site_ok(request, web, web.keys.instructor):
                return auth.forbidden()
            return await handler(request, web)
        return route
    return wrap


def trainee_of(conn: HTTPConnection) -> Trainee | None:
    """The trainee whose token the cookie holds, if the URL names that same trainee."""
    room = web_of(conn).ops.classroom
    found = room.by_token(conn.cookies.get(auth.TRAINEE_COOKIE)) if room else None
    if found is None or found.name != conn.path_params.get("name"):
        return None
    return found


def trainee(post: bool = False):
    def wrap(handler: Callable[..., Awaitable[Response]]):
        @functools.wraps(handler)
        async def route(request: Request) -> Response:
            web = web_of(request)
            who = trainee_of(request)
            if who is None:
                return auth.forbidden()
            if post and not cross_site_ok(request, web, who.token):
                return auth.forbidden()
            return await handler(request, web, who)
        return route
    return wrap


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise LabError("request too large")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise LabError("the request is not JSON") from None
    if not isinstance(data, dict):
        raise LabError("the request is not a JSON object")
    return data


def error(e: LabError, status: int = 409) -> JSONResponse:
    return JSONResponse({"error": e.message, "hint": e.hint}, status_code=status)
