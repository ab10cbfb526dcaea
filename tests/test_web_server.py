"""The classroom server without labs: every door an attacker without a token, or with a
token but from another site, might try is refused with a plain 403; the instructor's
cookie has the right flags; pages carry the security headers. The real server (uvicorn
on loopback, the app `lab serve` runs) is driven over HTTP and websockets; no root.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from websockets.exceptions import InvalidStatus

from lab.web.app import Web
from lab.web.classops import ClassOps
from lab.web.client import Session
from lab.web.serve import bind, make_config

FOREIGN = "http://evil.example.com"


class LoopbackServer:
    def __init__(self) -> None:
        self.web = Web(ClassOps("wbu-x"))
        self.sock = bind("127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(make_config(self.web))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()

    @property
    def link(self) -> str:
        return f"{self.base}/i/{self.web.keys.instructor}"


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    srv = LoopbackServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def anonymous(server) -> Session:
    return Session(server.base)


@pytest.fixture
def instructor(server) -> Session:
    session = Session(server.base)
    session.login(server.link)
    assert session.home == "/instructor" and session.csrf
    return session


def assert_plain_403(status: int, body: str) -> None:
    assert status == 403
    assert "403 Forbidden" in body and "not valid" in body
    assert "<script" not in body


INSTRUCTOR_PAGES = ["/", "/instructor", "/instructor/events", "/instructor/links",
                    "/instructor/export.csv", "/instructor/export.json",
                    "/instructor/trainee/alice", "/instructor/trainee/alice/report"]
TRAINEE_PAGES = ["/trainee/alice", "/trainee/alice/state", "/trainee/alice/report",
                 "/trainee/alice/topology.svg"]


@pytest.mark.parametrize("path", INSTRUCTOR_PAGES + TRAINEE_PAGES)
def test_anonymous_get_is_refused(anonymous, path):
    status, body, _ = anonymous.get(path)
    assert_plain_403(status, body)


@pytest.mark.parametrize("path", ["/instructor/class", "/instructor/end", "/trainee/alice/hint",
                                  "/trainee/alice/submit", "/trainee/alice/finish"])
def test_anonymous_post_is_refused(anonymous, path):
    assert_plain_403(*anonymous.post(path, {"scenario": "mail-server-down", "count": 1}))


def test_a_wrong_instructor_token_is_refused(server, anonymous):
    token = server.web.keys.instructor
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    for path in (f"/i/{near}", f"/i/{secrets.token_urlsafe(32)}", "/i/"):
        status, body, _ = anonymous.get(path)
        assert status in (403, 404), path
        if status == 403:
            assert_plain_403(status, body)


def test_a_trainee_link_without_a_class_is_refused(anonymous):
    assert_plain_403(*anonymous.get(f"/t/{secrets.token_urlsafe(32)}")[:2])


def test_a_trainee_cookie_of_no_trainee_is_refused(server):
    session = Session(server.base)
    status, body, _ = session.get("/trainee/alice", {"Cookie": "maillab_trainee=guess"})
    assert_plain_403(status, body)


def test_instructor_cookie_flags(server, anonymous):
    headers = _login_headers(server, {})
    cookie = headers.get("set-cookie", "")
    assert cookie.startswith(f"maillab_instructor={server.web.keys.instructor};")
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back


def test_instructor_cookie_is_secure_behind_tls(server):
    """Behind a TLS reverse proxy on this machine (X-Forwarded-Proto: https)."""
    headers = _login_headers(server, {"X-Forwarded-Proto": "https"})
    assert "secure" in {f.strip().lower() for f in headers["set-cookie"].split(";")}


def _login_headers(server, extra: dict[str, str]) -> dict[str, str]:
    import http.client

    conn = http.client.HTTPConnection(server.base.removeprefix("http://"), timeout=10)
    conn.request("GET", f"/i/{server.web.keys.instructor}", headers=extra)
    response = conn.getresponse()
    assert response.status == 303 and response.getheader("location") == "/instructor"
    headers = {k.lower(): v for k, v in response.getheaders()}
    conn.close()
    return headers


def test_pages_carry_security_headers(instructor):
    import urllib.request

    request = urllib.request.Request(instructor.base + "/instructor")
    with instructor.opener.open(request) as response:
        headers = response.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("csrf,origin,why", [
    ("-", "", "no CSRF token"),
    ("0" * 64, "", "a wrong CSRF token"),
    (None, FOREIGN, "another site's Origin"),
    (None, None, "no Origin"),
], ids=["no-csrf", "wrong-csrf", "foreign-origin", "no-origin"])
def test_cross_site_post_is_refused(instructor, csrf, origin, why):
    status, body = instructor.post("/instructor/class", {"scenario": "mail-server-down",
                                                         "count": 1},
                                   csrf="" if csrf == "-" else csrf, origin=origin)
    assert_plain_403(status, body)


def test_our_own_post_passes_the_checks(instructor):
    """The positive control: the same request with the page's token and Origin reaches
    the route (which refuses an unknown scenario, so nothing starts)."""
    status, body = instructor.post("/instructor/class", {"scenario": "no-such", "count": 1})
    assert status == 409 and "unknown scenario" in body


def test_a_class_needs_names_or_a_count(instructor):
    status, body = instructor.post("/instructor/class", {"scenario": "mail-server-down",
                                                         "names": "alice ../root"})
    assert status == 409 and "invalid trainee name" in body


def test_anonymous_websocket_is_refused(server, anonymous):
    with pytest.raises(InvalidStatus) as refused:
        anonymous.terminal("alice", "ext-ws")
    assert refused.value.response.status_code == 403


def test_vendored_terminal_files_are_served(anonymous):
    for path in ("/static/vendor/xterm/xterm.js", "/static/vendor/xterm/xterm.css",
                 "/static/vendor/xterm-addon-fit/addon-fit.js", "/static/trainee.js"):
        status, body, _ = anonymous.get(path)
        assert status == 200 and body, path
