"""The classroom server's web application: routes, templates, static files, the headers
every response carries, and the server's state (``Web``)."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lab.web import auth, instructor, trainee
from lab.web.classops import ClassOps
from lab.web.live import LiveHub

HERE = Path(__file__).parent
THREADS = 64  # blocking calls at once: shells opening and closing, supervisors asked
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'self'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")


class Web:
    """What the routes share: the keys, the class and its labs, the live hub."""

    def __init__(self, ops: ClassOps, keys: auth.Keys | None = None,
                 public_url: str | None = None) -> None:
        self.ops = ops
        self.keys = keys or auth.Keys()
        self.public_url = public_url.rstrip("/") if public_url else None
        self.stopping = threading.Event()
        self.hub = LiveHub(ops, self.stopping.is_set)
        ops.on_change = self.hub.poke
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self._scenarios: list[dict[str, Any]] | None = None

    def base_url(self, request: Request) -> str:
        return self.public_url or str(request.base_url).rstrip("/")

    def scenarios(self) -> list[dict[str, Any]]:
        """The scenarios a class can run (read once: scenarios/ does not change under a
        running server)."""
        if self._scenarios is None:
            from lab.faults import CATALOG
            from lab.model.scenario import load_scenarios
            from lab.paths import SCENARIO_DIR
            from lab.scoring.causes import CAUSE_IDS

            found = load_scenarios(SCENARIO_DIR, set(CATALOG), CAUSE_IDS)
            self._scenarios = [{"name": n, "title": s.title, "time_limit": s.time_limit}
                               for n, s in sorted(found.items())]
        return self._scenarios


class SecurityHeaders:
    """Headers on every HTTP response: a strict content security policy, no referrer
    (links carry no token, but the pages' URLs name trainees), no sniffing, no caching of
    anything but static files."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "SAMEORIGIN"
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def home(request: Request) -> Response:
    web = request.app.state.web
    if web.keys.is_instructor(request):
        return RedirectResponse("/instructor", status_code=303)
    return auth.forbidden()


def create_app(web: Web) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="web"))
        web.hub.start()
        yield
        web.stopping.set()
        await web.hub.close()

    routes = [Route("/", home), *instructor.ROUTES, *trainee.ROUTES,
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = web
    app.add_middleware(SecurityHeaders)
    return app
