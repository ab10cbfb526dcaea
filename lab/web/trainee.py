"""The trainee's page and actions: the ticket and time left, the topology, a terminal per
node, hints, the cause menu, finishing. Every route is about the trainee the cookie's
token names, and the URL must name that same trainee."""
from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from lab.errors import LabError
from lab.scoring.causes import CAUSES, LAYERS
from lab.web import auth, reports
from lab.web.guards import error, read_json, trainee, trainee_of, web_of
from lab.web.roster import Trainee
from lab.web.terminal import Terminal, clamp_size

MAX_TERMINALS = 16  # open at once per trainee (a node's tab opened in several windows)


async def login(request: Request) -> Response:
    room = web_of(request).ops.classroom
    who = room.by_token(request.path_params["token"]) if room else None
    if who is None:
        return auth.forbidden()
    response = RedirectResponse(f"/trainee/{who.name}", status_code=303)
    auth.set_cookie(response, request, auth.TRAINEE_COOKIE, who.token)
    return response


def _ticket(web, who: Trainee) -> dict:
    """The ticket with the time used now (the supervisor's clock), or as it was given."""
    if who.lab_state == "up":
        with contextlib.suppress(LabError):
            return web.ops.ask(who, "ticket", timeout=5)
    return who.ticket or {}


def _state(who: Trainee, ticket: dict) -> dict:
    limit = ticket.get("time_limit", 0) * 60
    score = who.score or {}
    return {"lab_state": who.lab_state, "attempt": who.attempt,
            "seconds_left": round(limit - ticket.get("minutes_used", 0) * 60),
            "hints_left": ticket.get("hints_left", 0),
            "score": score.get("total"), "max": score.get("max")}


@trainee()
async def page(request: Request, web, who: Trainee) -> Response:
    ticket = await asyncio.to_thread(_ticket, web, who)
    causes = [(layer, [c for c in CAUSES if c.layer == layer]) for layer in LAYERS]
    return web.templates.TemplateResponse(request, "trainee.html", {
        "who": who, "ticket": ticket, "state": _state(who, ticket), "causes": causes,
        "svg": reports.topology_svg(who), "csrf": web.keys.csrf(who.token)})


@trainee()
async def state(request: Request, web, who: Trainee) -> Response:
    ticket = await asyncio.to_thread(_ticket, web, who)
    return JSONResponse(_state(who, ticket))


@trainee(post=True)
async def hint(request: Request, web, who: Trainee) -> Response:
    try:
        return JSONResponse(await asyncio.to_thread(web.ops.hint, who))
    except LabError as e:
        return error(e)


@trainee(post=True)
async def submit(request: Request, web, who: Trainee) -> Response:
    try:
        data = await read_json(request)
        answer = await asyncio.to_thread(web.ops.submit, who, str(data.get("cause", "")),
                                         str(data.get("node", "")))
    except LabError as e:
        return error(e)
    return JSONResponse({"answer": answer})


@trainee(post=True)
async def finish(request: Request, web, who: Trainee) -> Response:
    try:
        score = await asyncio.to_thread(web.ops.finish, who)
    except LabError as e:
        return error(e)
    return JSONResponse({"total": score["total"], "max": score["max"],
                         "svg": reports.topology_svg(who)})


@trainee()
async def report(request: Request, web, who: Trainee) -> Response:
    return reports.report_page(who)


@trainee()
async def topology(request: Request, web, who: Trainee) -> Response:
    return Response(reports.topology_svg(who), media_type="image/svg+xml")


async def terminal(ws: WebSocket) -> None:
    """A node's shell for the trainee whose token the cookie holds; refused (before the
    handshake completes, so the browser sees a failed connection) from another site,
    for another trainee, a node not in their lab, or a lab or attempt no longer open."""
    web = web_of(ws)
    who = trainee_of(ws)
    node = ws.path_params["node"]
    if (who is None or not auth.origin_ok(ws, web.public_url) or node not in who.nodes
            or who.lab_state != "up" or who.attempt != "open"
            or len(who.terminals) >= MAX_TERMINALS):
        await ws.close(code=1008)
        return
    term = Terminal(ws, who.lab, node)
    who.terminals.add(term)  # counted before the handshake: the limit holds for a burst
    rows, cols = clamp_size(ws.query_params.get("rows"), ws.query_params.get("cols"))
    try:
        await ws.accept()
        await term.run(rows, cols)
    except LabError as e:  # the node is gone: no shell to open
        with contextlib.suppress(Exception):
            await ws.send_text(json.dumps({"ended": e.message}))
            await ws.close()
    finally:
        who.terminals.discard(term)


ROUTES = [
    Route("/t/{token}", login),
    Route("/trainee/{name}", page),
    Route("/trainee/{name}/state", state),
    Route("/trainee/{name}/hint", hint, methods=["POST"]),
    Route("/trainee/{name}/submit", submit, methods=["POST"]),
    Route("/trainee/{name}/finish", finish, methods=["POST"]),
    Route("/trainee/{name}/report", report),
    Route("/trainee/{name}/topology.svg", topology),
    WebSocketRoute("/trainee/{name}/term/{node}", terminal),
]
