"""The instructor's pages and actions: log in with the link printed at start, start a
class, watch the dashboard, look at one trainee, export, end the class."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from lab.engine import batch
from lab.errors import LabError
from lab.web import auth, reports
from lab.web.guards import error, instructor, read_json

log = logging.getLogger("lab.web")


async def login(request: Request) -> Response:
    web = request.app.state.web
    if not auth.same(request.path_params["token"], web.keys.instructor):
        return auth.forbidden()
    response = RedirectResponse("/instructor", status_code=303)
    auth.set_cookie(response, request, auth.INSTRUCTOR_COOKIE, web.keys.instructor)
    return response


@instructor()
async def dashboard(request: Request, web) -> Response:
    return web.templates.TemplateResponse(request, "instructor.html", {
        "csrf": web.keys.csrf(web.keys.instructor), "scenarios": web.scenarios(),
        "parallel": web.ops.parallel, "max_trainees": batch.MAX_TRAINEES})


def _names(data: dict[str, Any]) -> list[str]:
    names = str(data.get("names") or "").strip()
    if names:
        return batch.trainee_names(names)
    try:
        count = int(data.get("count") or 0)
    except (TypeError, ValueError):
        raise LabError("the number of trainees is not a number") from None
    if not count:
        raise LabError("give the trainees' names or their number")
    return batch.counted_names(count)


def _seed(data: dict[str, Any]) -> int | None:
    text = str(data.get("seed") or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 65535:
        raise LabError("the seed is a number from 0 to 65535")
    return int(text)


@instructor(post=True)
async def create_class(request: Request, web) -> Response:
    try:
        data = await read_json(request)
        scenario = str(data.get("scenario") or "")
        if scenario not in {s["name"] for s in web.scenarios()}:
            raise LabError(f"unknown scenario {scenario[:40]!r}")
        room = await asyncio.to_thread(web.ops.start_class, scenario, _names(data),
                                       _seed(data))
    except LabError as e:
        return error(e)
    web.hub.poke()
    return JSONResponse({"scenario": room.scenario, "trainees": list(room.trainees)})


@instructor()
async def events(request: Request, web) -> Response:
    return StreamingResponse(web.hub.events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _trainee(web, request: Request):
    room = web.ops.classroom
    name = request.path_params["name"]
    if room is None or name not in room.trainees:
        raise LabError(f"no trainee {name[:40]!r} in this class")
    return room.trainees[name]


@instructor()
async def trainee_detail(request: Request, web) -> Response:
    try:
        who = _trainee(web, request)
        view = await asyncio.to_thread(web.ops.detail, who)
    except LabError as e:
        return error(e, 404)
    return JSONResponse(view | {"row": who.row(), "report": who.score is not None})


@instructor()
async def trainee_report(request: Request, web) -> Response:
    try:
        who = _trainee(web, request)
    except LabError:
        return PlainTextResponse("no such trainee", status_code=404)
    return reports.report_page(who)


@instructor()
async def links(request: Request, web) -> Response:
    room = web.ops.classroom
    return web.templates.TemplateResponse(request, "links.html", {
        "room": room, "base": web.base_url(request)})


@instructor()
async def export_csv(request: Request, web) -> Response:
    room = web.ops.classroom
    if room is None:
        return PlainTextResponse("no class", status_code=404)
    await asyncio.to_thread(web.ops.poll)
    return Response(room.export_csv(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="class-{room.scenario}.csv"'})


@instructor()
async def export_json(request: Request, web) -> Response:
    room = web.ops.classroom
    if room is None:
        return PlainTextResponse("no class", status_code=404)
    data = await asyncio.to_thread(web.ops.export)
    return Response(json.dumps(data, indent=1), media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="class-{room.scenario}.json"'})


@instructor(post=True)
async def end_class(request: Request, web) -> Response:
    if web.ops.classroom is None:
        return error(LabError("no class is running"))
    asyncio.get_running_loop().run_in_executor(None, web.ops.end_class).add_done_callback(
        _log_failure)
    return JSONResponse({"ending": True})


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("ending the class failed", exc_info=future.exception())


ROUTES = [
    Route("/i/{token}", login),
    Route("/instructor", dashboard),
    Route("/instructor/class", create_class, methods=["POST"]),
    Route("/instructor/events", events),
    Route("/instructor/links", links),
    Route("/instructor/export.csv", export_csv),
    Route("/instructor/export.json", export_json),
    Route("/instructor/end", end_class, methods=["POST"]),
    Route("/instructor/trainee/{name}", trainee_detail),
    Route("/instructor/trainee/{name}/report", trainee_report),
]
